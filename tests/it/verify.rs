//! The verifier against Back-Channel Logout 1.0 §2.6, one rule per hostile token, and
//! interop with the independent `jsonwebtoken` crate.

use crate::support::*;
use chrono::{DateTime, Utc};
use logoutd_core::{ClientId, Issuer};
use logoutd_core::{Jwks, SigningKey};
use logoutd_core::{SigningAlg, TokenTyp};
use logoutd_core::{TypPolicy, VerifyError, VerifyOptions, verify};
use serde_json::{Value, json};

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

fn now() -> DateTime<Utc> {
    fixed_now() + chrono::Duration::seconds(10)
}

fn opts() -> VerifyOptions {
    VerifyOptions::new(Issuer::new(ISSUER), ClientId::new(CLIENT))
}

fn jwks() -> Jwks {
    fixture_keys().jwks(now())
}

/// Good claims; tests change one member at a time.
fn good_claims() -> Value {
    json!({
        "iss": ISSUER, "aud": CLIENT, "iat": 1_700_000_000, "exp": 1_700_000_120,
        "jti": "jti-1", "events": { EVENT: {} }, "sub": "user-1", "sid": "sess-1"
    })
}

fn with(change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut claims = good_claims();
    change(claims.as_object_mut().unwrap());
    claims.to_string()
}

fn rs256() -> SigningKey {
    fixture_key(SigningAlg::RS256)
}

fn token_with_claims(claims: &str) -> String {
    let key = rs256();
    sign_raw(&key, &header_for(&key, "logout+jwt"), claims)
}

fn errors_of(token: &str, opts: &VerifyOptions) -> Vec<VerifyError> {
    verify(token, &jwks(), opts, now()).expect_err("token should be refused")
}

fn assert_refused(token: &str, expected: VerifyError) {
    let errors = errors_of(token, &opts());
    assert_eq!(errors, vec![expected]);
}

#[test]
fn accepts_tokens_minted_for_every_alg() {
    let keys = fixture_keys();
    let claims = builder(fixed_now()).build();
    for alg in SigningAlg::ALL {
        let token = keys.sign(alg, TokenTyp::LogoutJwt, &claims).unwrap();
        let ok = verify(&token, &jwks(), &opts(), now()).unwrap();
        assert_eq!(ok.jti, claims.jti);
        assert_eq!(ok.sid.unwrap().as_str(), "sess-1");
        assert_eq!(ok.sub.unwrap().as_str(), "user-1");
    }
}

#[test]
fn accepts_unknown_extra_claims_and_aud_array() {
    let token = token_with_claims(&with(|c| {
        c.insert("extra".into(), json!({"anything": [1, 2]}));
        c.insert("aud".into(), json!(["other", CLIENT]));
    }));
    assert!(verify(&token, &jwks(), &opts(), now()).is_ok());
}

#[test]
fn typ_is_compared_per_rfc7515_and_jwt_only_when_allowed() {
    let key = rs256();
    let claims = good_claims().to_string();
    let token = |typ: &str| sign_raw(&key, &header_for(&key, typ), &claims);
    assert!(verify(&token("application/logout+jwt"), &jwks(), &opts(), now()).is_ok());
    assert!(verify(&token("Logout+JWT"), &jwks(), &opts(), now()).is_ok());
    assert!(matches!(
        errors_of(&token("JWT"), &opts()).as_slice(),
        [VerifyError::Typ { .. }]
    ));
    assert!(matches!(
        errors_of(&token("at+jwt"), &opts()).as_slice(),
        [VerifyError::Typ { .. }]
    ));
    let mut lenient = opts();
    lenient.accept_typ = TypPolicy {
        accept_jwt: true,
        allow_untyped: false,
    };
    assert!(verify(&token("JWT"), &jwks(), &lenient, now()).is_ok());
}

