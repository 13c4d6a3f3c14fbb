//! The compact serialization (RFC 7516 §7.1): `header.encrypted_key.iv.ciphertext.tag`, with
//! the ASCII of the encoded protected header as the additional authenticated data.

use super::content::{self, TAG_LEN};
use super::ecdh;
use super::jwk::{DecryptionKey, PrivateEntry, PrivateKind, PublicKind, RecipientKey};
use super::{ContentEnc, JweError, KeyAlg, b64, random, unb64};
use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// The longest compact JWE [`decrypt`] reads: 256 KiB.
const MAX_COMPACT_LEN: usize = 256 * 1024;

/// Encrypts `plaintext` to `key`. The protected header is `header` (such as `cty` and
/// replicated claims) with `alg`, `enc`, the key's `kid` when it has one, and `epk` for
/// `ECDH-ES`. A fresh CEK (or ephemeral key) and IV are made for every call.
pub fn encrypt(
    plaintext: &[u8],
    key: &RecipientKey,
    alg: KeyAlg,
    enc: ContentEnc,
    mut header: Map<String, Value>,
) -> Result<String, JweError> {
    header.insert("alg".into(), alg.as_str().into());
    header.insert("enc".into(), enc.as_str().into());
    if let Some(kid) = key.kid() {
        header.insert("kid".into(), kid.into());
    }
    let (cek, encrypted_key) = match (&key.kind, alg) {
        (PublicKind::Rsa(public), KeyAlg::RsaOaep256) => {
            let cek = Zeroizing::new(random::<32>()?.to_vec());
            (cek.clone(), rsa_wrap(public, &cek)?)
        }
        (PublicKind::Ec(curve, public), KeyAlg::EcdhEs) => {
            let (cek, epk) = ecdh::agree_ephemeral(*curve, public, enc)?;
            header.insert("epk".into(), epk);
            (cek, Vec::new())
        }
        _ => return Err(JweError::KeyMismatch(format!("the key is not for {alg}"))),
    };
    let protected = b64(&serde_json::to_vec(&header).map_err(|_| JweError::Crypto)?);
    let iv = match enc {
        ContentEnc::A256Gcm => random::<12>()?.to_vec(),
        ContentEnc::A128CbcHs256 => random::<16>()?.to_vec(),
    };
    let (ciphertext, tag) = content::seal(enc, &cek, &iv, protected.as_bytes(), plaintext)?;
    Ok([
        protected,
        b64(&encrypted_key),
        b64(&iv),
        b64(&ciphertext),
        b64(&tag),
    ]
    .join("."))
}

fn rsa_wrap(public: &aws_lc_rs::rsa::PublicEncryptingKey, cek: &[u8]) -> Result<Vec<u8>, JweError> {
    let key = OaepPublicEncryptingKey::new(public.clone()).map_err(|_| JweError::Crypto)?;
    let mut out = vec![0u8; key.ciphertext_size()];
    let len = key
        .encrypt(&OAEP_SHA256_MGF1SHA256, cek, &mut out, None)
        .map_err(|_| JweError::Crypto)?
        .len();
    out.truncate(len);
    Ok(out)
}

/// A decrypted JWE: its protected header and its plaintext.
pub struct Decrypted {
    /// The protected header.
    pub header: Map<String, Value>,
    /// The key-management algorithm it used.
    pub alg: KeyAlg,
    /// The content-encryption algorithm it used.
    pub enc: ContentEnc,
    /// The plaintext (for a nested JWT, the signed token).
    pub plaintext: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decrypted")
            .field("alg", &self.alg)
            .field("enc", &self.enc)
            .field("plaintext", &"[redacted]")
            .finish()
    }
}

/// The five parts of a compact JWE, decoded.
struct Parts {
    protected: String,
    header: Map<String, Value>,
    encrypted_key: Vec<u8>,
    iv: Vec<u8>,
    ciphertext: Vec<u8>,
    tag: Vec<u8>,
}

fn split(compact: &str) -> Result<Parts, JweError> {
    if compact.len() > MAX_COMPACT_LEN {
        return Err(JweError::Malformed("longer than 256 KiB".into()));
    }
    let parts: Vec<&str> = compact.split('.').collect();
    let [protected, ek, iv, ciphertext, tag] = parts.as_slice() else {
        return Err(JweError::Malformed(format!(
            "a compact JWE has 5 parts, this has {}",
            parts.len()
        )));
    };
    let header: Value = serde_json::from_slice(&unb64(protected, "the header")?)
        .map_err(|_| JweError::Malformed("the header is not JSON".into()))?;
    let Value::Object(header) = header else {
        return Err(JweError::Malformed(
            "the header is not a JSON object".into(),
        ));
    };
    Ok(Parts {
        protected: (*protected).to_owned(),
        header,
        encrypted_key: unb64(ek, "the encrypted key")?,
        iv: unb64(iv, "the IV")?,
        ciphertext: unb64(ciphertext, "the ciphertext")?,
        tag: unb64(tag, "the tag")?,
    })
}

