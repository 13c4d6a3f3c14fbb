//! One parsed private key and the compact JWS signer over it (RFC 7515 §3.1, §7.1).
//!
//! A key is parsed once into an aws-lc-rs key pair. The base64url header for each `typ` is
//! computed when the key is loaded, so signing only serializes the claims, encodes them and
//! signs: the output string is the only allocation of ours.

use super::KeyError;
use super::jwk::Jwk;
use crate::alg::{SigningAlg, TokenTyp};
use crate::ids::KeyId;
use crate::token::LogoutClaims;
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::cell::RefCell;
use std::fmt;
use zeroize::Zeroizing;

/// A signature failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// No active key signs with this alg.
    #[error("no active signing key for {0}; create one with `logoutd keys generate --alg {0}`")]
    NoKey(SigningAlg),
    /// The crypto library refused to sign.
    #[error("the crypto library failed to sign with key {0}")]
    Crypto(KeyId),
}

/// The parsed key pair.
enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A private signing key, parsed once. `Debug` never shows key material.
pub struct SigningKey {
    alg: SigningAlg,
    kid: KeyId,
    pair: Pair,
    jwk: Jwk,
    /// base64url(header) for `logout+jwt`, `JWT` and `secevent+jwt`, in [`TokenTyp`] order.
    headers: [String; 3],
    rng: SystemRandom,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SigningKey {{ alg: {}, kid: {}, private: [redacted] }}",
            self.alg, self.kid
        )
    }
}

