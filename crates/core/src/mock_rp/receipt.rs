//! Receipts: one JSON object per POST the mock RP received, and the caps that keep each one
//! small whatever a client sends.
//!
//! A receipt never holds the raw token: only its decoded claims. The claims of a token that
//! failed validation come from anyone who can reach the port, so only a bounded part of them
//! is kept ([`MAX_INVALID_CLAIMS_BYTES`]), marked with `claims_truncated`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Most bytes of an invalid token's claims kept in its receipt, serialized as JSON.
pub(super) const MAX_INVALID_CLAIMS_BYTES: usize = 4 * 1024;
/// Longest `jti`, `sid` or `sub` of an invalid token kept in a receipt, in characters (the
/// length the management API allows for ids).
pub(super) const MAX_INVALID_CLAIM_CHARS: usize = 255;
/// Longest request path or query string kept in a receipt, in characters.
pub(super) const MAX_RECORDED_URL_CHARS: usize = 2048;
/// Most notes kept in one receipt; the last one then says how many were left out.
pub(super) const MAX_NOTES: usize = 16;

/// The claims a reader looks for first; kept ahead of any others when claims are cut.
const PRIORITY_CLAIMS: [&str; 8] = ["iss", "aud", "iat", "exp", "jti", "sid", "sub", "events"];

/// What the mock RP saw and answered for one POST.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    /// When the request arrived (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// The request path (at most [`MAX_RECORDED_URL_CHARS`] characters).
    pub path: String,
    /// The query string, if any (dropped when it holds a `logout_token`).
    pub query: Option<String>,
    /// The status answered, or `None` when the connection was dropped.
    pub status: Option<u16>,
    /// Whether the request and its token passed every check; an injected fault does not
    /// change it.
    pub valid: bool,
    /// Every reason the request or its token was refused.
    pub errors: Vec<String>,
    /// Remarks that did not make the request invalid (extra form parameters).
    pub notes: Vec<String>,
    /// The token's claims when its payload could be decoded, valid or not.
    pub claims: Option<Value>,
    /// True when part of an invalid token's claims (or its `jti`, `sid` or `sub`) was left
    /// out to keep the receipt small. Serialized only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub claims_truncated: bool,
    /// The `jti` claim, if it is a string.
    pub jti: Option<String>,
    /// The `sid` claim, if it is a string.
    pub sid: Option<String>,
    /// The `sub` claim, if it is a string.
    pub sub: Option<String>,
    /// The 1-based number of requests seen for this `sid` (else `sub`, else `jti`).
    pub attempt: Option<u64>,
    /// True when the `jti` was already accepted before (spec §2.7).
    pub replay: bool,
    /// The injected fault: `drop`, `fail_status`, `redirect`, `delay`, or `None`.
    pub fault: Option<String>,
}

impl Receipt {
    /// Applies the per-receipt caps: the claims and claim strings of an invalid token, the
    /// path and query, and the number of notes.
    pub fn bounded(mut self) -> Self {
        if !self.valid {
            let mut cut = false;
            if let Some(claims) = self.claims.take() {
                let (kept, truncated) = bound_claims(claims, MAX_INVALID_CLAIMS_BYTES);
                self.claims = Some(kept);
                cut |= truncated;
            }
            for text in [&mut self.jti, &mut self.sid, &mut self.sub] {
                cut |= cap_chars(text, MAX_INVALID_CLAIM_CHARS);
            }
            self.claims_truncated |= cut;
        }
        let mut path = Some(std::mem::take(&mut self.path));
        cap_chars(&mut path, MAX_RECORDED_URL_CHARS);
        self.path = path.unwrap_or_default();
        cap_chars(&mut self.query, MAX_RECORDED_URL_CHARS);
        if self.notes.len() > MAX_NOTES {
            let left_out = self.notes.len() - (MAX_NOTES - 1);
            self.notes.truncate(MAX_NOTES - 1);
            self.notes
                .push(format!("{left_out} more notes not recorded"));
        }
        self
    }
}

