//! Keys of JWE: a recipient's public key chosen from its JWK Set, and the private key a
//! receiver decrypts with (a private JWK, a JWK Set, or a PKCS#8 PEM file).

use super::ecdh::{self, Curve};
use super::{JweError, KeyAlg, unb64};
use aws_lc_rs::agreement::PrivateKey;
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::{
    KeyPairComponents, PrivateDecryptingKey, PublicEncryptingKey, PublicKeyComponents,
};
use aws_lc_rs::signature::RsaKeyPair;
use serde_json::{Map, Value};
use std::fmt;
use zeroize::Zeroizing;

/// The fewest bits an RSA key may have.
pub(crate) const MIN_RSA_BITS: usize = 2048;
/// JWK members that only a private (or symmetric) key has.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A recipient's public key, usable for one key-management algorithm.
#[derive(Clone)]
pub struct RecipientKey {
    pub(super) kid: Option<String>,
    pub(super) kind: PublicKind,
}

#[derive(Clone)]
pub(super) enum PublicKind {
    Rsa(PublicEncryptingKey),
    Ec(Curve, Vec<u8>),
}

impl fmt::Debug for RecipientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            PublicKind::Rsa(_) => "RSA",
            PublicKind::Ec(curve, _) => curve.name(),
        };
        f.debug_struct("RecipientKey")
            .field("kid", &self.kid)
            .field("kind", &kind)
            .finish()
    }
}

impl RecipientKey {
    /// The key's `kid`, put in the JWE header when present.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
}

fn text<'a>(jwk: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    jwk.get(name).and_then(Value::as_str)
}

fn bytes(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let value = text(jwk, name).ok_or_else(|| format!("has no {name}"))?;
    unb64(value, name).map_err(|_| format!("{name} is not base64url"))
}

/// The key `jwk` gives for `alg`, or why it gives none.
fn usable(jwk: &Map<String, Value>, alg: KeyAlg) -> Result<RecipientKey, String> {
    if let Some(private) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
        return Err(format!("holds the private member {private}"));
    }
    match text(jwk, "use") {
        None | Some("enc") => {}
        Some(other) => return Err(format!("is for use {other:?}, not \"enc\"")),
    }
    match text(jwk, "alg") {
        Some(other) if other != alg.as_str() => return Err(format!("is for alg {other}")),
        _ => {}
    }
    let kty = text(jwk, "kty").unwrap_or_default();
    let kind = match alg {
        KeyAlg::RsaOaep256 => rsa_public(jwk, kty)?,
        KeyAlg::EcdhEs => ec_public(jwk, kty)?,
    };
    Ok(RecipientKey {
        kid: text(jwk, "kid").map(str::to_owned),
        kind,
    })
}

fn rsa_public(jwk: &Map<String, Value>, kty: &str) -> Result<PublicKind, String> {
    if kty != "RSA" {
        return Err(format!("is kty {kty:?}, RSA-OAEP-256 needs RSA"));
    }
    let components = PublicKeyComponents {
        n: bytes(jwk, "n")?,
        e: bytes(jwk, "e")?,
    };
    let key: PublicEncryptingKey = components
        .try_into()
        .map_err(|_| "is not a valid RSA public key".to_owned())?;
    if key.key_size_bits() < MIN_RSA_BITS {
        return Err(format!(
            "has {} bits; RSA keys need at least {MIN_RSA_BITS}",
            key.key_size_bits()
        ));
    }
    Ok(PublicKind::Rsa(key))
}

