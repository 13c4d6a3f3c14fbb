//! Unit tests for reading key files, the alg rule and the refusals.

use super::*;
use crate::keys::{KeySet, store};
use std::path::PathBuf;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/keys")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

/// The thumbprint of a fixture key read the way generated keys are read.
fn thumbprint_of(alg: SigningAlg, name: &str) -> KeyId {
    SigningKey::from_pkcs8_pem(alg, &fixture(name))
        .unwrap()
        .thumbprint()
}

fn parsed_thumbprint(name: &str, alg: SigningAlg) -> KeyId {
    let parsed = parse(&fixture(name)).unwrap();
    SigningKey::from_pkcs8_der(alg, &parsed.pkcs8)
        .unwrap()
        .thumbprint()
}

fn refusal(name: &str) -> ImportError {
    match parse(&fixture(name)) {
        Ok(_) => panic!("{name} was accepted"),
        Err(err) => err,
    }
}

#[test]
fn every_format_reads_as_the_same_key() {
    let rsa = thumbprint_of(SigningAlg::RS256, "rs256.pem");
    assert_eq!(parsed_thumbprint("rs256.pem", SigningAlg::RS256), rsa);
    assert_eq!(
        parsed_thumbprint("import/rs256.pkcs1.pem", SigningAlg::RS256),
        rsa
    );
    let ec = thumbprint_of(SigningAlg::ES256, "es256.pem");
    assert_eq!(
        parsed_thumbprint("import/es256.sec1.pem", SigningAlg::ES256),
        ec
    );
    assert_eq!(
        parsed_thumbprint("import/es256.jwk.json", SigningAlg::ES256),
        ec
    );
    assert_eq!(
        parsed_thumbprint("import/ps256.jwk.json", SigningAlg::PS256),
        thumbprint_of(SigningAlg::PS256, "ps256.pem")
    );
    assert_eq!(
        parsed_thumbprint("import/ed25519.jwk.json", SigningAlg::EdDSA),
        thumbprint_of(SigningAlg::EdDSA, "ed25519.pem")
    );
    // `openssl ecparam -genkey` writes an EC PARAMETERS block before the key.
    assert_eq!(
        parse(&fixture("import/es256.ecparam.pem")).unwrap().kind,
        KeyKind::P256
    );
}