#[test]
fn missing_typ_is_refused_unless_allowed() {
    let key = rs256();
    let header = format!(r#"{{"alg":"RS256","kid":"{}"}}"#, key.kid());
    let token = sign_raw(&key, &header, &good_claims().to_string());
    let errors = errors_of(&token, &opts());
    assert!(matches!(errors.as_slice(), [VerifyError::Typ { found, .. }] if found == "missing"));
    let mut lenient = opts();
    lenient.accept_typ.allow_untyped = true;
    assert!(verify(&token, &jwks(), &lenient, now()).is_ok());
}

#[test]
fn alg_none_is_refused() {
    let header = b64(br#"{"alg":"none","typ":"logout+jwt"}"#);
    let token = format!("{header}.{}.", b64(good_claims().to_string().as_bytes()));
    assert_refused(&token, VerifyError::AlgNone);
}

#[test]
fn hs256_keyed_with_the_public_key_is_refused() {
    use aws_lc_rs::encoding::AsDer as _;
    use aws_lc_rs::signature::KeyPair as _;
    let pem = pem::parse(std::fs::read(fixture_key_file(SigningAlg::RS256)).unwrap()).unwrap();
    let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(pem.contents()).unwrap();
    let spki = pair.public_key().as_der().unwrap();
    let public_pem = pem::encode(&pem::Pem::new("PUBLIC KEY", spki.as_ref().to_vec()));
    let header = format!(
        r#"{{"alg":"HS256","typ":"logout+jwt","kid":"{}"}}"#,
        rs256().kid()
    );
    let input = format!(
        "{}.{}",
        b64(header.as_bytes()),
        b64(good_claims().to_string().as_bytes())
    );
    let mac_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, public_pem.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&mac_key, input.as_bytes());
    let token = format!("{input}.{}", b64(tag.as_ref()));
    assert_refused(&token, VerifyError::SymmetricAlg("\"HS256\"".into()));
}

#[test]
fn alg_outside_allowed_algs_is_refused() {
    let token = token_with_claims(&good_claims().to_string());
    let mut only_es = opts();
    only_es.allowed_algs = Some(vec![SigningAlg::ES256]);
    assert_eq!(
        errors_of(&token, &only_es),
        vec![VerifyError::AlgNotAllowed(SigningAlg::RS256)]
    );
}

#[test]
fn header_alg_must_match_the_jwk_alg() {
    // The RS256 key signs with PSS, and the header says PS256: the JWK says RS256.
    let key = rs256();
    let header = format!(
        r#"{{"alg":"PS256","typ":"logout+jwt","kid":"{}"}}"#,
        key.kid()
    );
    let token = sign_raw(&key, &header, &good_claims().to_string());
    let errors = errors_of(&token, &opts());
    assert!(
        matches!(errors.as_slice(), [VerifyError::KeyMismatch { .. }]),
        "{errors:?}"
    );
}

#[test]
fn kty_must_fit_the_alg() {
    let key = rs256();
    let es_kid = fixture_key(SigningAlg::ES256).kid().to_string();
    let header = format!(r#"{{"alg":"RS256","typ":"logout+jwt","kid":"{es_kid}"}}"#);
    let token = sign_raw(&key, &header, &good_claims().to_string());
    let errors = errors_of(&token, &opts());
    assert!(
        matches!(errors.as_slice(), [VerifyError::KeyMismatch { .. }]),
        "{errors:?}"
    );
}

#[test]
fn wrong_iss_and_wrong_aud_are_both_reported() {
    let token = token_with_claims(&with(|c| {
        c.insert("iss".into(), json!("https://op.example/"));
        c.insert("aud".into(), json!("rp-2"));
    }));
    assert_eq!(
        errors_of(&token, &opts()),
        vec![VerifyError::WrongIssuer, VerifyError::WrongAudience]
    );
}

#[test]
fn expired_token_is_refused() {
    let token = token_with_claims(&good_claims().to_string());
    let late = fixed_now() + chrono::Duration::seconds(120 + 30);
    let errors = verify(&token, &jwks(), &opts(), late).unwrap_err();
    assert_eq!(errors, vec![VerifyError::Expired]);
    let within_leeway = fixed_now() + chrono::Duration::seconds(120 + 29);
    assert!(verify(&token, &jwks(), &opts(), within_leeway).is_ok());
}

#[test]
fn missing_exp_iat_and_jti_are_refused() {
    for claim in ["exp", "iat", "jti"] {
        let token = token_with_claims(&with(|c| {
            c.remove(claim);
        }));
        assert!(
            errors_of(&token, &opts()).contains(&VerifyError::MissingClaim(claim)),
            "{claim}"
        );
    }
}

#[test]
fn iat_far_in_the_future_is_refused() {
    let token = token_with_claims(&with(|c| {
        c.insert("iat".into(), json!(1_700_000_100));
        c.insert("exp".into(), json!(1_700_000_220));
    }));
    assert_refused(&token, VerifyError::IssuedInFuture);
}

#[test]
fn nbf_in_the_future_is_refused_and_a_past_nbf_accepted() {
    let future = token_with_claims(&with(|c| {
        c.insert("nbf".into(), json!(1_700_000_100));
    }));
    assert_refused(&future, VerifyError::NotYetValid);
    let past = token_with_claims(&with(|c| {
        c.insert("nbf".into(), json!(1_699_999_990));
    }));
    assert!(verify(&past, &jwks(), &opts(), now()).is_ok());
}

#[test]
fn lifetime_beyond_the_maximum_is_refused_when_asked() {
    let token = token_with_claims(&with(|c| {
        c.insert("exp".into(), json!(1_700_000_000 + 3600));
    }));
    assert!(verify(&token, &jwks(), &opts(), now()).is_ok());
    let mut strict = opts();
    strict.max_lifetime_secs = Some(120);
    assert_eq!(errors_of(&token, &strict), vec![VerifyError::Lifetime(120)]);
}

#[test]
fn nonce_is_refused() {
    let token = token_with_claims(&with(|c| {
        c.insert("nonce".into(), json!("n"));
    }));
    assert_refused(&token, VerifyError::Nonce);
}

#[test]
fn events_must_be_exactly_the_logout_event_with_an_empty_object() {
    let cases: Vec<(Option<Value>, VerifyError)> = vec![
        (None, VerifyError::MissingClaim("events")),
        (
            Some(json!({"http://schemas.openid.net/event/backchannel-logout/": {}})),
            VerifyError::Events("lacks the back-channel logout event"),
        ),
        (
            Some(json!({ EVENT: {}, "urn:other": {} })),
            VerifyError::Events("must have exactly one member"),
        ),
        (
            Some(json!({ EVENT: "yes" })),
            VerifyError::Events("member value must be a JSON object"),
        ),
        (
            Some(json!({ EVENT: {"a": 1} })),
            VerifyError::Events("member value must be {}"),
        ),
        (
            Some(json!([EVENT])),
            VerifyError::Events("must be a JSON object"),
        ),
    ];
    for (events, expected) in cases {
        let token = token_with_claims(&with(|c| match events {
            Some(v) => {
                c.insert("events".into(), v);
            }
            None => {
                c.remove("events");
            }
        }));
        assert_refused(&token, expected);
    }
}

#[test]
fn neither_sub_nor_sid_is_refused() {
    let token = token_with_claims(&with(|c| {
        c.remove("sub");
        c.remove("sid");
    }));
    assert_refused(&token, VerifyError::NoSubject);
    let sid_only = token_with_claims(&with(|c| {
        c.remove("sub");
    }));
    assert!(verify(&sid_only, &jwks(), &opts(), now()).is_ok());
}

#[test]
fn session_metadata_must_follow_the_rules() {
    let token = token_with_claims(&with(|c| {
        c.insert("session_metadata".into(), json!({"k": {"nested": "x"}}));
    }));
    assert!(matches!(
        errors_of(&token, &opts()).as_slice(),
        [VerifyError::Metadata(_)]
    ));
    let ok = token_with_claims(&with(|c| {
        c.insert("session_metadata".into(), json!({"k": "v"}));
    }));
    assert!(verify(&ok, &jwks(), &opts(), now()).is_ok());
}

#[test]
fn tampered_payload_is_refused() {
    let token = token_with_claims(&good_claims().to_string());
    let parts: Vec<&str> = token.split('.').collect();
    let forged = with(|c| {
        c.insert("sub".into(), json!("someone-else"));
    });
    let tampered = format!("{}.{}.{}", parts[0], b64(forged.as_bytes()), parts[2]);
    assert_refused(&tampered, VerifyError::BadSignature);
}

#[test]
fn unknown_kid_is_refused() {
    let key = rs256();
    let header = r#"{"alg":"RS256","typ":"logout+jwt","kid":"not-a-kid"}"#;
    let token = sign_raw(&key, header, &good_claims().to_string());
    assert_refused(&token, VerifyError::UnknownKid("\"not-a-kid\"".into()));
}

#[test]
fn signature_by_another_key_is_refused() {
    let other = SigningKey::generate(SigningAlg::ES256, None).unwrap();
    let es_kid = fixture_key(SigningAlg::ES256).kid().to_string();
    let header = format!(r#"{{"alg":"ES256","typ":"logout+jwt","kid":"{es_kid}"}}"#);
    let token = sign_raw(&other, &header, &good_claims().to_string());
    assert_refused(&token, VerifyError::BadSignature);
}

#[test]
fn unknown_crit_is_refused() {
    let key = rs256();
    let header = format!(
        r#"{{"alg":"RS256","typ":"logout+jwt","kid":"{}","crit":["exp"],"exp":1}}"#,
        key.kid()
    );
    assert_refused(
        &sign_raw(&key, &header, &good_claims().to_string()),
        VerifyError::Crit,
    );
}

#[test]
fn duplicate_json_members_are_refused() {
    let key = rs256();
    let claims = good_claims().to_string();
    let dup_claims = claims.replacen('{', r#"{"sub":"admin","#, 1);
    let token = sign_raw(&key, &header_for(&key, "logout+jwt"), &dup_claims);
    assert!(matches!(
        errors_of(&token, &opts()).as_slice(),
        [VerifyError::DuplicateMember { part: "claims", .. }]
    ));
    let dup_header = format!(
        r#"{{"alg":"RS256","typ":"logout+jwt","kid":"{}","alg":"none"}}"#,
        key.kid()
    );
    let token = sign_raw(&key, &dup_header, &claims);
    assert!(matches!(
        errors_of(&token, &opts()).as_slice(),
        [VerifyError::DuplicateMember { part: "header", .. }]
    ));
}

#[test]
fn every_error_displays_as_one_line() {
    let token = token_with_claims(r#"{"nonce":1,"events":[]}"#);
    let errors = errors_of(&token, &opts());
    assert!(errors.len() >= 6, "{errors:?}");
    for error in errors {
        assert!(!error.to_string().contains('\n'));
    }
}

/// A JWKS that cannot be fetched is reported with its URL and the cause, so that a mock RP
/// started before its JWKS server says what it tried and why it failed.
#[tokio::test]
async fn failed_jwks_fetch_names_the_url_and_the_cause() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", closed.local_addr().unwrap());
    drop(closed);
    let err = logoutd_core::JwksSource::from_uri(&url)
        .await
        .expect_err("a closed port cannot serve a JWKS")
        .to_string();
    assert!(err.contains(&url), "{err}");
    assert!(err.to_lowercase().contains("connect"), "{err}");
}

/// The fixture key's JWK, with `decoys` listed ahead of it under its `kid`.
fn jwks_with_decoys_first(real: &SigningKey, decoys: &[SigningKey]) -> Jwks {
    let mut keys: Vec<_> = decoys
        .iter()
        .map(|decoy| {
            let mut jwk = decoy.jwk().clone();
            jwk.kid = Some(real.kid().to_string());
            jwk
        })
        .collect();
    keys.push(real.jwk().clone());
    Jwks { keys }
}

#[test]
fn a_kid_shared_by_several_keys_tries_each_candidate() {
    let real = fixture_key(SigningAlg::ES256);
    let other_es256 = SigningKey::generate(SigningAlg::ES256, None).unwrap();
    let jwks = jwks_with_decoys_first(&real, &[rs256(), other_es256]);
    let claims = good_claims().to_string();
    let token = sign_raw(&real, &header_for(&real, "logout+jwt"), &claims);
    assert!(
        verify(&token, &jwks, &opts(), now()).is_ok(),
        "the right key is listed third under the kid"
    );

    // A signature that none of the candidates verifies is still refused.
    let header = format!(
        r#"{{"alg":"ES256","typ":"logout+jwt","kid":"{}"}}"#,
        real.kid()
    );
    let forged = sign_raw(
        &SigningKey::generate(SigningAlg::ES256, None).unwrap(),
        &header,
        &claims,
    );
    let errors = verify(&forged, &jwks, &opts(), now()).unwrap_err();
    assert_eq!(errors, vec![VerifyError::BadSignature]);

    // When no key under the kid fits the alg, the mismatch is reported.
    let only_rsa = Jwks {
        keys: jwks.keys[..1].to_vec(),
    };
    let errors = verify(&token, &only_rsa, &opts(), now()).unwrap_err();
    assert!(
        matches!(errors.as_slice(), [VerifyError::KeyMismatch { .. }]),
        "{errors:?}"
    );
}