fn ec_public(jwk: &Map<String, Value>, kty: &str) -> Result<PublicKind, String> {
    let crv = text(jwk, "crv").unwrap_or_default();
    let curve = Curve::from_jwk(kty, crv).ok_or_else(|| {
        format!("is kty {kty:?} crv {crv:?}; ECDH-ES needs EC P-256, P-384, P-521 or OKP X25519")
    })?;
    let x = bytes(jwk, "x")?;
    let y = if curve == Curve::X25519 {
        None
    } else {
        Some(bytes(jwk, "y")?)
    };
    let public = curve
        .public_bytes(&x, y.as_deref())
        .map_err(|e| e.to_string())?;
    // One agreement proves the point is on the curve before the key is accepted.
    ecdh::agree_ephemeral(curve, &public, super::ContentEnc::A256Gcm)
        .map_err(|_| format!("is not a valid {} public key", curve.name()))?;
    Ok(PublicKind::Ec(curve, public))
}

fn keys_of(jwks: &Value) -> Result<&Vec<Value>, String> {
    jwks.get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| "is not a JWK Set (an object with a keys array)".to_owned())
}

/// The key of `jwks` to encrypt to with `alg`: the first usable one that has a `kid`, else
/// the first usable one. The error says why each key was passed over.
pub fn choose_key(jwks: &Value, alg: KeyAlg) -> Result<RecipientKey, String> {
    let mut reasons = Vec::new();
    let mut first = None;
    for (i, key) in keys_of(jwks)?.iter().enumerate() {
        let Some(jwk) = key.as_object() else {
            reasons.push(format!("key {i} is not an object"));
            continue;
        };
        match usable(jwk, alg) {
            Ok(key) if key.kid.is_some() => return Ok(key),
            Ok(key) => {
                first.get_or_insert(key);
            }
            Err(why) => reasons.push(format!("key {i} {why}")),
        }
    }
    first.ok_or_else(|| match reasons.is_empty() {
        true => "the JWK Set has no keys".to_owned(),
        false => reasons.join("; "),
    })
}

/// Checks an inline `jwks` at registration: a JWK Set with no private members, holding a
/// key usable for `alg` when encryption is registered.
pub(crate) fn check_inline_jwks(jwks: &Value, alg: Option<KeyAlg>) -> Result<(), String> {
    for (i, key) in keys_of(jwks)?.iter().enumerate() {
        let jwk = key
            .as_object()
            .ok_or_else(|| format!("key {i} is not an object"))?;
        if let Some(private) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
            return Err(format!(
                "key {i} holds the private member {private}; register public keys only"
            ));
        }
    }
    match alg {
        Some(alg) => choose_key(jwks, alg)
            .map(drop)
            .map_err(|why| format!("no key usable for {alg}: {why}")),
        None => Ok(()),
    }
}

/// A receiver's private keys, from a private JWK, a JWK Set of them, or a PKCS#8 PEM file.
/// `Debug` prints no key material.
pub struct DecryptionKey {
    pub(super) keys: Vec<PrivateEntry>,
}

pub(super) struct PrivateEntry {
    pub(super) kid: Option<String>,
    pub(super) kind: PrivateKind,
}

pub(super) enum PrivateKind {
    Rsa(PrivateDecryptingKey),
    Ec(Curve, PrivateKey),
}

impl fmt::Debug for DecryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DecryptionKey({} keys, [redacted])", self.keys.len())
    }
}

impl DecryptionKey {
    /// Reads the contents of a key file: JSON (a private JWK or a JWK Set) or PEM (PKCS#8).
    pub fn parse(text: &str) -> Result<Self, JweError> {
        let trimmed = text.trim_start();
        let keys = if trimmed.starts_with("-----BEGIN") {
            vec![from_pem(trimmed)?]
        } else {
            from_json(trimmed)?
        };
        Ok(Self { keys })
    }
}

fn from_json(text: &str) -> Result<Vec<PrivateEntry>, JweError> {
    let mut json: Value = serde_json::from_str(text)
        .map_err(|_| JweError::BadKey("not JSON (a private JWK or JWK Set) nor PEM".into()))?;
    let list = match json.get_mut("keys").map(Value::take) {
        Some(Value::Array(keys)) => keys,
        Some(_) => return Err(JweError::BadKey("keys is not an array".into())),
        None => vec![json],
    };
    let keys = list
        .iter()
        .map(|key| {
            key.as_object()
                .ok_or(JweError::BadKey("a key is not an object".into()))
        })
        .map(|jwk| jwk.and_then(private_entry))
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err(JweError::BadKey("the JWK Set has no keys".into()));
    }
    Ok(keys)
}

