//! PEM input (RFC 7468): PKCS#8 `PRIVATE KEY` (RFC 5208), PKCS#1 `RSA PRIVATE KEY`
//! (RFC 8017 §A.1.2) and SEC1 `EC PRIVATE KEY` (RFC 5915), each turned into PKCS#8 DER.

use super::der::{self, CONTEXT_0, INTEGER, OCTET_STRING, OID, Reader, SEQUENCE};
use super::{ImportError, KeyKind, Parsed, check_rsa_bits};
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RsaKeyPair};
use zeroize::Zeroizing;

/// rsaEncryption, 1.2.840.113549.1.1.1.
const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-RSASSA-PSS, 1.2.840.113549.1.1.10.
const RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
/// id-ecPublicKey, 1.2.840.10045.2.1.
const EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// id-Ed25519, 1.3.101.112.
const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
/// prime256v1 (P-256), 1.2.840.10045.3.1.7.
const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Names of curves and key types that a refusal should spell out.
const KNOWN: &[(&[u8], &str)] = &[
    (&[0x2b, 0x81, 0x04, 0x00, 0x22], "P-384"),
    (&[0x2b, 0x81, 0x04, 0x00, 0x23], "P-521"),
    (&[0x2b, 0x81, 0x04, 0x00, 0x0a], "secp256k1"),
    (&[0x2b, 0x65, 0x71], "Ed448"),
    (&[0x2b, 0x65, 0x6e], "X25519"),
    (&[0x2b, 0x65, 0x6f], "X448"),
    (&[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01], "DSA"),
];

fn oid_name(oid: &[u8]) -> String {
    KNOWN.iter().find(|(known, _)| *known == oid).map_or_else(
        || format!("OID {}", der::dotted(oid)),
        |(_, name)| (*name).to_owned(),
    )
}

fn malformed(label: &str) -> ImportError {
    ImportError::Unrecognised(format!("the {label} block is not valid DER"))
}

/// Reads the one private key in a PEM file. `EC PARAMETERS` blocks, which
/// `openssl ecparam -genkey` writes before the key, are skipped.
pub(super) fn parse(text: &str) -> Result<Parsed, ImportError> {
    // OpenSSL's legacy encryption keeps the traditional label and adds these headers.
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(ImportError::Encrypted("PEM with Proc-Type: 4,ENCRYPTED"));
    }
    // Each block's contents are wiped when dropped, whichever block holds the key.
    let blocks: Vec<(String, Zeroizing<Vec<u8>>)> = ::pem::parse_many(text)
        .map_err(|err| ImportError::Unrecognised(format!("not valid PEM: {err}")))?
        .into_iter()
        .map(|block| {
            (
                block.tag().to_owned(),
                Zeroizing::new(block.into_contents()),
            )
        })
        .collect();
    let mut private = Vec::new();
    let mut public = None;
    for block in &blocks {
        match block.0.as_str() {
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => private.push(block),
            "ENCRYPTED PRIVATE KEY" => {
                return Err(ImportError::Encrypted("PKCS#8 ENCRYPTED PRIVATE KEY"));
            }
            "PUBLIC KEY" | "RSA PUBLIC KEY" => public = Some("the file"),
            "CERTIFICATE" => public = Some("a certificate"),
            "OPENSSH PRIVATE KEY" => {
                return Err(ImportError::Unrecognised(
                    "an OpenSSH private key; convert it to PKCS#8 with \
                     `ssh-keygen -p -m PKCS8 -f FILE`"
                        .into(),
                ));
            }
            "DSA PRIVATE KEY" => return Err(ImportError::KeyType("DSA".into())),
            _ => {}
        }
    }
    match (private.as_slice(), public) {
        ([(label, der)], _) => from_der(label, der),
        ([], Some(what)) => Err(ImportError::PublicOnly(what)),
        ([], None) => Err(ImportError::Unrecognised(format!(
            "no private key block; found {}",
            labels(&blocks)
        ))),
        (several, _) => Err(ImportError::SeveralKeys(several.len())),
    }
}

