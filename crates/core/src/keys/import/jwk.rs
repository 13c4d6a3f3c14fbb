//! Private JWK input (RFC 7517, RFC 7518 §6.2.2 and §6.3.2, RFC 8037 §2): RSA with its CRT
//! members, EC P-256 and OKP Ed25519. A JWK Set holding exactly one key is read as that key.

use super::der;
use super::{ImportError, KeyKind, Parsed, check_rsa_bits};
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::{KeyPairComponents, PublicKeyComponents};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;
use zeroize::{Zeroize as _, Zeroizing};

/// base64url as RFC 7515 §2 defines it, also taking the padding some tools add.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The members logoutd reads; others (`key_ops`, `x5c`, ...) are ignored. The private
/// members are wiped when the value is dropped.
#[derive(Default, Deserialize)]
struct PrivateJwk {
    kty: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
    d: Option<String>,
    p: Option<String>,
    q: Option<String>,
    dp: Option<String>,
    dq: Option<String>,
    qi: Option<String>,
    /// Other primes of a multi-prime RSA key (RFC 7518 §6.3.2.7); only its presence matters.
    oth: Option<serde::de::IgnoredAny>,
    /// Set when the input is a JWK Set.
    keys: Option<Vec<PrivateJwk>>,
}

impl Drop for PrivateJwk {
    fn drop(&mut self) {
        for member in [
            &mut self.d,
            &mut self.p,
            &mut self.q,
            &mut self.dp,
            &mut self.dq,
            &mut self.qi,
        ] {
            member.zeroize();
        }
    }
}

/// Decodes a base64url member.
fn member(value: &Option<String>, name: &'static str) -> Result<Zeroizing<Vec<u8>>, ImportError> {
    let text = value.as_deref().ok_or(ImportError::Member(name))?;
    B64.decode(text)
        .map(Zeroizing::new)
        .map_err(|_| ImportError::Member(name))
}

