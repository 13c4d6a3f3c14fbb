#![allow(clippy::unwrap_used)]

use super::compact::{decrypt, encrypt};
use super::ecdh::{Curve, concat_kdf_raw};
use super::jwk::{DecryptionKey, check_inline_jwks, choose_key};
use super::{ContentEnc, JweError, KeyAlg, b64, content, unb64};
use aws_lc_rs::agreement::{ECDH_P256, PrivateKey, UnparsedPublicKey, agree};
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
use serde_json::{Map, Value, json};

fn hex(text: &str) -> Vec<u8> {
    let clean: String = text.split_whitespace().collect();
    (0..clean.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).unwrap())
        .collect()
}

/// RFC 7518 Appendix B.1: AES_128_CBC_HMAC_SHA_256.
#[test]
fn rfc7518_appendix_b1_a128cbc_hs256() {
    let key: Vec<u8> = (0u8..32).collect();
    let plaintext = b"A cipher system must not be required to be secret, and it must be able to fall into the hands of the enemy without inconvenience";
    let iv = hex("1a f3 8c 2d c2 b9 6f fd d8 66 94 09 23 41 bc 04");
    let aad = b"The second principle of Auguste Kerckhoffs";
    let expected = hex(
        "c8 0e df a3 2d df 39 d5 ef 00 c0 b4 68 83 42 79 a2 e4 6a 1b 80 49 f7 92 f7 6b fe 54 b9 03 a9 c9
         a9 4a c9 b4 7a d2 65 5c 5f 10 f9 ae f7 14 27 e2 fc 6f 9b 3f 39 9a 22 14 89 f1 63 62 c7 03 23 36
         09 d4 5a c6 98 64 e3 32 1c f8 29 35 ac 40 96 c8 6e 13 33 14 c5 40 19 e8 ca 79 80 df a4 b9 cf 1b
         38 4c 48 6f 3a 54 c5 10 78 15 8e e5 d7 9d e5 9f bd 34 d8 48 b3 d6 95 50 a6 76 46 34 44 27 ad e5
         4b 88 51 ff b5 98 f7 f8 00 74 b9 47 3c 82 e2 db",
    );
    let tag = hex("65 2c 3f a3 6b 0a 7c 5b 32 19 fa b3 a3 0b c1 c4");
    let enc = ContentEnc::A128CbcHs256;
    let (ciphertext, sealed_tag) = content::seal(enc, &key, &iv, aad, plaintext).unwrap();
    assert_eq!(ciphertext, expected);
    assert_eq!(sealed_tag, tag);
    let opened = content::open(enc, &key, &iv, aad, &expected, &tag).unwrap();
    assert_eq!(opened, plaintext);
    let mut bad = tag.clone();
    bad[15] ^= 1;
    assert_eq!(
        content::open(enc, &key, &iv, aad, &expected, &bad),
        Err(JweError::Decrypt)
    );
}

/// RFC 7516 Appendix A.1, the A256GCM part (its key wrap is RSA-OAEP with SHA-1, which
/// logoutd does not offer).
#[test]
fn rfc7516_appendix_a1_a256gcm_content() {
    let cek = [
        177, 161, 244, 128, 84, 143, 225, 115, 63, 180, 3, 255, 107, 154, 212, 246, 138, 7, 110,
        91, 112, 46, 34, 105, 47, 130, 203, 46, 122, 234, 64, 252,
    ];
    let iv = unb64("48V1_ALb6US04U3b", "iv").unwrap();
    let aad = b"eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ";
    let plaintext = b"The true sign of intelligence is not knowledge but imagination.";
    let (ciphertext, tag) = content::seal(ContentEnc::A256Gcm, &cek, &iv, aad, plaintext).unwrap();
    assert_eq!(
        b64(&ciphertext),
        "5eym8TW_c8SuK0ltJ3rpYIzOeDQz7TALvtu6UG9oMo4vpzs9tX_EFShS8iB7j6jiSdiwkIr3ajwQzaBtQD_A"
    );
    assert_eq!(b64(&tag), "XFBoMYUZodetZdvTiFvSkQ");
}