fn labels(blocks: &[(String, Zeroizing<Vec<u8>>)]) -> String {
    if blocks.is_empty() {
        return "no PEM block".into();
    }
    blocks
        .iter()
        .map(|(label, _)| label.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn from_der(label: &str, der: &[u8]) -> Result<Parsed, ImportError> {
    let (kind, pkcs8) = match label {
        "RSA PRIVATE KEY" => (KeyKind::Rsa, rsa_pkcs1(der)?),
        "EC PRIVATE KEY" => (KeyKind::P256, ec_sec1(der)?),
        _ => (pkcs8_kind(der)?, Zeroizing::new(der.to_vec())),
    };
    Ok(Parsed {
        kind,
        pkcs8,
        kid: None,
        alg: None,
    })
}

/// The size of the modulus in an `RSAPrivateKey` (version, modulus, ...).
fn rsa_bits(rsa_private_key: &[u8]) -> Option<usize> {
    let mut outer = Reader::new(rsa_private_key);
    let mut fields = Reader::new(outer.expect(SEQUENCE)?);
    fields.expect(INTEGER)?;
    Some(der::unsigned_bits(fields.expect(INTEGER)?))
}

/// Which key a PKCS#8 `PrivateKeyInfo` holds: refuses other types and curves by name.
fn pkcs8_kind(der: &[u8]) -> Result<KeyKind, ImportError> {
    let bad = || malformed("PRIVATE KEY");
    let mut outer = Reader::new(der);
    let mut info = Reader::new(outer.expect(SEQUENCE).ok_or_else(bad)?);
    info.expect(INTEGER).ok_or_else(bad)?;
    let mut algorithm = Reader::new(info.expect(SEQUENCE).ok_or_else(bad)?);
    let private_key = info.expect(OCTET_STRING).ok_or_else(bad)?;
    let oid = algorithm.expect(OID).ok_or_else(bad)?;
    match oid {
        RSA => {
            check_rsa_bits(rsa_bits(private_key).ok_or_else(bad)?)?;
            Ok(KeyKind::Rsa)
        }
        EC => match algorithm.expect(OID) {
            Some(P256) => Ok(KeyKind::P256),
            Some(curve) => Err(ImportError::Curve(oid_name(curve))),
            None => Err(ImportError::Curve("with explicit parameters".into())),
        },
        ED25519 => Ok(KeyKind::Ed25519),
        RSA_PSS => Err(ImportError::RsaPss),
        other => {
            let name = oid_name(other);
            match name.as_str() {
                "Ed448" | "X25519" | "X448" => Err(ImportError::Curve(name)),
                _ => Err(ImportError::KeyType(name)),
            }
        }
    }
}

/// PKCS#1 `RSAPrivateKey` to PKCS#8.
fn rsa_pkcs1(der: &[u8]) -> Result<Zeroizing<Vec<u8>>, ImportError> {
    check_rsa_bits(rsa_bits(der).ok_or_else(|| malformed("RSA PRIVATE KEY"))?)?;
    let rejected =
        |err: aws_lc_rs::error::KeyRejected| ImportError::Rejected("RSA", err.to_string());
    let key = RsaKeyPair::from_der(der).map_err(rejected)?;
    let pkcs8 = key
        .as_der()
        .map_err(|_| ImportError::Rejected("RSA", "cannot encode it as PKCS#8".into()))?;
    Ok(Zeroizing::new(pkcs8.as_ref().to_vec()))
}

/// SEC1 `ECPrivateKey` (version, privateKey, [0] parameters, [1] publicKey) to PKCS#8.
fn ec_sec1(der: &[u8]) -> Result<Zeroizing<Vec<u8>>, ImportError> {
    let bad = || malformed("EC PRIVATE KEY");
    let mut outer = Reader::new(der);
    let mut fields = Reader::new(outer.expect(SEQUENCE).ok_or_else(bad)?);
    fields.expect(INTEGER).ok_or_else(bad)?;
    fields.expect(OCTET_STRING).ok_or_else(bad)?;
    // The curve is optional in SEC1 (it may come from elsewhere); without it, try P-256.
    if let Some(parameters) = fields.find(CONTEXT_0) {
        match Reader::new(parameters).expect(OID) {
            Some(P256) => {}
            Some(curve) => return Err(ImportError::Curve(oid_name(curve))),
            None => return Err(ImportError::Curve("with explicit parameters".into())),
        }
    }
    let key = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
        .map_err(|err| ImportError::Rejected("P-256", err.to_string()))?;
    let pkcs8 = key
        .to_pkcs8v1()
        .map_err(|_| ImportError::Rejected("P-256", "cannot encode it as PKCS#8".into()))?;
    Ok(Zeroizing::new(pkcs8.as_ref().to_vec()))
}