#[test]
fn a_jwk_carries_its_kid_and_alg() {
    let parsed = parse(&fixture("import/ps256.jwk.json")).unwrap();
    assert_eq!(parsed.kind, KeyKind::Rsa);
    assert_eq!(parsed.kid.as_deref(), Some("idp-rsa-2024"));
    assert_eq!(parsed.alg.as_deref(), Some("PS256"));
    let set = format!(r#"{{"keys":[{}]}}"#, fixture("import/es256.jwk.json"));
    assert_eq!(parse(&set).unwrap().kid.as_deref(), Some("idp-ec-1"));
}

#[test]
fn the_alg_follows_the_key_or_the_flag() {
    use SigningAlg::*;
    assert_eq!(choose_alg(KeyKind::P256, None, None).unwrap(), ES256);
    assert_eq!(choose_alg(KeyKind::Ed25519, None, None).unwrap(), EdDSA);
    assert_eq!(choose_alg(KeyKind::Rsa, Some(PS256), None).unwrap(), PS256);
    assert_eq!(
        choose_alg(KeyKind::Rsa, None, Some("RS256")).unwrap(),
        RS256
    );
    assert!(matches!(
        choose_alg(KeyKind::Rsa, None, None),
        Err(ImportError::AlgNeeded)
    ));
    let mismatch = choose_alg(KeyKind::Rsa, Some(ES256), None).unwrap_err();
    assert_eq!(
        mismatch.to_string(),
        "ES256 does not fit an RSA key (it signs RS256 or PS256)"
    );
    assert!(matches!(
        choose_alg(KeyKind::P256, Some(EdDSA), None),
        Err(ImportError::AlgMismatch { .. })
    ));
    assert!(matches!(
        choose_alg(KeyKind::Rsa, Some(RS256), Some("PS256")),
        Err(ImportError::AlgConflict {
            flag: RS256,
            jwk: PS256
        })
    ));
    assert!(matches!(
        choose_alg(KeyKind::P256, None, Some("ES384")),
        Err(ImportError::JwkAlg(alg)) if alg == "ES384"
    ));
}

#[test]
fn refusals_name_the_problem() {
    assert!(matches!(
        refusal("import/encrypted-pkcs8.pem"),
        ImportError::Encrypted(_)
    ));
    assert!(matches!(
        refusal("import/encrypted-legacy.pem"),
        ImportError::Encrypted(_)
    ));
    assert!(matches!(
        refusal("import/es256.public.pem"),
        ImportError::PublicOnly(_)
    ));
    assert!(matches!(
        refusal("import/es256.public.jwk.json"),
        ImportError::PublicOnly(_)
    ));
    assert!(matches!(
        refusal("import/rsa1024.pem"),
        ImportError::RsaSize(1024)
    ));
    assert!(matches!(refusal("import/p384.pem"), ImportError::Curve(c) if c == "P-384"));
    assert!(matches!(refusal("import/secp256k1.pem"), ImportError::Curve(c) if c == "secp256k1"));
    assert!(matches!(
        refusal("import/rsa-no-crt.jwk.json"),
        ImportError::RsaCrt(m) if m == "p, q, dp, dq, qi"
    ));
    assert!(matches!(refusal("import/ed448.pem"), ImportError::Curve(c) if c == "Ed448"));
    assert!(matches!(refusal("import/rsa-pss.pem"), ImportError::RsaPss));
    let two = format!("{}{}", fixture("es256.pem"), fixture("ed25519.pem"));
    assert!(matches!(parse(&two), Err(ImportError::SeveralKeys(2))));
}

#[test]
fn odd_jwks_are_refused() {
    let oct = r#"{"kty":"oct","k":"c2VjcmV0"}"#;
    assert!(matches!(parse(oct), Err(ImportError::KeyType(_))));
    let enc = fixture("import/es256.jwk.json").replace(r#""kty""#, r#""use":"enc","kty""#);
    assert!(matches!(parse(&enc), Err(ImportError::Use(u)) if u == "enc"));
    let p384 = fixture("import/es256.jwk.json").replace("P-256", "P-384");
    assert!(matches!(parse(&p384), Err(ImportError::Curve(c)) if c == "P-384"));
    let wrong_d = fixture("import/es256.jwk.json").replace(
        "yV25Iqv7ilMUc2ABP_Me5BvEMV0fyKdzTKqIcCIG0LE",
        "AV25Iqv7ilMUc2ABP_Me5BvEMV0fyKdzTKqIcCIG0LE",
    );
    assert!(matches!(
        parse(&wrong_d),
        Err(ImportError::Rejected("P-256", _))
    ));
    assert!(matches!(
        parse("not a key"),
        Err(ImportError::Unrecognised(_))
    ));
}

#[test]
fn kids_with_spaces_or_control_characters_are_refused() {
    assert!(check_kid("idp key".into()).is_err());
    assert!(check_kid("idp\u{7}".into()).is_err());
    assert!(check_kid(String::new()).is_err());
    assert!(check_kid("x".repeat(MAX_KID_CHARS + 1)).is_err());
    assert_eq!(
        check_kid("2024-01/rsa:\"a\"".into()).unwrap().as_str(),
        "2024-01/rsa:\"a\""
    );
}

fn request<'a>(text: &'a str, alg: Option<SigningAlg>, kid: Option<&'a str>) -> ImportRequest<'a> {
    ImportRequest { text, alg, kid }
}

#[test]
fn an_imported_key_keeps_its_kid_and_signs_under_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let text = fixture("import/ps256.jwk.json");
    let imported = import(&dir, request(&text, None, None), t0()).unwrap();
    assert_eq!(imported.kid.as_str(), "idp-rsa-2024");
    assert_eq!(imported.alg, SigningAlg::PS256);
    assert!(imported.active);
    let manifest = store::read_manifest(&dir).unwrap();
    let entry = &manifest.keys[0];
    assert!(entry.imported);
    let thumbprint = thumbprint_of(SigningAlg::PS256, "ps256.pem");
    assert_eq!(entry.thumbprint(), &thumbprint);
    assert_eq!(entry.file_name(), format!("{thumbprint}.pem"));
    let set = KeySet::load(&dir, t0()).unwrap();
    assert_eq!(set.active_kid(SigningAlg::PS256), Some(&imported.kid));
    assert_eq!(
        set.jwks(t0()).find("idp-rsa-2024").unwrap().alg.as_deref(),
        Some("PS256")
    );
}

#[test]
fn a_swapped_key_file_fails_the_thumbprint_check() {
    let tmp = tempfile::tempdir().unwrap();
    let text = fixture("es256.pem");
    let imported = import(tmp.path(), request(&text, None, Some("idp-ec")), t0()).unwrap();
    let entry = store::read_manifest(tmp.path()).unwrap().keys.remove(0);
    let other = SigningKey::generate(SigningAlg::ES256, None).unwrap();
    let path = tmp.path().join(entry.file_name());
    std::fs::write(&path, other.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
    match KeySet::load(tmp.path(), t0()) {
        Err(KeyError::ThumbprintMismatch { kid, .. }) => assert_eq!(kid, imported.kid),
        other => panic!("expected a thumbprint mismatch, got {other:?}"),
    }
}

/// Every file name and its bytes, to show a refusal changed nothing.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn duplicate_kids_and_keys_are_refused_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let es = fixture("es256.pem");
    import(tmp.path(), request(&es, None, Some("idp-1")), t0()).unwrap();
    let before = snapshot(tmp.path());
    let ed = fixture("ed25519.pem");
    let taken = import(tmp.path(), request(&ed, None, Some("idp-1")), t0()).unwrap_err();
    assert!(
        taken.to_string().contains("kid idp-1 already exists"),
        "{taken}"
    );
    let again = import(tmp.path(), request(&es, None, Some("idp-2")), t0()).unwrap_err();
    assert!(again.to_string().contains("as kid idp-1"), "{again}");
    assert_eq!(snapshot(tmp.path()), before);
}

#[test]
fn a_refused_key_creates_no_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let text = fixture("import/rsa1024.pem");
    let err = import(&dir, request(&text, Some(SigningAlg::RS256), None), t0()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the RSA key has 1024 bits; logoutd signs with RSA keys of 2048 to 8192 bits"
    );
    assert!(!dir.exists());
}