fn algorithms(header: &Map<String, Value>) -> Result<(KeyAlg, ContentEnc), JweError> {
    for refused in ["crit", "zip"] {
        if header.contains_key(refused) {
            return Err(JweError::Unsupported(format!("header member {refused}")));
        }
    }
    let name = |member: &str| header.get(member).and_then(Value::as_str).unwrap_or("");
    let alg = KeyAlg::parse(name("alg")).ok_or_else(|| {
        JweError::Unsupported(format!(
            "alg {:?}; accepted: RSA-OAEP-256, ECDH-ES",
            name("alg")
        ))
    })?;
    let enc = ContentEnc::parse(name("enc")).ok_or_else(|| {
        JweError::Unsupported(format!(
            "enc {:?}; accepted: A128CBC-HS256, A256GCM",
            name("enc")
        ))
    })?;
    Ok((alg, enc))
}

/// Decrypts a compact JWE with one of `key`'s keys (the one whose `kid` the header names, or
/// else each that fits the header's alg). Fails closed on any malformed part, unsupported
/// header, wrong key or altered token; never panics on input.
pub fn decrypt(compact: &str, key: &DecryptionKey) -> Result<Decrypted, JweError> {
    let parts = split(compact.trim())?;
    let (alg, enc) = algorithms(&parts.header)?;
    let kid = parts.header.get("kid").and_then(Value::as_str);
    let fits = |entry: &&PrivateEntry| {
        matches!(
            (&entry.kind, alg),
            (PrivateKind::Rsa(_), KeyAlg::RsaOaep256) | (PrivateKind::Ec(..), KeyAlg::EcdhEs)
        )
    };
    let mut candidates: Vec<&PrivateEntry> = key.keys.iter().filter(fits).collect();
    if kid.is_some() && candidates.iter().any(|e| e.kid.as_deref() == kid) {
        candidates.retain(|e| e.kid.as_deref() == kid);
    }
    if candidates.is_empty() {
        return Err(JweError::KeyMismatch(format!(
            "the token uses {alg} and no configured key is for it"
        )));
    }
    let mut last = JweError::Decrypt;
    for entry in candidates {
        match open_with(entry, &parts, enc) {
            Ok(plaintext) => {
                return Ok(Decrypted {
                    header: parts.header,
                    alg,
                    enc,
                    plaintext,
                });
            }
            Err(err) => last = err,
        }
    }
    Err(last)
}

fn open_with(
    entry: &PrivateEntry,
    parts: &Parts,
    enc: ContentEnc,
) -> Result<Zeroizing<Vec<u8>>, JweError> {
    let cek = match &entry.kind {
        PrivateKind::Rsa(private) => rsa_unwrap(private, &parts.encrypted_key, enc)?,
        PrivateKind::Ec(curve, private) => {
            if !parts.encrypted_key.is_empty() {
                return Err(JweError::Malformed(
                    "ECDH-ES carries no encrypted key".into(),
                ));
            }
            ecdh::agree_static(*curve, private, &parts.header, enc)?
        }
    };
    if parts.tag.len() != TAG_LEN {
        return Err(JweError::Malformed(format!(
            "the tag must be {TAG_LEN} bytes"
        )));
    }
    content::open(
        enc,
        &cek,
        &parts.iv,
        parts.protected.as_bytes(),
        &parts.ciphertext,
        &parts.tag,
    )
    .map(Zeroizing::new)
}

/// Unwraps the CEK. A failed unwrap or a CEK of the wrong length yields a random CEK, so the
/// failure shows only as a failed tag check, as RFC 7516 §11.5 advises against padding and
/// timing oracles.
fn rsa_unwrap(
    private: &aws_lc_rs::rsa::PrivateDecryptingKey,
    encrypted_key: &[u8],
    enc: ContentEnc,
) -> Result<Zeroizing<Vec<u8>>, JweError> {
    let decoy = Zeroizing::new(random::<32>()?.to_vec());
    let Ok(key) = OaepPrivateDecryptingKey::new(private.clone()) else {
        return Err(JweError::Crypto);
    };
    if encrypted_key.len() != key.key_size_bytes() {
        return Err(JweError::Malformed(format!(
            "the encrypted key must be {} bytes for this RSA key",
            key.key_size_bytes()
        )));
    }
    let mut out = Zeroizing::new(vec![0u8; key.min_output_size()]);
    let unwrapped = key
        .decrypt(&OAEP_SHA256_MGF1SHA256, encrypted_key, &mut out, None)
        .map(|cek| cek.len())
        .ok();
    match unwrapped {
        Some(len) if len == enc.key_len() => {
            out.truncate(len);
            Ok(out)
        }
        _ => Ok(decoy),
    }
}
