//! Unit tests for key lifecycle, the JWKS and the key ring.

use super::*;
use crate::ids::{ClientId, Issuer, UserId};
use crate::token::{LogoutTokenBuilder, Subject};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::os::unix::fs::PermissionsExt as _;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

fn claims() -> LogoutClaims {
    LogoutTokenBuilder::new(
        &Issuer::new("https://idp"),
        &ClientId::new("c"),
        Subject::Sub(UserId::new("u")),
        t0(),
    )
    .build()
}

#[test]
fn default_key_is_created_once_with_private_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let (set, created) = KeySet::load_or_create_default(&dir, t0()).unwrap();
    assert!(created);
    assert_eq!(set.active_algs(), vec![SigningAlg::RS256]);
    let (_, again) = KeySet::load_or_create_default(&dir, t0()).unwrap();
    assert!(!again);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    let kid = set.active_kid(SigningAlg::RS256).unwrap();
    assert_eq!(mode(&dir.join(format!("{kid}.pem"))), 0o600);
    assert_eq!(mode(&dir.join(store::MANIFEST_FILE)), 0o600);
}

#[test]
fn rotation_keeps_the_old_key_published_for_the_grace_period() {
    let tmp = tempfile::tempdir().unwrap();
    let old = generate(tmp.path(), SigningAlg::ES256, None, t0()).unwrap();
    let new = rotate(tmp.path(), SigningAlg::ES256, t0()).unwrap();
    assert_ne!(old, new);
    let set = KeySet::load(tmp.path(), t0()).unwrap();
    assert_eq!(set.active_kid(SigningAlg::ES256), Some(&new));
    assert_eq!(set.jwks(t0()).keys.len(), 2);
    let later = t0() + Duration::seconds(RETIRED_GRACE_SECS);
    let kids: Vec<_> = set
        .jwks(later)
        .keys
        .into_iter()
        .filter_map(|k| k.kid)
        .collect();
    assert_eq!(kids, vec![new.to_string()]);
    assert_eq!(
        KeySet::load(tmp.path(), later)
            .unwrap()
            .jwks(later)
            .keys
            .len(),
        1
    );
}

#[test]
fn generate_with_an_active_key_adds_a_standby_that_rotate_promotes() {
    let tmp = tempfile::tempdir().unwrap();
    let first = generate(tmp.path(), SigningAlg::EdDSA, None, t0()).unwrap();
    let standby = generate(tmp.path(), SigningAlg::EdDSA, None, t0()).unwrap();
    let set = KeySet::load(tmp.path(), t0()).unwrap();
    assert_eq!(set.active_kid(SigningAlg::EdDSA), Some(&first));
    assert_eq!(set.jwks(t0()).keys.len(), 2);
    assert_eq!(
        rotate(tmp.path(), SigningAlg::EdDSA, t0()).unwrap(),
        standby
    );
}

#[test]
fn signing_without_an_active_key_names_the_alg() {
    let set = KeySet::default();
    let err = set
        .sign(SigningAlg::PS256, TokenTyp::LogoutJwt, &claims())
        .unwrap_err();
    assert!(matches!(err, SignError::NoKey(SigningAlg::PS256)));
    assert!(err.to_string().contains("PS256"));
}

#[test]
fn ring_reloads_only_when_the_manifest_changes() {
    let tmp = tempfile::tempdir().unwrap();
    generate(tmp.path(), SigningAlg::RS256, None, t0()).unwrap();
    let ring = KeyRing::load(tmp.path(), t0()).unwrap();
    assert!(!ring.reload(tmp.path(), t0()).unwrap());
    let new = rotate(tmp.path(), SigningAlg::RS256, t0()).unwrap();
    assert!(ring.reload(tmp.path(), t0()).unwrap());
    assert_eq!(ring.current().active_kid(SigningAlg::RS256), Some(&new));
}

#[test]
fn debug_redacts_private_keys_and_pem_round_trips() {
    let key = SigningKey::generate(SigningAlg::ES256, None).unwrap();
    let pem = key.to_pkcs8_pem().unwrap();
    let kid = key.kid().clone();
    let mut text = format!("{key:?}");
    text.push_str(&format!("{:?}", KeySet::from_keys(vec![key])));
    assert!(text.contains("[redacted]"));
    assert!(!text.contains("PRIVATE"));
    let again = SigningKey::from_pkcs8_pem(SigningAlg::ES256, &pem).unwrap();
    assert!(!text.contains(&pem[40..80]));
    assert_eq!(again.kid(), &kid);
}

#[test]
fn odd_rsa_sizes_are_refused() {
    assert!(matches!(
        SigningKey::generate(SigningAlg::RS256, Some(1024)),
        Err(KeyError::RsaBits(1024))
    ));
}

fn manifest_bytes(dir: &Path) -> Vec<u8> {
    store::read_manifest_bytes(dir).unwrap().unwrap()
}

#[test]
fn rotate_all_rotates_each_active_alg_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let es = generate(tmp.path(), SigningAlg::ES256, None, t0()).unwrap();
    let rotated = rotate_all(tmp.path(), t0()).unwrap();
    assert_eq!(rotated.len(), 1);
    assert_eq!(rotated[0].0, SigningAlg::ES256);
    assert_ne!(rotated[0].1, es);
    let set = KeySet::load(tmp.path(), t0()).unwrap();
    assert_eq!(set.active_algs(), vec![SigningAlg::ES256]);
    assert_eq!(set.active_kid(SigningAlg::ES256), Some(&rotated[0].1));
}