/// RFC 7518 Appendix C: ECDH-ES key agreement and the Concat KDF.
#[test]
fn rfc7518_appendix_c_ecdh_es_key_agreement() {
    let bob_d = unb64("VEmDZpDXXK8p8N0Cndsxs924q6nS1RXFASRl6BfUqdw", "d").unwrap();
    let alice_x = unb64("gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0", "x").unwrap();
    let alice_y = unb64("SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps", "y").unwrap();
    let bob = PrivateKey::from_private_key(&ECDH_P256, &bob_d).unwrap();
    let point = Curve::P256.public_bytes(&alice_x, Some(&alice_y)).unwrap();
    let z = agree(&bob, UnparsedPublicKey::new(&ECDH_P256, point), (), |z| {
        Ok(z.to_vec())
    })
    .unwrap();
    assert_eq!(
        z,
        [
            158, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156, 251, 49,
            110, 163, 218, 128, 106, 72, 246, 218, 167, 121, 140, 254, 144, 196
        ]
    );
    let key = concat_kdf_raw(&z, b"A128GCM", b"Alice", b"Bob", 16);
    assert_eq!(b64(&key), "VqqN6vgjbSBcIijNcacQGg");
}

/// A fresh key pair for `alg`/`curve`: the public JWK Set and the private key file text.
pub(crate) fn key_pair(kind: &str) -> (Value, String) {
    match kind {
        "RSA" => {
            let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
            let der = private.as_der().unwrap();
            let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()));
            let public = aws_lc_rs::rsa::PublicKey::from_der(
                private.public_key().as_der().unwrap().as_ref(),
            )
            .unwrap();
            let n = public.modulus().big_endian_without_leading_zero().to_vec();
            let e = public.exponent().big_endian_without_leading_zero().to_vec();
            let jwk =
                json!({"kty": "RSA", "kid": "rsa-1", "use": "enc", "n": b64(&n), "e": b64(&e)});
            (json!({"keys": [jwk]}), pem)
        }
        crv => {
            let (kty, alg) = match crv {
                "P-256" => ("EC", &aws_lc_rs::agreement::ECDH_P256),
                "P-384" => ("EC", &aws_lc_rs::agreement::ECDH_P384),
                "P-521" => ("EC", &aws_lc_rs::agreement::ECDH_P521),
                _ => ("OKP", &aws_lc_rs::agreement::X25519),
            };
            let private = PrivateKey::generate(alg).unwrap();
            use aws_lc_rs::encoding::{AsBigEndian as _, Curve25519SeedBin, EcPrivateKeyBin};
            let d: Vec<u8> = if kty == "OKP" {
                let seed: Curve25519SeedBin = private.as_be_bytes().unwrap();
                seed.as_ref().to_vec()
            } else {
                let bin: EcPrivateKeyBin = private.as_be_bytes().unwrap();
                bin.as_ref().to_vec()
            };
            let public = private.compute_public_key().unwrap();
            let bytes = public.as_ref();
            let mut jwk = Map::new();
            jwk.insert("kty".into(), kty.into());
            jwk.insert("crv".into(), crv.into());
            jwk.insert("kid".into(), format!("{crv}-1").into());
            if kty == "OKP" {
                jwk.insert("x".into(), b64(bytes).into());
            } else {
                let coords = &bytes[1..];
                let (x, y) = coords.split_at(coords.len() / 2);
                jwk.insert("x".into(), b64(x).into());
                jwk.insert("y".into(), b64(y).into());
            }
            let public_jwk = Value::Object(jwk.clone());
            jwk.insert("d".into(), b64(&d).into());
            (
                json!({"keys": [public_jwk]}),
                Value::Object(jwk).to_string(),
            )
        }
    }
}

fn header() -> Map<String, Value> {
    let mut header = Map::new();
    header.insert("cty".into(), "JWT".into());
    header.insert("iss".into(), "https://idp.test".into());
    header
}