fn private_entry(jwk: &Map<String, Value>) -> Result<PrivateEntry, JweError> {
    let bad = |why: String| JweError::BadKey(why);
    if !jwk.contains_key("d") {
        return Err(bad("the JWK has no private member d".into()));
    }
    let kty = text(jwk, "kty").unwrap_or_default();
    let kind = match kty {
        "RSA" => PrivateKind::Rsa(rsa_private(jwk).map_err(bad)?),
        _ => {
            let crv = text(jwk, "crv").unwrap_or_default();
            let curve = Curve::from_jwk(kty, crv)
                .ok_or_else(|| bad(format!("kty {kty:?} crv {crv:?} is not supported")))?;
            let d = Zeroizing::new(bytes(jwk, "d").map_err(bad)?);
            PrivateKind::Ec(curve, ecdh::private_key(curve, &d)?)
        }
    };
    Ok(PrivateEntry {
        kid: text(jwk, "kid").map(str::to_owned),
        kind,
    })
}

fn rsa_private(jwk: &Map<String, Value>) -> Result<PrivateDecryptingKey, String> {
    let secret = |name: &str| bytes(jwk, name).map(Zeroizing::new);
    let (n, e) = (bytes(jwk, "n")?, bytes(jwk, "e")?);
    let (d, p, q) = (secret("d")?, secret("p")?, secret("q")?);
    let (dp, dq, qi) = (secret("dp")?, secret("dq")?, secret("qi")?);
    let components = KeyPairComponents {
        public_key: PublicKeyComponents {
            n: n.as_slice(),
            e: e.as_slice(),
        },
        d: d.as_slice(),
        p: p.as_slice(),
        q: q.as_slice(),
        dP: dp.as_slice(),
        dQ: dq.as_slice(),
        qInv: qi.as_slice(),
    };
    let pair = RsaKeyPair::from_components(&components)
        .map_err(|_| "not a valid RSA private key".to_owned())?;
    let der = pair
        .as_der()
        .map_err(|_| "cannot encode the RSA key".to_owned())?;
    rsa_from_pkcs8(der.as_ref())
}

fn rsa_from_pkcs8(der: &[u8]) -> Result<PrivateDecryptingKey, String> {
    let key = PrivateDecryptingKey::from_pkcs8(der)
        .map_err(|_| "not a valid RSA private key".to_owned())?;
    if key.key_size_bits() < MIN_RSA_BITS {
        return Err(format!(
            "the RSA key has {} bits; at least {MIN_RSA_BITS} are needed",
            key.key_size_bits()
        ));
    }
    Ok(key)
}

fn from_pem(text: &str) -> Result<PrivateEntry, JweError> {
    let block = pem::parse(text).map_err(|_| JweError::BadKey("not a PEM file".into()))?;
    if block.tag() != "PRIVATE KEY" {
        return Err(JweError::BadKey(format!(
            "a PEM {:?} block; give a PKCS#8 \"PRIVATE KEY\"",
            block.tag()
        )));
    }
    let der = Zeroizing::new(block.contents().to_vec());
    let kind = match rsa_from_pkcs8(&der) {
        Ok(rsa) => PrivateKind::Rsa(rsa),
        Err(_) => match ecdh::private_key_der(&der) {
            Some((curve, key)) => PrivateKind::Ec(curve, key),
            None => {
                return Err(JweError::BadKey(
                    "the PKCS#8 key is neither RSA (2048 bits or more) nor EC P-256/384/521".into(),
                ));
            }
        },
    };
    Ok(PrivateEntry { kid: None, kind })
}