#[test]
fn rotate_all_without_an_active_key_fails_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let err = rotate_all(&dir, t0()).unwrap_err();
    assert!(matches!(err, KeyError::NoActiveKey(_)));
    assert!(err.to_string().contains("keys generate"), "{err}");
    assert!(!dir.exists());
}

fn import_fixture(dir: &Path, name: &str, alg: SigningAlg, kid: &str) -> KeyId {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/keys")
        .join(name);
    let text = std::fs::read_to_string(path).unwrap();
    let request = ImportRequest {
        text: &text,
        alg: Some(alg),
        kid: Some(kid),
    };
    import(dir, request, t0()).unwrap().kid
}

#[test]
fn rotation_never_replaces_an_imported_key_with_a_generated_one() {
    let tmp = tempfile::tempdir().unwrap();
    import_fixture(tmp.path(), "rs256.pem", SigningAlg::RS256, "idp-1");
    generate(tmp.path(), SigningAlg::ES256, None, t0()).unwrap();
    let before = manifest_bytes(tmp.path());
    let err = rotate(tmp.path(), SigningAlg::RS256, t0()).unwrap_err();
    assert!(matches!(err, KeyError::ImportedActive { .. }));
    assert!(err.to_string().contains("keys import --alg RS256"), "{err}");
    // Without --alg the refusal also holds back the ES256 rotation.
    assert!(matches!(
        rotate_all(tmp.path(), t0()),
        Err(KeyError::ImportedActive { .. })
    ));
    assert_eq!(manifest_bytes(tmp.path()), before);
    // With the IdP's next key waiting, rotation switches to it.
    let next = import_fixture(tmp.path(), "ps256.pem", SigningAlg::RS256, "idp-2");
    assert_eq!(rotate(tmp.path(), SigningAlg::RS256, t0()).unwrap(), next);
}

#[test]
fn activate_switches_to_a_standby_key_and_retires_the_active_one() {
    let tmp = tempfile::tempdir().unwrap();
    let old = import_fixture(tmp.path(), "rs256.pem", SigningAlg::RS256, "idp-1");
    let next = import_fixture(tmp.path(), "ps256.pem", SigningAlg::RS256, "idp-2");
    let set = KeySet::load(tmp.path(), t0()).unwrap();
    assert_eq!(set.active_kid(SigningAlg::RS256), Some(&old));
    assert_eq!(set.jwks(t0()).keys.len(), 2, "the standby key is published");
    let later = t0() + Duration::seconds(60);
    let done = activate(tmp.path(), &next, later).unwrap();
    assert_eq!(done.alg, SigningAlg::RS256);
    assert_eq!(done.retired.as_ref(), Some(&old));
    let set = KeySet::load(tmp.path(), later).unwrap();
    assert_eq!(set.active_kid(SigningAlg::RS256), Some(&next));
    let gone = later + Duration::seconds(RETIRED_GRACE_SECS);
    assert_eq!(set.jwks(gone - Duration::seconds(1)).keys.len(), 2);
    assert_eq!(set.jwks(gone).keys.len(), 1);
    let manifest = store::read_manifest(tmp.path()).unwrap();
    assert_eq!(manifest.keys[0].retired_at, Some(later));
}

#[test]
fn only_a_standby_key_can_be_activated() {
    let tmp = tempfile::tempdir().unwrap();
    let old = generate(tmp.path(), SigningAlg::EdDSA, None, t0()).unwrap();
    let new = rotate(tmp.path(), SigningAlg::EdDSA, t0()).unwrap();
    let before = manifest_bytes(tmp.path());
    for (kid, state) in [(&new, "active"), (&old, "retired")] {
        match activate(tmp.path(), kid, t0()) {
            Err(KeyError::NotStandby { state: found, .. }) => assert_eq!(found, state),
            other => panic!("activating a {state} key: {other:?}"),
        }
    }
    assert!(matches!(
        activate(tmp.path(), &KeyId::new("nope"), t0()),
        Err(KeyError::UnknownKid(_))
    ));
    assert_eq!(manifest_bytes(tmp.path()), before);
}

#[test]
fn an_imported_kid_is_escaped_in_the_header() {
    let key = SigningKey::generate(SigningAlg::ES256, None)
        .unwrap()
        .with_kid(KeyId::new(r#"idp"1\x"#));
    let token = KeySet::from_keys(vec![key])
        .sign(SigningAlg::ES256, TokenTyp::LogoutJwt, &claims())
        .unwrap();
    let header = token.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], r#"idp"1\x"#);
    assert_eq!(header["alg"], "ES256");
}

#[test]
fn set_signing_key_is_added_beside_other_algs_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    generate(&dir, SigningAlg::ES256, None, t0()).unwrap();
    let kid = ensure_set_signing_key(&dir, t0()).unwrap().unwrap();
    assert_eq!(ensure_set_signing_key(&dir, t0()).unwrap(), None);
    let set = KeySet::load(&dir, t0()).unwrap();
    assert_eq!(set.active_kid(SigningAlg::RS256), Some(&kid));
    assert!(
        set.active_kid(SigningAlg::ES256).is_some(),
        "ES256 untouched"
    );
    let mode = std::fs::metadata(dir.join(format!("{kid}.pem")))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn sign_json_uses_the_secevent_header() {
    let key = SigningKey::generate(SigningAlg::RS256, None).unwrap();
    let token = key
        .sign_json(TokenTyp::SecEventJwt, br#"{"jti":"j"}"#)
        .unwrap();
    let mut parts = token.split('.');
    let header = URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
    let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
    assert_eq!(header["typ"], "secevent+jwt");
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], key.kid().as_str());
    let claims = URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
    assert_eq!(claims, br#"{"jti":"j"}"#);
    assert_eq!(parts.count(), 1);
}