#[test]
fn every_alg_and_enc_round_trips() {
    let plaintext = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln";
    for (kind, alg) in [
        ("RSA", KeyAlg::RsaOaep256),
        ("P-256", KeyAlg::EcdhEs),
        ("P-384", KeyAlg::EcdhEs),
        ("P-521", KeyAlg::EcdhEs),
        ("X25519", KeyAlg::EcdhEs),
    ] {
        let (jwks, private) = key_pair(kind);
        let recipient = choose_key(&jwks, alg).unwrap();
        let key = DecryptionKey::parse(&private).unwrap();
        for enc in ContentEnc::ALL {
            let token = encrypt(plaintext, &recipient, alg, enc, header()).unwrap();
            let opened = decrypt(&token, &key).unwrap();
            assert_eq!(&opened.plaintext[..], plaintext, "{kind} {enc}");
            assert_eq!((opened.alg, opened.enc), (alg, enc));
            assert_eq!(opened.header["cty"], "JWT");
            assert_eq!(opened.header["iss"], "https://idp.test");
            assert_eq!(opened.header["kid"], jwks["keys"][0]["kid"]);
            assert_eq!(opened.header.contains_key("epk"), alg == KeyAlg::EcdhEs);
            let again = encrypt(plaintext, &recipient, alg, enc, header()).unwrap();
            assert_ne!(token, again, "fresh CEK and IV every time");
        }
    }
}

fn flip(token: &str, part: usize) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut bytes = unb64(&parts[part], "part").unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    parts[part] = b64(&bytes);
    parts.join(".")
}

#[test]
fn tampering_with_any_part_is_rejected() {
    for (kind, alg) in [("RSA", KeyAlg::RsaOaep256), ("P-256", KeyAlg::EcdhEs)] {
        let (jwks, private) = key_pair(kind);
        let recipient = choose_key(&jwks, alg).unwrap();
        let key = DecryptionKey::parse(&private).unwrap();
        for enc in ContentEnc::ALL {
            let token = encrypt(b"payload", &recipient, alg, enc, header()).unwrap();
            let mut parts: Vec<usize> = vec![2, 3, 4];
            if alg == KeyAlg::RsaOaep256 {
                parts.push(1);
            }
            for part in parts {
                assert!(
                    decrypt(&flip(&token, part), &key).is_err(),
                    "{kind} {enc} part {part}"
                );
            }
            // A header changed but still valid JSON fails the tag (it is the AAD).
            let mut pieces: Vec<String> = token.split('.').map(str::to_owned).collect();
            let mut h: Map<String, Value> =
                serde_json::from_slice(&unb64(&pieces[0], "h").unwrap()).unwrap();
            h.insert("iss".into(), "https://evil.test".into());
            pieces[0] = b64(&serde_json::to_vec(&h).unwrap());
            assert!(decrypt(&pieces.join("."), &key).is_err());
        }
    }
}

#[test]
fn a_token_for_another_key_is_rejected() {
    for (kind, alg) in [("RSA", KeyAlg::RsaOaep256), ("P-256", KeyAlg::EcdhEs)] {
        let (jwks, _) = key_pair(kind);
        let (_, other) = key_pair(kind);
        let recipient = choose_key(&jwks, alg).unwrap();
        let token = encrypt(b"x", &recipient, alg, ContentEnc::A256Gcm, header()).unwrap();
        let key = DecryptionKey::parse(&other).unwrap();
        assert!(decrypt(&token, &key).is_err(), "{kind}");
    }
    let (jwks, _) = key_pair("P-256");
    let (_, rsa) = key_pair("RSA");
    let recipient = choose_key(&jwks, KeyAlg::EcdhEs).unwrap();
    let token = encrypt(
        b"x",
        &recipient,
        KeyAlg::EcdhEs,
        ContentEnc::A256Gcm,
        header(),
    )
    .unwrap();
    assert!(matches!(
        decrypt(&token, &DecryptionKey::parse(&rsa).unwrap()),
        Err(JweError::KeyMismatch(_))
    ));
}