/// Per-thread buffers reused by every token signed on the thread.
#[derive(Default)]
struct Scratch {
    /// The claims JSON.
    json: Vec<u8>,
    /// The JWS signing input, `base64url(header).base64url(claims)`.
    input: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

fn typ_index(typ: TokenTyp) -> usize {
    match typ {
        TokenTyp::LogoutJwt => 0,
        TokenTyp::Jwt => 1,
        TokenTyp::SecEventJwt => 2,
    }
}

fn public_jwk(pair: &Pair) -> Result<Jwk, KeyError> {
    Ok(match pair {
        Pair::Rsa(k) => {
            let public = k.public_key();
            Jwk::rsa(
                public.modulus().big_endian_without_leading_zero(),
                public.exponent().big_endian_without_leading_zero(),
            )
        }
        Pair::Ec(k) => {
            // Uncompressed SEC1 point: 0x04 || x || y.
            let point = k.public_key().as_ref();
            if point.len() != 65 {
                return Err(KeyError::Invalid(
                    "unexpected P-256 public key length".into(),
                ));
            }
            Jwk::p256(&point[1..33], &point[33..])
        }
        Pair::Ed(k) => Jwk::ed25519(k.public_key().as_ref()),
    })
}

fn encoded_header(alg: SigningAlg, typ: TokenTyp, kid: &KeyId) -> String {
    // alg and typ are fixed names; an imported key's kid is the IdP's and may need escaping
    // (a thumbprint is base64url and comes out unchanged).
    let kid = serde_json::Value::from(kid.as_str());
    let header = format!(r#"{{"alg":"{alg}","typ":"{}","kid":{kid}}}"#, typ.as_str());
    URL_SAFE_NO_PAD.encode(header)
}

/// The RSA modulus sizes logoutd signs with: 2048 bits at least (RFC 7518 §3.3), and at most
/// what aws-lc-rs accepts.
pub(crate) const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

fn rejected(alg: SigningAlg, err: impl fmt::Display) -> KeyError {
    KeyError::Invalid(format!("not a usable {alg} PKCS#8 private key: {err}"))
}

impl SigningKey {
    /// Parses a PKCS#8 DER private key for `alg`.
    pub fn from_pkcs8_der(alg: SigningAlg, der: &[u8]) -> Result<Self, KeyError> {
        let pair = match alg {
            SigningAlg::RS256 | SigningAlg::PS256 => {
                let key = RsaKeyPair::from_pkcs8(der).map_err(|e| rejected(alg, e))?;
                if !RSA_BITS.contains(&(key.public_modulus_len() * 8)) {
                    return Err(rejected(alg, "RSA keys must have 2048 to 8192 bits"));
                }
                Pair::Rsa(key)
            }
            SigningAlg::ES256 => Pair::Ec(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|e| rejected(alg, e))?,
            ),
            SigningAlg::EdDSA => {
                Pair::Ed(Ed25519KeyPair::from_pkcs8(der).map_err(|e| rejected(alg, e))?)
            }
        };
        Self::from_pair(alg, pair)
    }

    /// Parses a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) private key for `alg`.
    pub fn from_pkcs8_pem(alg: SigningAlg, pem_text: &str) -> Result<Self, KeyError> {
        let parsed = pem::parse(pem_text).map_err(|e| rejected(alg, e))?;
        if parsed.tag() != "PRIVATE KEY" {
            return Err(rejected(alg, "expected a PEM block labelled PRIVATE KEY"));
        }
        let der = Zeroizing::new(parsed.into_contents());
        Self::from_pkcs8_der(alg, &der)
    }

    /// Generates a fresh key; `rsa_bits` (2048 default, 3072, 4096) applies to RSA only.
    pub fn generate(alg: SigningAlg, rsa_bits: Option<usize>) -> Result<Self, KeyError> {
        let failed = |_| KeyError::Invalid(format!("key generation failed for {alg}"));
        let pair = match alg {
            SigningAlg::RS256 | SigningAlg::PS256 => {
                let size = match rsa_bits.unwrap_or(2048) {
                    2048 => KeySize::Rsa2048,
                    3072 => KeySize::Rsa3072,
                    4096 => KeySize::Rsa4096,
                    other => return Err(KeyError::RsaBits(other)),
                };
                Pair::Rsa(RsaKeyPair::generate(size).map_err(failed)?)
            }
            SigningAlg::ES256 => Pair::Ec(
                EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(failed)?,
            ),
            SigningAlg::EdDSA => Pair::Ed(Ed25519KeyPair::generate().map_err(failed)?),
        };
        Self::from_pair(alg, pair)
    }

    fn from_pair(alg: SigningAlg, pair: Pair) -> Result<Self, KeyError> {
        let mut jwk = public_jwk(&pair)?;
        let kid = jwk.thumbprint();
        jwk.alg = Some(alg.as_str().to_owned());
        jwk.use_ = Some("sig".to_owned());
        Ok(Self {
            alg,
            kid: kid.clone(),
            pair,
            jwk,
            headers: [String::new(), String::new(), String::new()],
            rng: SystemRandom::new(),
        }
        .with_kid(kid))
    }

    /// The same key published and signing under `kid`, for a key imported with its IdP's kid.
    pub fn with_kid(mut self, kid: KeyId) -> Self {
        self.jwk.kid = Some(kid.as_str().to_owned());
        self.headers = [
            encoded_header(self.alg, TokenTyp::LogoutJwt, &kid),
            encoded_header(self.alg, TokenTyp::Jwt, &kid),
            encoded_header(self.alg, TokenTyp::SecEventJwt, &kid),
        ];
        self.kid = kid;
        self
    }

    /// The PKCS#8 PEM encoding of the private key; zeroized when dropped.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        let failed = |_| KeyError::Invalid("cannot encode the private key".into());
        let der: Zeroizing<Vec<u8>> = Zeroizing::new(match &self.pair {
            Pair::Rsa(k) => k.as_der().map_err(failed)?.as_ref().to_vec(),
            Pair::Ec(k) => k.to_pkcs8v1().map_err(failed)?.as_ref().to_vec(),
            Pair::Ed(k) => k.to_pkcs8v1().map_err(failed)?.as_ref().to_vec(),
        });
        let block = pem::Pem::new("PRIVATE KEY", der.to_vec());
        let text = Zeroizing::new(pem::encode(&block));
        // Wipe the copy the PEM block held, too.
        drop(Zeroizing::new(block.into_contents()));
        Ok(text)
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    /// The key id: the RFC 7638 thumbprint, unless the key was imported under another kid.
    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    /// The RFC 7638 thumbprint of the public key, whatever the kid.
    pub fn thumbprint(&self) -> KeyId {
        self.jwk.thumbprint()
    }

    /// The public JWK, with `kid`, `alg` and `use`.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// Signs `message` with aws-lc-rs and lends the signature to `use_sig`, so nothing is
    /// copied on our side. The benchmark's raw rate is measured through this call.
    pub fn with_signature<R>(
        &self,
        message: &[u8],
        use_sig: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, SignError> {
        let fail = |_| SignError::Crypto(self.kid.clone());
        match &self.pair {
            Pair::Rsa(k) => {
                let padding: &'static dyn signature::RsaEncoding = match self.alg {
                    SigningAlg::PS256 => &signature::RSA_PSS_SHA256,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(padding, &self.rng, message, &mut sig)
                    .map_err(fail)?;
                Ok(use_sig(&sig))
            }
            Pair::Ec(k) => Ok(use_sig(k.sign(&self.rng, message).map_err(fail)?.as_ref())),
            Pair::Ed(k) => Ok(use_sig(k.try_sign(message).map_err(fail)?.as_ref())),
        }
    }

    /// The compact JWS `base64url(header).base64url(claims).base64url(signature)`.
    pub fn sign_compact(&self, typ: TokenTyp, claims: &LogoutClaims) -> Result<String, SignError> {
        SCRATCH.with_borrow_mut(|scratch| {
            let Scratch { json, input } = scratch;
            json.clear();
            claims.write_json(json);
            self.sign_input(typ, json, input)
        })
    }

    /// The compact JWS of an arbitrary claims object, given as its JSON bytes (a SET's
    /// claims, RFC 8417 §2), under the header of `typ`.
    pub fn sign_json(&self, typ: TokenTyp, claims_json: &[u8]) -> Result<String, SignError> {
        SCRATCH.with_borrow_mut(|scratch| self.sign_input(typ, claims_json, &mut scratch.input))
    }

    /// Signs `base64url(header).base64url(json)`, built in `input`.
    fn sign_input(
        &self,
        typ: TokenTyp,
        json: &[u8],
        input: &mut Vec<u8>,
    ) -> Result<String, SignError> {
        input.clear();
        input.extend_from_slice(self.headers[typ_index(typ)].as_bytes());
        input.push(b'.');
        append_b64(input, json);
        let token = self.with_signature(input, |sig| {
            let mut out = Vec::with_capacity(input.len() + 1 + b64_len(sig.len()));
            out.extend_from_slice(input);
            out.push(b'.');
            append_b64(&mut out, sig);
            // Every byte is base64url or '.', so this check cannot fail.
            String::from_utf8(out)
        })?;
        token.map_err(|_| SignError::Crypto(self.kid.clone()))
    }
}

fn b64_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

/// Appends the unpadded base64url encoding of `input` to `out` without a bounce buffer.
fn append_b64(out: &mut Vec<u8>, input: &[u8]) {
    let start = out.len();
    out.resize(start + b64_len(input.len()), 0);
    if let Some(tail) = out.get_mut(start..) {
        let written = URL_SAFE_NO_PAD
            .encode_slice(input, tail)
            .unwrap_or_default();
        out.truncate(start + written);
    }
}