/// Cuts `text` to `max` characters, ending it with `…`; true when it was cut.
fn cap_chars(text: &mut Option<String>, max: usize) -> bool {
    let Some(value) = text else {
        return false;
    };
    match value.char_indices().nth(max) {
        None => false,
        Some((end, _)) => {
            value.truncate(end);
            value.push('…');
            true
        }
    }
}

/// Keeps whole members of `claims` (the [`PRIORITY_CLAIMS`] first) while their JSON stays
/// within `max_bytes`; true when any member was left out. A claims value that is not an
/// object is replaced by an empty object when too large.
pub(super) fn bound_claims(claims: Value, max_bytes: usize) -> (Value, bool) {
    if json_len(&claims) <= max_bytes {
        return (claims, false);
    }
    let Value::Object(mut members) = claims else {
        return (Value::Object(Map::new()), true);
    };
    let mut kept = Map::new();
    let mut used = 2; // the braces
    let priority: Vec<String> = PRIORITY_CLAIMS.iter().map(|k| (*k).to_owned()).collect();
    let rest: Vec<String> = members
        .keys()
        .filter(|k| !PRIORITY_CLAIMS.contains(&k.as_str()))
        .cloned()
        .collect();
    for name in priority.into_iter().chain(rest) {
        let Some(value) = members.remove(&name) else {
            continue;
        };
        // A member costs its quoted name, a colon, its value and a comma.
        let cost = json_len(&Value::String(name.clone())) + 1 + json_len(&value) + 1;
        if used + cost <= max_bytes {
            used += cost;
            kept.insert(name, value);
        }
    }
    (Value::Object(kept), true)
}

fn json_len(value: &Value) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |bytes| bytes.len())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn receipt(valid: bool, claims: Value) -> Receipt {
        Receipt {
            time: "t".into(),
            path: "/bc".into(),
            query: None,
            status: Some(400),
            valid,
            errors: vec![],
            notes: vec![],
            claims: Some(claims),
            claims_truncated: false,
            jti: None,
            sid: Some("s".repeat(10_000)),
            sub: None,
            attempt: None,
            replay: false,
            fault: None,
        }
    }

    #[test]
    fn large_invalid_claims_keep_the_standard_ones_within_the_cap() {
        let claims = json!({"iss": "i", "aud": "a", "sid": "s", "junk": "x".repeat(60_000)});
        let bounded = receipt(false, claims).bounded();
        let kept = bounded.claims.unwrap();
        assert!(json_len(&kept) <= MAX_INVALID_CLAIMS_BYTES);
        assert_eq!(kept, json!({"iss": "i", "aud": "a", "sid": "s"}));
        assert!(bounded.claims_truncated);
        assert_eq!(
            bounded.sid.unwrap().chars().count(),
            MAX_INVALID_CLAIM_CHARS + 1
        );
    }

    #[test]
    fn valid_and_small_claims_are_kept_whole() {
        let big = json!({"session_metadata": {"k": "v".repeat(5000)}});
        let valid = receipt(true, big.clone()).bounded();
        assert_eq!(valid.claims.unwrap(), big);
        assert!(!valid.claims_truncated);
        let small = json!({"sid": "s"});
        let (kept, cut) = bound_claims(small.clone(), MAX_INVALID_CLAIMS_BYTES);
        assert_eq!((kept, cut), (small, false));
    }

    #[test]
    fn notes_and_path_are_capped() {
        let mut r = receipt(true, json!({}));
        r.notes = (0..100).map(|i| format!("n{i}")).collect();
        r.path = "/".repeat(10_000);
        let r = r.bounded();
        assert_eq!(r.notes.len(), MAX_NOTES);
        assert_eq!(r.notes.last().unwrap(), "85 more notes not recorded");
        assert_eq!(r.path.chars().count(), MAX_RECORDED_URL_CHARS + 1);
    }

    #[test]
    fn claims_truncated_is_serialized_only_when_true() {
        let r = receipt(true, json!({}));
        assert!(
            !serde_json::to_string(&r)
                .unwrap()
                .contains("claims_truncated")
        );
        let r = receipt(false, json!({"x": "y".repeat(9000)})).bounded();
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains("\"claims_truncated\":true"), "{text}");
    }
}
