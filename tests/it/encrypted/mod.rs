//! Encrypted logout tokens (ID-token encryption, OpenID Connect Core 1.0 §10.2): registration,
//! delivery through the key cache, the receivers, and decryption by independent libraries.

mod delivery;
mod interop;
mod receivers;
mod registration;

use crate::support::fixture;
use logoutd_core::DecryptionKey;
use serde_json::{Value, json};

/// The fixture keys: (file stem, alg they serve).
pub const KEYS: [(&str, &str); 4] = [
    ("rsa", "RSA-OAEP-256"),
    ("p256", "ECDH-ES"),
    ("p384", "ECDH-ES"),
    ("x25519", "ECDH-ES"),
];

/// Every enc logoutd offers.
pub const ENCS: [&str; 2] = ["A128CBC-HS256", "A256GCM"];

/// The path of a fixture private key.
pub fn private_path(name: &str) -> std::path::PathBuf {
    fixture(&format!("jwe/{name}.json"))
}

/// A fixture private JWK.
pub fn private_jwk(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(private_path(name)).unwrap()).unwrap()
}

/// The public JWK Set of a fixture key: its private members removed.
pub fn public_jwks(name: &str) -> Value {
    let mut jwk = private_jwk(name);
    let members = jwk.as_object_mut().unwrap();
    for private in ["d", "p", "q", "dp", "dq", "qi"] {
        members.remove(private);
    }
    json!({ "keys": [jwk] })
}

/// The decryption key of a fixture.
pub fn decryption_key(name: &str) -> DecryptionKey {
    DecryptionKey::parse(&std::fs::read_to_string(private_path(name)).unwrap()).unwrap()
}
