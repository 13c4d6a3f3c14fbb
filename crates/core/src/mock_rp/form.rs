//! The request body of a logout request (spec §2.5): a capped read, the content type, and a
//! strict `application/x-www-form-urlencoded` parse that refuses malformed escapes and
//! invalid UTF-8 instead of replacing them.

use axum::body::{Body, Bytes};
use futures_util::StreamExt as _;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderMap};

/// The one media type a logout request may carry.
pub(super) const FORM_TYPE: &str = "application/x-www-form-urlencoded";

/// How much of an oversized body is read and discarded so the sender sees the reply rather
/// than a reset connection; beyond this the connection is simply closed after the reply.
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;

/// A body read up to a cap.
#[derive(Debug)]
pub(crate) enum ReadBody {
    /// The whole body.
    Complete(Bytes),
    /// The body exceeded the cap.
    TooLarge,
    /// The connection failed while reading.
    Broken,
}

/// Reads at most `limit` bytes of `body`.
pub(crate) async fn read_capped(body: Incoming, limit: usize) -> ReadBody {
    let mut stream = Body::new(body).into_data_stream();
    let mut collected = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return ReadBody::Broken;
        };
        seen = seen.saturating_add(chunk.len());
        if seen > DRAIN_LIMIT {
            return ReadBody::TooLarge;
        }
        if seen <= limit {
            collected.extend_from_slice(&chunk);
        }
    }
    if seen > limit {
        return ReadBody::TooLarge;
    }
    ReadBody::Complete(Bytes::from(collected))
}

/// Checks `Content-Type` is the form type, parameters allowed; returns the problem if not.
pub(super) fn check_content_type(headers: &HeaderMap) -> Result<(), String> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Err(format!("Content-Type is missing (expected {FORM_TYPE})"));
    };
    let essence = value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    match essence {
        Some(essence) if essence.eq_ignore_ascii_case(FORM_TYPE) => Ok(()),
        _ => Err(format!("Content-Type is not {FORM_TYPE}")),
    }
}

/// One decoded form parameter.
pub(super) type Pair = (String, String);

/// Parses a form body strictly; an error names the first problem found.
pub(super) fn parse_form(body: &[u8]) -> Result<Vec<Pair>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "body is not UTF-8".to_owned())?;
    text.split('&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            let (name, value) = segment.split_once('=').unwrap_or((segment, ""));
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

/// Decodes one form component: `+` is a space, `%XX` a byte; the result must be UTF-8.
fn decode(component: &str) -> Result<String, String> {
    let bytes = component.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(hex_byte);
                out.push(hex.ok_or("body has a malformed percent escape")?);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "body has percent escapes that are not UTF-8".to_owned())
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |b: u8| (b as char).to_digit(16);
    match pair {
        [hi, lo] => Some((digit(*hi)? * 16 + digit(*lo)?) as u8),
        _ => None,
    }
}

/// A parameter name fit for a receipt: at most 40 characters, quoted.
pub(super) fn shorten(name: &str) -> String {
    format!("{:?}", name.chars().take(40).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_and_escapes() {
        let pairs = parse_form(b"logout_token=a.b.c&x=%41+b&&flag").unwrap();
        assert_eq!(
            pairs,
            vec![
                ("logout_token".into(), "a.b.c".into()),
                ("x".into(), "A b".into()),
                ("flag".into(), String::new()),
            ]
        );
    }

    #[test]
    fn refuses_bad_escapes_and_bytes() {
        assert!(parse_form(b"a=%zz").is_err());
        assert!(parse_form(b"a=%4").is_err());
        assert!(parse_form(b"a=%ff%fe").is_err());
        assert!(parse_form(&[0xff, 0x00]).is_err());
    }

    #[test]
    fn content_type_allows_parameters() {
        let mut headers = HeaderMap::new();
        let check = |value: &'static str, headers: &mut HeaderMap| {
            headers.insert(CONTENT_TYPE, value.parse().unwrap());
            check_content_type(headers)
        };
        assert!(
            check(
                "application/x-www-form-urlencoded; charset=UTF-8",
                &mut headers
            )
            .is_ok()
        );
        assert!(check("Application/X-WWW-Form-Urlencoded", &mut headers).is_ok());
        assert!(check("application/json", &mut headers).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 2000, failure_persistence: None, ..Default::default()
        })]

        /// Any bytes get a verdict, never a panic.
        #[test]
        fn any_body_gets_a_verdict(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = parse_form(&body);
        }

        /// Whatever a sender percent-encodes comes back as it was sent.
        #[test]
        fn encoded_pairs_round_trip(name in "[a-z_]{1,12}", value in "\\PC{0,40}") {
            let encoded: String = value
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect();
            let pairs = parse_form(format!("{name}={encoded}").as_bytes()).unwrap();
            proptest::prop_assert_eq!(pairs, vec![(name, value)]);
        }
    }
}
