//! `ECDH-ES` direct key agreement (RFC 7518 §4.6, RFC 8037 §3.2): the curves, the ephemeral
//! public key (`epk`) and the Concat KDF of NIST SP 800-56A §5.8.1 with SHA-256.

use super::{ContentEnc, JweError, b64, unb64};
use aws_lc_rs::agreement::{
    self, Algorithm, ECDH_P256, ECDH_P384, ECDH_P521, PrivateKey, UnparsedPublicKey, X25519,
};
use aws_lc_rs::digest::{Context, SHA256};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

/// A curve that `ECDH-ES` agrees on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Curve {
    /// NIST P-256 (`kty` EC).
    P256,
    /// NIST P-384 (`kty` EC).
    P384,
    /// NIST P-521 (`kty` EC).
    P521,
    /// X25519 (`kty` OKP, RFC 8037).
    X25519,
}

impl Curve {
    /// The curve a JWK's `kty` and `crv` name, if supported.
    pub(crate) fn from_jwk(kty: &str, crv: &str) -> Option<Self> {
        match (kty, crv) {
            ("EC", "P-256") => Some(Self::P256),
            ("EC", "P-384") => Some(Self::P384),
            ("EC", "P-521") => Some(Self::P521),
            ("OKP", "X25519") => Some(Self::X25519),
            _ => None,
        }
    }

    /// The JWK `crv` name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
            Self::P521 => "P-521",
            Self::X25519 => "X25519",
        }
    }

    fn algorithm(self) -> &'static Algorithm {
        match self {
            Self::P256 => &ECDH_P256,
            Self::P384 => &ECDH_P384,
            Self::P521 => &ECDH_P521,
            Self::X25519 => &X25519,
        }
    }

    /// The length of one coordinate (or of the X25519 key), in bytes.
    pub(crate) fn coord_len(self) -> usize {
        match self {
            Self::P256 | Self::X25519 => 32,
            Self::P384 => 48,
            Self::P521 => 66,
        }
    }

    /// The public key in aws-lc-rs's form (an uncompressed point, or the raw X25519 key)
    /// from a JWK's `x` and `y`, checking their lengths; the point is checked to be on the
    /// curve when it is used.
    pub(crate) fn public_bytes(self, x: &[u8], y: Option<&[u8]>) -> Result<Vec<u8>, JweError> {
        let len = self.coord_len();
        if x.len() != len {
            return Err(JweError::KeyMismatch(format!(
                "x of a {} key must be {len} bytes",
                self.name()
            )));
        }
        if self == Self::X25519 {
            return Ok(x.to_vec());
        }
        let y = y.filter(|y| y.len() == len).ok_or_else(|| {
            JweError::KeyMismatch(format!("y of a {} key must be {len} bytes", self.name()))
        })?;
        let mut point = Vec::with_capacity(1 + 2 * len);
        point.push(0x04);
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        Ok(point)
    }

    /// The public JWK of a public key in aws-lc-rs's form.
    fn jwk(self, public: &[u8]) -> Value {
        if self == Self::X25519 {
            return json!({"kty": "OKP", "crv": "X25519", "x": b64(public)});
        }
        let coords = public.get(1..).unwrap_or_default();
        let (x, y) = coords.split_at(coords.len() / 2);
        json!({"kty": "EC", "crv": self.name(), "x": b64(x), "y": b64(y)})
    }

    /// Reads an `epk` header member of this curve.
    fn parse_epk(self, epk: &Map<String, Value>) -> Result<Vec<u8>, JweError> {
        let text = |name: &str| epk.get(name).and_then(Value::as_str);
        let kty = text("kty").unwrap_or_default();
        let crv = text("crv").unwrap_or_default();
        if Curve::from_jwk(kty, crv) != Some(self) {
            return Err(JweError::KeyMismatch(format!(
                "epk is {kty} {crv}, the key is {}",
                self.name()
            )));
        }
        let x = unb64(text("x").unwrap_or_default(), "epk.x")?;
        let y = match text("y") {
            Some(y) => Some(unb64(y, "epk.y")?),
            None => None,
        };
        self.public_bytes(&x, y.as_deref())
    }
}

