//! `logoutd keys import`, `activate`, `list` and `rotate` without `--alg`, run as an operator
//! would run them.

use super::{logoutd, mode, stdout, verify_with_stdin};
use crate::support::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use std::path::Path;
use std::process::Output;

fn key_file(name: &str) -> String {
    fixture(&format!("keys/{name}"))
        .to_str()
        .unwrap()
        .to_owned()
}

fn import(dir: &Path, file: &str, extra: &[&str]) -> Output {
    let file = key_file(file);
    let mut args = vec!["keys", "import"];
    args.extend_from_slice(extra);
    args.push(&file);
    logoutd(dir, &args)
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

fn list_json(dir: &Path) -> Vec<Value> {
    let out = stdout(&logoutd(dir, &["keys", "list", "--json"]));
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn stderr_of(output: &Output) -> String {
    assert!(!output.status.success(), "unexpected success");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn each_format_imports_with_its_kid_and_private_modes() {
    // (file, flags, expected kid or None for the thumbprint, expected alg)
    let cases: [(&str, &[&str], Option<&str>, &str); 6] = [
        ("es256.pem", &[], None, "ES256"),
        (
            "import/rs256.pkcs1.pem",
            &["--alg", "RS256", "--kid", "idp-rsa"],
            Some("idp-rsa"),
            "RS256",
        ),
        (
            "import/es256.sec1.pem",
            &["--kid", "idp-ec"],
            Some("idp-ec"),
            "ES256",
        ),
        ("import/ps256.jwk.json", &[], Some("idp-rsa-2024"), "PS256"),
        ("import/ed25519.jwk.json", &[], Some("idp-ed-1"), "EdDSA"),
        (
            "import/es256.jwk.json",
            &["--kid", "override"],
            Some("override"),
            "ES256",
        ),
    ];
    for (file, flags, kid, alg) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let said = stdout(&import(&dir, file, flags));
        let entry = &manifest(&dir)["keys"][0];
        let thumbprint = entry["thumbprint"].as_str().unwrap();
        assert_eq!(entry["kid"], kid.unwrap_or(thumbprint), "{file}");
        assert_eq!(entry["alg"], alg, "{file}");
        assert_eq!(entry["imported"], true, "{file}");
        assert!(
            said.contains(&format!(
                "{alg} key {}: active",
                entry["kid"].as_str().unwrap()
            )),
            "{said}"
        );
        assert_eq!(mode(&dir), 0o700);
        for file in std::fs::read_dir(&dir).unwrap() {
            assert_eq!(mode(&file.unwrap().path()), 0o600);
        }
        let key = std::fs::read_to_string(dir.join(format!("{thumbprint}.pem"))).unwrap();
        assert!(
            key.starts_with("-----BEGIN PRIVATE KEY-----"),
            "stored as PKCS#8"
        );
    }
}

#[test]
fn an_imported_key_signs_tokens_that_verify_against_keys_jwks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    stdout(&import(&dir, "import/ps256.jwk.json", &[]));
    let mint = [
        "token",
        "mint",
        "--issuer",
        ISSUER,
        "--client-id",
        CLIENT,
        "--sid",
        "s-1",
        "--alg",
        "PS256",
    ];
    let token = stdout(&logoutd(&dir, &mint));
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.trim().split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], "idp-rsa-2024");
    assert_eq!(header["alg"], "PS256");
    let jwks_text = stdout(&logoutd(&dir, &["keys", "jwks"]));
    let jwks: Value = serde_json::from_str(&jwks_text).unwrap();
    let published = &jwks["keys"][0];
    assert_eq!(published["kid"], "idp-rsa-2024");
    assert!(published.get("d").is_none() && published.get("p").is_none());
    // The IdP's own public JWK is what logoutd publishes: same modulus.
    let idp: Value =
        serde_json::from_str(&std::fs::read_to_string(key_file("import/ps256.jwk.json")).unwrap())
            .unwrap();
    assert_eq!(published["n"], idp["n"]);
    let jwks_file = tmp.path().join("jwks.json");
    std::fs::write(&jwks_file, jwks_text).unwrap();
    let verified = verify_with_stdin(&dir, &jwks_file, &token, &["--alg", "PS256"]);
    let claims: Value = serde_json::from_str(&stdout(&verified)).unwrap();
    assert_eq!(claims["sid"], "s-1");
}

