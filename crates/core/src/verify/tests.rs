//! Unit tests for the verifier rules that integration tests do not reach.

use super::*;

#[test]
fn typ_comparison_follows_rfc7515() {
    assert!(header::typ_matches("application/logout+jwt", "logout+jwt"));
    assert!(header::typ_matches("Logout+JWT", "logout+jwt"));
    assert!(header::typ_matches("jwt", "JWT"));
    assert!(!header::typ_matches("logout+jwt+x", "logout+jwt"));
    assert!(!header::typ_matches("application/jwt", "logout+jwt"));
}

#[test]
fn loopback_is_the_only_plain_http() {
    let ok = |u: &str| source::uri_allowed(&url::Url::parse(u).unwrap());
    assert!(ok("https://op.example/jwks"));
    assert!(ok("http://127.0.0.1:9/jwks"));
    assert!(ok("http://[::1]/jwks"));
    assert!(ok("http://localhost/jwks"));
    assert!(!ok("http://op.example/jwks"));
    assert!(!ok("http://10.0.0.1/jwks"));
    assert!(!ok("file:///etc/passwd"));
}

#[test]
fn two_parts_or_padding_are_malformed() {
    let opts = VerifyOptions::new(Issuer::new("i"), ClientId::new("c"));
    let now = chrono::Utc::now();
    for token in ["a.b", "a.b.c.d", "eyJ9=.e30.AA", ""] {
        let errors = verify(token, &Jwks::default(), &opts, now).unwrap_err();
        assert!(
            matches!(errors.as_slice(), [VerifyError::Malformed(_)]),
            "{token}"
        );
    }
}
