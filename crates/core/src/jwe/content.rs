//! Content encryption: `A256GCM` (RFC 7518 §5.3) and `A128CBC-HS256` (RFC 7518 §5.2.3).

use super::{ContentEnc, JweError};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{
    AES_128, DecryptionContext, EncryptionContext, PaddedBlockDecryptingKey,
    PaddedBlockEncryptingKey, UnboundCipherKey,
};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;
use subtle::ConstantTimeEq as _;

/// The authentication tag's length for both content algorithms, in bytes.
pub(super) const TAG_LEN: usize = 16;

/// Encrypts `plaintext`; returns the ciphertext and the tag.
pub(super) fn seal(
    enc: ContentEnc,
    cek: &[u8],
    iv: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), JweError> {
    if cek.len() != enc.key_len() || iv.len() != enc.iv_len() {
        return Err(JweError::Crypto);
    }
    match enc {
        ContentEnc::A256Gcm => gcm_seal(cek, iv, aad, plaintext),
        ContentEnc::A128CbcHs256 => cbc_seal(cek, iv, aad, plaintext),
    }
}

/// Checks the tag and decrypts; any failure is [`JweError::Decrypt`].
pub(super) fn open(
    enc: ContentEnc,
    cek: &[u8],
    iv: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
    tag: &[u8],
) -> Result<Vec<u8>, JweError> {
    if iv.len() != enc.iv_len() {
        return Err(JweError::Malformed(format!(
            "the IV of {enc} must be {} bytes",
            enc.iv_len()
        )));
    }
    if tag.len() != TAG_LEN {
        return Err(JweError::Malformed(format!(
            "the tag must be {TAG_LEN} bytes"
        )));
    }
    if cek.len() != enc.key_len() {
        return Err(JweError::Decrypt);
    }
    match enc {
        ContentEnc::A256Gcm => gcm_open(cek, iv, aad, ciphertext, tag),
        ContentEnc::A128CbcHs256 => cbc_open(cek, iv, aad, ciphertext, tag),
    }
}

fn gcm_key(cek: &[u8]) -> Result<LessSafeKey, JweError> {
    let key = UnboundKey::new(&AES_256_GCM, cek).map_err(|_| JweError::Crypto)?;
    Ok(LessSafeKey::new(key))
}

fn gcm_nonce(iv: &[u8]) -> Result<Nonce, JweError> {
    Nonce::try_assume_unique_for_key(iv).map_err(|_| JweError::Crypto)
}

fn gcm_seal(
    cek: &[u8],
    iv: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), JweError> {
    let mut data = plaintext.to_vec();
    let tag = gcm_key(cek)?
        .seal_in_place_separate_tag(gcm_nonce(iv)?, Aad::from(aad), &mut data)
        .map_err(|_| JweError::Crypto)?;
    Ok((data, tag.as_ref().to_vec()))
}

fn gcm_open(
    cek: &[u8],
    iv: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
    tag: &[u8],
) -> Result<Vec<u8>, JweError> {
    let mut data = Vec::with_capacity(ciphertext.len() + TAG_LEN);
    data.extend_from_slice(ciphertext);
    data.extend_from_slice(tag);
    let key = gcm_key(cek).map_err(|_| JweError::Decrypt)?;
    let nonce = gcm_nonce(iv).map_err(|_| JweError::Decrypt)?;
    let len = key
        .open_in_place(nonce, Aad::from(aad), &mut data)
        .map_err(|_| JweError::Decrypt)?
        .len();
    data.truncate(len);
    Ok(data)
}

/// The tag of RFC 7518 §5.2.2.1: the first half of HMAC-SHA-256 over AAD, IV, ciphertext and
/// the AAD's length in bits (64-bit big-endian).
fn cbc_tag(mac_key: &[u8], iv: &[u8], aad: &[u8], ciphertext: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, mac_key);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(aad);
    ctx.update(iv);
    ctx.update(ciphertext);
    let al = (aad.len() as u64).saturating_mul(8);
    ctx.update(&al.to_be_bytes());
    let full = ctx.sign();
    full.as_ref().get(..TAG_LEN).unwrap_or_default().to_vec()
}

fn split_cek(cek: &[u8]) -> Result<(&[u8], &[u8]), JweError> {
    if cek.len() != 32 {
        return Err(JweError::Crypto);
    }
    Ok(cek.split_at(16))
}

fn iv16(iv: &[u8]) -> Result<FixedLength<16>, JweError> {
    FixedLength::<16>::try_from(iv).map_err(|_| JweError::Crypto)
}

fn cbc_seal(
    cek: &[u8],
    iv: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), JweError> {
    let (mac_key, enc_key) = split_cek(cek)?;
    let key = UnboundCipherKey::new(&AES_128, enc_key).map_err(|_| JweError::Crypto)?;
    let key = PaddedBlockEncryptingKey::cbc_pkcs7(key).map_err(|_| JweError::Crypto)?;
    let mut data = plaintext.to_vec();
    key.less_safe_encrypt(&mut data, EncryptionContext::Iv128(iv16(iv)?))
        .map_err(|_| JweError::Crypto)?;
    let tag = cbc_tag(mac_key, iv, aad, &data);
    Ok((data, tag))
}

fn cbc_open(
    cek: &[u8],
    iv: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
    tag: &[u8],
) -> Result<Vec<u8>, JweError> {
    let (mac_key, enc_key) = split_cek(cek).map_err(|_| JweError::Decrypt)?;
    // The tag is checked, in constant time, before any decryption (RFC 7518 §5.2.2.2).
    let expected = cbc_tag(mac_key, iv, aad, ciphertext);
    if !bool::from(expected.as_slice().ct_eq(tag)) {
        return Err(JweError::Decrypt);
    }
    let key = UnboundCipherKey::new(&AES_128, enc_key).map_err(|_| JweError::Decrypt)?;
    let key = PaddedBlockDecryptingKey::cbc_pkcs7(key).map_err(|_| JweError::Decrypt)?;
    let context = DecryptionContext::Iv128(iv16(iv).map_err(|_| JweError::Decrypt)?);
    let mut data = ciphertext.to_vec();
    let len = key
        .decrypt(&mut data, context)
        .map_err(|_| JweError::Decrypt)?
        .len();
    data.truncate(len);
    Ok(data)
}