/// Every file name and its bytes.
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
fn refused_imports_name_the_problem_and_leave_the_directory_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    stdout(&import(&dir, "es256.pem", &["--kid", "idp-1"]));
    let before = snapshot(&dir);
    let cases: [(&str, &[&str], &str); 10] = [
        ("import/es256.public.pem", &[], "holds only a public key"),
        (
            "import/es256.public.jwk.json",
            &[],
            "holds only a public key",
        ),
        ("import/rsa1024.pem", &["--alg", "RS256"], "has 1024 bits"),
        ("import/p384.pem", &[], "curve P-384 is not supported"),
        (
            "import/secp256k1.pem",
            &[],
            "curve secp256k1 is not supported",
        ),
        ("import/encrypted-pkcs8.pem", &[], "the key is encrypted"),
        ("import/encrypted-legacy.pem", &[], "the key is encrypted"),
        (
            "ed25519.pem",
            &["--kid", "idp-1"],
            "kid idp-1 already exists",
        ),
        ("rs256.pem", &[], "choose one with --alg"),
        (
            "import/rsa-no-crt.jwk.json",
            &[],
            "lacks the CRT members p, q, dp, dq, qi",
        ),
    ];
    for (file, flags, expected) in cases {
        let err = stderr_of(&import(&dir, file, flags));
        assert!(err.contains(expected), "{file}: {err}");
        assert!(!err.contains("PRIVATE KEY-----"), "{file}: {err}");
        assert_eq!(snapshot(&dir), before, "{file} changed the directory");
    }
    let mismatch = stderr_of(&import(&dir, "ed25519.pem", &["--alg", "ES256"]));
    assert!(
        mismatch.contains("ES256 does not fit an Ed25519 key"),
        "{mismatch}"
    );
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn a_standby_import_is_activated_and_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    stdout(&import(
        &dir,
        "rs256.pem",
        &["--alg", "RS256", "--kid", "idp-2025"],
    ));
    let said = stdout(&import(
        &dir,
        "ps256.pem",
        &["--alg", "RS256", "--kid", "idp-2026"],
    ));
    assert!(said.contains("RS256 key idp-2026: standby"), "{said}");
    assert!(said.contains("keys activate"), "{said}");
    let generated = stdout(&logoutd(&dir, &["keys", "generate", "--alg", "ES256"]));

    let activated = stdout(&logoutd(&dir, &["keys", "activate", "idp-2026"]));
    assert!(
        activated.contains("idp-2026 now signs RS256 tokens; idp-2025 is retired"),
        "{activated}"
    );
    let again = stderr_of(&logoutd(&dir, &["keys", "activate", "idp-2025"]));
    assert!(again.contains("is retired; only a standby key"), "{again}");

    let keys = list_json(&dir);
    let summary: Vec<(&str, &str, bool)> = keys
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().unwrap(),
                k["state"].as_str().unwrap(),
                k["imported"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("idp-2025", "retired", true),
            ("idp-2026", "active", true),
            (generated.trim(), "active", false),
        ]
    );
    assert!(keys[0]["retired_at"].is_string() && keys[1]["activated_at"].is_string());
    assert!(keys[2]["retired_at"].is_null());

    let table = stdout(&logoutd(&dir, &["keys", "list"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    for column in [
        "KID",
        "ALG",
        "STATE",
        "CREATED",
        "ACTIVATED",
        "RETIRED",
        "IMPORTED",
    ] {
        assert!(lines[0].contains(column), "{table}");
    }
    let row = |kid: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(kid))
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    let retired = row("idp-2025");
    assert_eq!(
        (retired[1], retired[2], retired[6]),
        ("RS256", "retired", "yes")
    );
    let own = row(generated.trim());
    assert_eq!(
        (own[1], own[2], own[5], own[6]),
        ("ES256", "active", "-", "no")
    );
}

#[test]
fn rotate_without_alg_rotates_only_the_algs_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let empty = stderr_of(&logoutd(&dir, &["keys", "rotate"]));
    assert!(empty.contains("no active signing key"), "{empty}");
    assert!(!dir.exists());

    let first = stdout(&logoutd(&dir, &["keys", "generate", "--alg", "ES256"]));
    let rotated = stdout(&logoutd(&dir, &["keys", "rotate"]));
    assert_eq!(rotated.lines().count(), 1, "{rotated}");
    assert_ne!(rotated, first);
    let keys = list_json(&dir);
    assert_eq!(keys.len(), 2);
    assert!(
        keys.iter().all(|k| k["alg"] == "ES256"),
        "no RS256 key appeared: {keys:?}"
    );
    assert_eq!(keys[1]["kid"], rotated.trim());
    assert_eq!(keys[1]["state"], "active");
}