/// The Concat KDF of RFC 7518 §4.6.2 with SHA-256, for direct key agreement: AlgorithmID is
/// the `enc` name, keydatalen its key length.
pub(crate) fn concat_kdf(z: &[u8], enc: ContentEnc, apu: &[u8], apv: &[u8]) -> Zeroizing<Vec<u8>> {
    let key_len = enc.key_len();
    concat_kdf_raw(z, enc.as_str().as_bytes(), apu, apv, key_len)
}

fn len_prefixed(ctx: &mut Context, data: &[u8]) {
    ctx.update(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
    ctx.update(data);
}

pub(crate) fn concat_kdf_raw(
    z: &[u8],
    algorithm_id: &[u8],
    apu: &[u8],
    apv: &[u8],
    key_len: usize,
) -> Zeroizing<Vec<u8>> {
    let bits = u32::try_from(key_len * 8).unwrap_or(u32::MAX);
    let mut out = Zeroizing::new(Vec::with_capacity(key_len + 32));
    let mut round: u32 = 1;
    while out.len() < key_len {
        let mut ctx = Context::new(&SHA256);
        ctx.update(&round.to_be_bytes());
        ctx.update(z);
        len_prefixed(&mut ctx, algorithm_id);
        len_prefixed(&mut ctx, apu);
        len_prefixed(&mut ctx, apv);
        ctx.update(&bits.to_be_bytes());
        out.extend_from_slice(ctx.finish().as_ref());
        round += 1;
    }
    out.truncate(key_len);
    out
}

/// A new ephemeral key agreed with the recipient's `public` key: the CEK and the `epk`
/// header member.
pub(super) fn agree_ephemeral(
    curve: Curve,
    public: &[u8],
    enc: ContentEnc,
) -> Result<(Zeroizing<Vec<u8>>, Value), JweError> {
    let ephemeral = PrivateKey::generate(curve.algorithm()).map_err(|_| JweError::Crypto)?;
    let epk = ephemeral
        .compute_public_key()
        .map_err(|_| JweError::Crypto)?;
    let peer = UnparsedPublicKey::new(curve.algorithm(), public);
    let cek = agreement::agree(
        &ephemeral,
        peer,
        JweError::KeyMismatch(format!("not a valid {} public key", curve.name())),
        |z| Ok(concat_kdf(z, enc, b"", b"")),
    )?;
    Ok((cek, curve.jwk(epk.as_ref())))
}

/// The CEK the recipient's private key agrees on with the header's `epk`, `apu` and `apv`.
pub(super) fn agree_static(
    curve: Curve,
    private: &PrivateKey,
    header: &Map<String, Value>,
    enc: ContentEnc,
) -> Result<Zeroizing<Vec<u8>>, JweError> {
    let epk = header
        .get("epk")
        .and_then(Value::as_object)
        .ok_or_else(|| JweError::Malformed("ECDH-ES needs an epk header object".into()))?;
    let peer = curve.parse_epk(epk)?;
    let party = |name: &str| match header.get(name) {
        None => Ok(Vec::new()),
        Some(Value::String(text)) => unb64(text, name),
        Some(_) => Err(JweError::Malformed(format!("{name} must be a string"))),
    };
    let (apu, apv) = (party("apu")?, party("apv")?);
    agreement::agree(
        private,
        UnparsedPublicKey::new(curve.algorithm(), peer.as_slice()),
        JweError::KeyMismatch(format!("epk is not a valid {} point", curve.name())),
        |z| Ok(concat_kdf(z, enc, &apu, &apv)),
    )
}

/// Reads a private key of `curve` from its `d` member.
pub(super) fn private_key(curve: Curve, d: &[u8]) -> Result<PrivateKey, JweError> {
    PrivateKey::from_private_key(curve.algorithm(), d)
        .map_err(|_| JweError::BadKey(format!("d is not a {} private key", curve.name())))
}

/// Reads a PKCS#8 EC private key of any supported NIST curve.
pub(super) fn private_key_der(der: &[u8]) -> Option<(Curve, PrivateKey)> {
    [Curve::P256, Curve::P384, Curve::P521]
        .into_iter()
        .find_map(|curve| {
            PrivateKey::from_private_key_der(curve.algorithm(), der)
                .ok()
                .map(|key| (curve, key))
        })
}