#[test]
fn malformed_input_fails_closed_without_panicking() {
    let (_, private) = key_pair("P-256");
    let key = DecryptionKey::parse(&private).unwrap();
    let h = |json: &str| b64(json.as_bytes());
    let gcm = h(r#"{"alg":"ECDH-ES","enc":"A256GCM"}"#);
    for input in [
        String::new(),
        ".".repeat(4),
        "a.b.c".into(),
        "!!.a.b.c.d".into(),
        format!("{}....", h("[]")),
        format!("{}....", h(r#"{"alg":"dir","enc":"A256GCM"}"#)),
        format!("{}....", h(r#"{"alg":"ECDH-ES","enc":"A128GCM"}"#)),
        format!(
            "{}....",
            h(r#"{"alg":"ECDH-ES","enc":"A256GCM","zip":"DEF"}"#)
        ),
        format!(
            "{}....",
            h(r#"{"alg":"ECDH-ES","enc":"A256GCM","crit":["x"]}"#)
        ),
        format!("{gcm}...."),
        format!(
            "{}..AAAA.AAAA.AAAA",
            h(
                r#"{"alg":"ECDH-ES","enc":"A256GCM","epk":{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}}"#
            )
        ),
        format!(
            "{}..AAAA.AAAA.AAAA",
            h(
                r#"{"alg":"ECDH-ES","enc":"A256GCM","epk":{"kty":"EC","crv":"P-384","x":"AA","y":"AA"}}"#
            )
        ),
        format!(
            "{}.AAAA.AAAA.AAAA.AAAA",
            h(r#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#)
        ),
        "x".repeat(300 * 1024),
    ] {
        assert!(decrypt(&input, &key).is_err(), "{:.80}", input);
    }
    // A point off the curve is refused.
    let x = b64(&[1u8; 32]);
    let off = h(&format!(
        r#"{{"alg":"ECDH-ES","enc":"A256GCM","epk":{{"kty":"EC","crv":"P-256","x":"{x}","y":"{x}"}}}}"#
    ));
    let iv = b64(&[0u8; 12]);
    let tag = b64(&[0u8; 16]);
    assert!(matches!(
        decrypt(&format!("{off}..{iv}.AAAA.{tag}"), &key),
        Err(JweError::KeyMismatch(_))
    ));
}

#[test]
fn key_choice_prefers_a_kid_and_skips_keys_not_for_encryption() {
    let (rsa, _) = key_pair("RSA");
    let mut no_kid = rsa["keys"][0].clone();
    no_kid.as_object_mut().unwrap().remove("kid");
    let mut sig = rsa["keys"][0].clone();
    sig["use"] = "sig".into();
    sig["kid"] = "signing".into();
    let jwks = json!({"keys": [sig, no_kid, rsa["keys"][0]]});
    assert_eq!(
        choose_key(&jwks, KeyAlg::RsaOaep256).unwrap().kid(),
        Some("rsa-1")
    );
    let err = choose_key(&json!({"keys": [jwks["keys"][0]]}), KeyAlg::RsaOaep256).unwrap_err();
    assert!(err.contains("use \"sig\""), "{err}");
    assert!(choose_key(&rsa, KeyAlg::EcdhEs).is_err());
}

#[test]
fn inline_jwks_are_checked_at_registration() {
    let (p256, private) = key_pair("P-256");
    assert!(check_inline_jwks(&p256, Some(KeyAlg::EcdhEs)).is_ok());
    let err = check_inline_jwks(&p256, Some(KeyAlg::RsaOaep256)).unwrap_err();
    assert!(err.contains("RSA-OAEP-256"), "{err}");
    let with_private: Value = serde_json::from_str(&private).unwrap();
    let err = check_inline_jwks(&json!({"keys": [with_private]}), None).unwrap_err();
    assert!(err.contains("private member d"), "{err}");
    assert!(check_inline_jwks(&json!({"kty": "RSA"}), None).is_err());
    let weak = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
    drop(weak);
    let small = json!({"keys": [{"kty": "RSA", "n": b64(&[0xC1; 128]), "e": "AQAB"}]});
    let err = check_inline_jwks(&small, Some(KeyAlg::RsaOaep256)).unwrap_err();
    assert!(err.contains("2048") || err.contains("not a valid"), "{err}");
    let mut alg_other = p256["keys"][0].clone();
    alg_other["alg"] = "ECDH-ES+A128KW".into();
    assert!(check_inline_jwks(&json!({"keys": [alg_other]}), Some(KeyAlg::EcdhEs)).is_err());
}

#[test]
fn decryption_keys_redact_themselves() {
    let (_, private) = key_pair("P-256");
    let key = DecryptionKey::parse(&private).unwrap();
    let shown = format!("{key:?}");
    assert!(shown.contains("[redacted]"));
    let d: Value = serde_json::from_str(&private).unwrap();
    assert!(!shown.contains(d["d"].as_str().unwrap()));
    assert!(DecryptionKey::parse("not a key").is_err());
    assert!(DecryptionKey::parse(r#"{"kty":"EC","crv":"P-256","x":"AA"}"#).is_err());
}