/// Decodes a member that must be exactly `len` bytes; a shorter one is left-padded with
/// zeros, since some encoders drop leading zero bytes against RFC 7518 §6.2.1.2.
fn fixed(
    value: &Option<String>,
    name: &'static str,
    len: usize,
) -> Result<Zeroizing<Vec<u8>>, ImportError> {
    let bytes = member(value, name)?;
    if bytes.len() > len {
        return Err(ImportError::Member(name));
    }
    let mut out = Zeroizing::new(vec![0u8; len - bytes.len()]);
    out.extend_from_slice(&bytes);
    Ok(out)
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

/// Reads a private JWK, or a JWK Set holding exactly one key.
pub(super) fn parse(text: &str) -> Result<Parsed, ImportError> {
    let mut jwk: PrivateJwk = serde_json::from_str(text)
        .map_err(|err| ImportError::Unrecognised(format!("not a JSON Web Key: {err}")))?;
    if let Some(mut keys) = jwk.keys.take() {
        if keys.len() != 1 {
            return Err(ImportError::Unrecognised(format!(
                "a JWK Set of {} keys; give the one private key to import",
                keys.len()
            )));
        }
        jwk = keys.remove(0);
    }
    if let Some(use_) = jwk.use_.as_deref().filter(|u| *u != "sig") {
        return Err(ImportError::Use(use_.to_owned()));
    }
    let kty = jwk.kty.as_deref().unwrap_or_default();
    if kty == "oct" {
        return Err(ImportError::KeyType("symmetric (kty oct)".into()));
    }
    if jwk.d.is_none() && matches!(kty, "RSA" | "EC" | "OKP") {
        return Err(ImportError::PublicOnly("the JWK"));
    }
    let (kind, pkcs8) = match kty {
        "RSA" => (KeyKind::Rsa, rsa(&jwk)?),
        "EC" => (KeyKind::P256, p256(&jwk)?),
        "OKP" => (KeyKind::Ed25519, ed25519(&jwk)?),
        "" => {
            return Err(ImportError::Unrecognised(
                "the JSON has no kty member, so it is not a JWK".into(),
            ));
        }
        other => return Err(ImportError::KeyType(format!("kty {other}"))),
    };
    Ok(Parsed {
        kind,
        pkcs8,
        kid: jwk.kid.take(),
        alg: jwk.alg.take(),
    })
}

fn rsa(jwk: &PrivateJwk) -> Result<Zeroizing<Vec<u8>>, ImportError> {
    let crt = [
        ("p", &jwk.p),
        ("q", &jwk.q),
        ("dp", &jwk.dp),
        ("dq", &jwk.dq),
        ("qi", &jwk.qi),
    ];
    let missing: Vec<&str> = crt
        .iter()
        .filter(|(_, value)| value.is_none())
        .map(|(name, _)| *name)
        .collect();
    if !missing.is_empty() {
        return Err(ImportError::RsaCrt(missing.join(", ")));
    }
    if jwk.oth.is_some() {
        return Err(ImportError::KeyType("multi-prime RSA".into()));
    }
    let n = member(&jwk.n, "n")?;
    check_rsa_bits(der::unsigned_bits(&n))?;
    let e = member(&jwk.e, "e")?;
    let components = KeyPairComponents {
        public_key: PublicKeyComponents {
            n: strip_zeros(&n),
            e: strip_zeros(&e),
        },
        d: &member(&jwk.d, "d")?[..],
        p: &member(&jwk.p, "p")?[..],
        q: &member(&jwk.q, "q")?[..],
        dP: &member(&jwk.dp, "dp")?[..],
        dQ: &member(&jwk.dq, "dq")?[..],
        qInv: &member(&jwk.qi, "qi")?[..],
    };
    let key = RsaKeyPair::from_components(&components)
        .map_err(|err| ImportError::Rejected("RSA", err.to_string()))?;
    let pkcs8 = key
        .as_der()
        .map_err(|_| ImportError::Rejected("RSA", "cannot encode it as PKCS#8".into()))?;
    Ok(Zeroizing::new(pkcs8.as_ref().to_vec()))
}

fn p256(jwk: &PrivateJwk) -> Result<Zeroizing<Vec<u8>>, ImportError> {
    match jwk.crv.as_deref() {
        Some("P-256") => {}
        Some(other) => return Err(ImportError::Curve(other.to_owned())),
        None => return Err(ImportError::Member("crv")),
    }
    let mut point = vec![0x04];
    point.extend_from_slice(&fixed(&jwk.x, "x", 32)?);
    point.extend_from_slice(&fixed(&jwk.y, "y", 32)?);
    let d = fixed(&jwk.d, "d", 32)?;
    let key =
        EcdsaKeyPair::from_private_key_and_public_key(&ECDSA_P256_SHA256_FIXED_SIGNING, &d, &point)
            .map_err(|err| ImportError::Rejected("P-256", err.to_string()))?;
    let pkcs8 = key
        .to_pkcs8v1()
        .map_err(|_| ImportError::Rejected("P-256", "cannot encode it as PKCS#8".into()))?;
    Ok(Zeroizing::new(pkcs8.as_ref().to_vec()))
}

fn ed25519(jwk: &PrivateJwk) -> Result<Zeroizing<Vec<u8>>, ImportError> {
    match jwk.crv.as_deref() {
        Some("Ed25519") => {}
        Some(other) => return Err(ImportError::Curve(other.to_owned())),
        None => return Err(ImportError::Member("crv")),
    }
    let d = member(&jwk.d, "d")?;
    let x = member(&jwk.x, "x")?;
    let key = Ed25519KeyPair::from_seed_and_public_key(&d, &x)
        .map_err(|err| ImportError::Rejected("Ed25519", err.to_string()))?;
    let pkcs8 = key
        .to_pkcs8v1()
        .map_err(|_| ImportError::Rejected("Ed25519", "cannot encode it as PKCS#8".into()))?;
    Ok(Zeroizing::new(pkcs8.as_ref().to_vec()))
}
