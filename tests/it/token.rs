//! Logout token claims (spec §2.4): golden bytes, properties of every minted token, and
//! interop with the independent `jsonwebtoken` crate in both directions.

use crate::support::*;
use chrono::Utc;
use logoutd_core::KeySet;
use logoutd_core::SessionMetadata;
use logoutd_core::{
    BACKCHANNEL_LOGOUT_EVENT, LogoutClaims, MAX_TOKEN_LIFETIME_SECS as MAX_LIFETIME_SECS, Subject,
};
use logoutd_core::{ClientId, Issuer, Jti, KeyId, SessionId, UserId};
use logoutd_core::{SigningAlg, TokenTyp};
use logoutd_core::{VerifyOptions, verify};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};

fn decode_part(token: &str, index: usize) -> Vec<u8> {
    use base64::Engine as _;
    let part = token.split('.').nth(index).unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap()
}

fn check_golden(name: &str, actual: &str) {
    let path = fixture(&format!("golden/{name}"));
    if std::env::var_os("LOGOUTD_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, format!("{actual}\n")).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap();
    assert_eq!(expected.trim_end(), actual, "golden file {name} differs");
}

fn golden_claims() -> LogoutClaims {
    let meta = SessionMetadata::from_json(&json!({"tenant": "acme", "device": "laptop"})).unwrap();
    builder(fixed_now())
        .session_metadata(&meta)
        .jti(Jti::new("golden-jti-0001"))
        .build()
}

#[test]
fn golden_rs256_token_is_byte_stable() {
    let keys = KeySet::from_keys(vec![
        fixture_key(SigningAlg::RS256),
        fixture_key(SigningAlg::EdDSA),
    ]);
    let claims = golden_claims();
    let token = keys
        .sign(SigningAlg::RS256, TokenTyp::LogoutJwt, &claims)
        .unwrap();
    check_golden(
        "rs256_header.json",
        &String::from_utf8(decode_part(&token, 0)).unwrap(),
    );
    check_golden(
        "claims.json",
        &String::from_utf8(decode_part(&token, 1)).unwrap(),
    );
    check_golden("rs256_token.jwt", &token);
    let eddsa = keys
        .sign(SigningAlg::EdDSA, TokenTyp::Jwt, &claims)
        .unwrap();
    check_golden("eddsa_jwt_typ_token.jwt", &eddsa);
}

#[test]
fn logout_token_header_has_alg_typ_and_kid_only() {
    let keys = fixture_keys();
    for alg in SigningAlg::ALL {
        let token = keys
            .sign(alg, TokenTyp::LogoutJwt, &golden_claims())
            .unwrap();
        let header: Value = serde_json::from_slice(&decode_part(&token, 0)).unwrap();
        let kid = keys.active_kid(alg).unwrap().to_string();
        assert_eq!(
            header,
            json!({"alg": alg.as_str(), "typ": "logout+jwt", "kid": kid})
        );
    }
}

fn subject_strategy() -> impl Strategy<Value = Subject> {
    let id = "[A-Za-z0-9_\\-\"\\\\é ]{1,12}";
    prop_oneof![
        id.prop_map(|u| Subject::Sub(UserId::new(u))),
        id.prop_map(|s| Subject::Sid(SessionId::new(s))),
        (id, id).prop_map(|(u, s)| Subject::Both(UserId::new(u), SessionId::new(s))),
    ]
}

fn metadata_strategy() -> impl Strategy<Value = SessionMetadata> {
    proptest::collection::btree_map("[A-Za-z0-9_-]{1,8}", "\\PC{0,10}", 0..4)
        .prop_map(|m: BTreeMap<String, String>| SessionMetadata::try_from_map(m).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_minted_token_has_fresh_jti_bounded_lifetime_no_nonce_and_exact_events(
        subject in subject_strategy(),
        lifetime in 1i64..=MAX_LIFETIME_SECS,
        meta in metadata_strategy(),
        now_secs in 1_600_000_000i64..1_900_000_000,
        txn in proptest::option::of("[ -~]{0,12}|evt_[A-Za-z0-9_-]{22}|\\PC{0,6}"),
    ) {
        let now = chrono::DateTime::from_timestamp(now_secs, 0).unwrap();
        let template = logoutd_core::LogoutTokenBuilder::new(
            &logoutd_core::Issuer::new(ISSUER),
            &logoutd_core::ClientId::new(CLIENT),
            subject,
            now,
        )
        .lifetime(chrono::Duration::seconds(lifetime))
        .unwrap()
        .session_metadata(&meta);
        let template = match &txn {
            Some(txn) => template.txn(txn),
            None => template,
        };
        let mut jtis = HashSet::new();
        for _ in 0..4 {
            let claims = template.clone().build();
            let mut fast = Vec::new();
            claims.write_json(&mut fast);
            prop_assert_eq!(&fast, &serde_json::to_vec(&claims).unwrap());
            let value: Value = serde_json::from_slice(&fast).unwrap();
            let (iat, exp) = (value["iat"].as_i64().unwrap(), value["exp"].as_i64().unwrap());
            prop_assert!(0 < exp - iat && exp - iat <= MAX_LIFETIME_SECS);
            prop_assert!(value.get("nonce").is_none());
            prop_assert_eq!(&value["events"], &json!({ BACKCHANNEL_LOGOUT_EVENT: {} }));
            prop_assert!(value.get("sub").is_some() || value.get("sid").is_some());
            prop_assert_eq!(value.get("session_metadata").is_some(), !meta.is_empty());
            prop_assert_eq!(value.get("txn").and_then(Value::as_str), txn.as_deref());
            prop_assert!(jtis.insert(claims.jti.to_string()));
            prop_assert!(claims.jti.as_str().len() >= 22);
        }
    }
}

// ---- interop with the independent jsonwebtoken crate ----

fn jsonwebtoken_alg(alg: SigningAlg) -> jsonwebtoken::Algorithm {
    match alg {
        SigningAlg::RS256 => jsonwebtoken::Algorithm::RS256,
        SigningAlg::PS256 => jsonwebtoken::Algorithm::PS256,
        SigningAlg::ES256 => jsonwebtoken::Algorithm::ES256,
        SigningAlg::EdDSA => jsonwebtoken::Algorithm::EdDSA,
    }
}

#[test]
fn jsonwebtoken_verifies_tokens_minted_by_logoutd() {
    let keys = fixture_keys();
    let real_now = Utc::now();
    let set: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(serde_json::to_value(keys.jwks(real_now)).unwrap()).unwrap();
    let claims = builder(real_now).build();
    for alg in SigningAlg::ALL {
        let token = keys.sign(alg, TokenTyp::LogoutJwt, &claims).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        let jwk = set.find(header.kid.as_deref().unwrap()).unwrap();
        assert_eq!(
            jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
                .unwrap(),
            keys.active_kid(alg).unwrap().as_str(),
            "RFC 7638 thumbprint for {alg}"
        );
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken_alg(alg));
        validation.set_audience(&[CLIENT]);
        validation.set_issuer(&[ISSUER]);
        let data = jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap();
        assert_eq!(data.header.typ.as_deref(), Some("logout+jwt"));
        assert_eq!(data.claims["jti"], json!(claims.jti.as_str()));
    }
}

#[test]
fn logoutd_verifies_tokens_minted_by_jsonwebtoken() {
    let keys = fixture_keys();
    let real_now = Utc::now();
    let claims = builder(real_now).build();
    for alg in SigningAlg::ALL {
        let pem = std::fs::read(fixture_key_file(alg)).unwrap();
        let key = match alg {
            SigningAlg::RS256 | SigningAlg::PS256 => jsonwebtoken::EncodingKey::from_rsa_pem(&pem),
            SigningAlg::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(&pem),
            SigningAlg::EdDSA => jsonwebtoken::EncodingKey::from_ed_pem(&pem),
        }
        .unwrap();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken_alg(alg));
        header.typ = Some("logout+jwt".into());
        header.kid = keys.active_kid(alg).map(KeyId::to_string);
        let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
        let verified = verify(
            &token,
            &keys.jwks(real_now),
            &VerifyOptions::new(Issuer::new(ISSUER), ClientId::new(CLIENT)),
            real_now,
        );
        assert!(verified.is_ok(), "{alg}: {verified:?}");
    }
}
