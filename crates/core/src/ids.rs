//! Identifier newtypes, so that a `ClientId` is never confused with a `SessionId`.
//!
//! Generated identifiers carry 128 random bits from the system CSPRNG, encoded as
//! unpadded base64url (22 characters). Delivery ids also start with their creation time and a
//! sequence number, so that rows are appended to every index ordered by id.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Number of random bytes in a generated identifier (128 bits).
pub(crate) const RANDOM_ID_BYTES: usize = 16;

/// 256 random bits, base64url encoded (43 characters): for secrets such as API tokens.
pub fn random_secret() -> String {
    format!("{}{}", random_token(), random_token())
}

/// Returns `RANDOM_ID_BYTES` bytes from the system CSPRNG, base64url encoded.
pub fn random_token() -> String {
    let mut bytes = [0u8; RANDOM_ID_BYTES];
    // `fill` only fails when the OS entropy source is broken; fall back to
    // `rand`'s OS generator rather than emit a predictable value.
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        use rand::RngCore as _;
        rand::rng().fill_bytes(&mut bytes);
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $prefix:expr) => {
        $(#[$doc])*
        #[derive(
            Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps an existing identifier.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// A fresh identifier with 128 random bits.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, random_token()))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Consumes the wrapper.
            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// An RP's OAuth `client_id`; the `aud` of its logout tokens.
    ClientId, "cli_"
);
/// Longest identifier (or display name) a caller may give, in characters.
pub(crate) const MAX_ID_CHARS: usize = 255;

/// Longest `client_id` accepted at registration, in characters.
pub(crate) const MAX_CLIENT_ID_CHARS: usize = 255;

/// The punctuation a registered `client_id` may hold besides ASCII letters and digits.
pub(crate) const CLIENT_ID_PUNCTUATION: &str = "._~:@/+-";

/// An identifier taken from a caller was refused. The message names the field and the rule,
/// and is what the API answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Empty, longer than [`MAX_ID_CHARS`] characters, or holding a control character.
    #[error("{field} must be 1-{MAX_ID_CHARS} characters without control characters")]
    Malformed {
        /// The request member the value came from.
        field: &'static str,
    },
    /// A `client_id` given at registration breaks the charset.
    #[error(
        "client_id must be 1-{MAX_CLIENT_ID_CHARS} characters from A-Z, a-z, 0-9 and {CLIENT_ID_PUNCTUATION}"
    )]
    ClientIdCharset,
}

impl IdError {
    /// The same refusal naming the request member the value came from, where that is not
    /// the identifier's usual name (a session's `id`, a client's own `sid`).
    pub fn for_field(self, field: &'static str) -> Self {
        match self {
            Self::Malformed { .. } => Self::Malformed { field },
            other => other,
        }
    }
}

/// Checks text a caller gives as an identifier or a display name: 1 to [`MAX_ID_CHARS`]
/// characters, none of them a control character, so it cannot break a log line or a table.
/// `field` names the request member in the refusal.
pub(crate) fn check_caller_text(field: &'static str, value: &str) -> Result<(), IdError> {
    let len = value.chars().count();
    if len == 0 || len > MAX_ID_CHARS || value.chars().any(char::is_control) {
        return Err(IdError::Malformed { field });
    }
    Ok(())
}

impl ClientId {
    /// Checks a `client_id` chosen by a caller at registration: 1 to
    /// [`MAX_CLIENT_ID_CHARS`] characters of ASCII letters, digits and
    /// [`CLIENT_ID_PUNCTUATION`].
    ///
    /// Auth0 generates 32 alphanumeric characters; the punctuation admits the usual other
    /// forms (`my-app.prod`, `urn:example:rp`, an `https://` URL as the id). Whitespace,
    /// quotes, backslashes, commas, braces, control and non-ASCII characters are refused,
    /// so an id is safe as it is in a metrics label, a log field, a table cell or a path.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || CLIENT_ID_PUNCTUATION.contains(c);
        let len = value.chars().count();
        if len == 0 || len > MAX_CLIENT_ID_CHARS || !value.chars().all(allowed) {
            return Err(IdError::ClientIdCharset);
        }
        Ok(Self(value.to_owned()))
    }

    /// Checks a `client_id` a caller gives to name a client, such as one joining a session,
    /// with [`check_caller_text`] rather than the registration charset: the store then says
    /// whether such a client is registered.
    pub fn parse_reference(value: &str) -> Result<Self, IdError> {
        check_caller_text("client_id", value)?;
        Ok(Self(value.to_owned()))
    }
}

string_id!(
    /// A session identifier; the `sid` of logout tokens.
    SessionId, "sess_"
);

impl SessionId {
    /// Checks a session id a caller gives, with [`check_caller_text`]; a refusal names
    /// `session_id` (see [`IdError::for_field`]).
    pub fn parse(value: &str) -> Result<Self, IdError> {
        check_caller_text("session_id", value)?;
        Ok(Self(value.to_owned()))
    }
}

string_id!(
    /// The user a session belongs to; the `sub` of logout tokens.
    UserId, "usr_"
);

impl UserId {
    /// Checks a user id a caller gives, with [`check_caller_text`]; a refusal names
    /// `user_id`.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        check_caller_text("user_id", value)?;
        Ok(Self(value.to_owned()))
    }
}
string_id!(
    /// One termination event; every delivery row it creates shares it.
    EventId, "evt_"
);
string_id!(
    /// One outbox row: the intent to tell one client that one session ended.
    DeliveryId, "dlv_"
);
/// The base64url characters in ASCII order, so that encoded numbers sort as they compare.
const SORTED_BASE64URL: &[u8; 64] =
    b"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";

impl DeliveryId {
    /// A fresh id: `dlv_`, 11 characters that sort in the order this process generated its ids
    /// (the millisecond of `now` in 8, until the year 10889, then a 16-bit sequence number in
    /// 3), then 128 random bits. The sequence orders ids of one millisecond, and when `now` is
    /// behind an id already generated (one request ending many sessions, or a clock stepped
    /// back) the id follows that one instead. So rows are appended to every index ordered by
    /// id, rather than scattered over it.
    pub fn generate_at(now: chrono::DateTime<chrono::Utc>) -> Self {
        Self(sorted_id("dlv_", now))
    }
}

string_id!(
    /// One operator event (`client.paused`, `delivery.failed`, ...), the `webhook-id` of its
    /// webhook requests.
    OperatorEventId, "oev_"
);

impl OperatorEventId {
    /// A fresh id that sorts like [`DeliveryId::generate_at`]'s: in the order this process
    /// generated its ids, then 128 random bits.
    pub fn generate_at(now: chrono::DateTime<chrono::Utc>) -> Self {
        Self(sorted_id("oev_", now))
    }
}

string_id!(
    /// One SET row of the SSF outbox.
    SetId, "set_"
);

impl SetId {
    /// A fresh id that sorts like [`DeliveryId::generate_at`]'s.
    pub fn generate_at(now: chrono::DateTime<chrono::Utc>) -> Self {
        Self(sorted_id("set_", now))
    }
}

/// `prefix`, 11 characters that sort in generation order (see [`DeliveryId::generate_at`]),
/// then 128 random bits.
fn sorted_id(prefix: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    let millis = u64::try_from(now.timestamp_millis())
        .unwrap_or(0)
        .min(MAX_MILLIS);
    let tick = next_tick(millis);
    let mut id = String::with_capacity(prefix.len() + 11 + 22);
    id.push_str(prefix);
    push_sorted(&mut id, tick >> 16, 8);
    push_sorted(&mut id, tick & 0xffff, 3);
    id.push_str(&random_token());
    id
}

/// The largest millisecond count an id encodes (48 bits).
const MAX_MILLIS: u64 = (1 << 48) - 1;

/// The last delivery id tick of this process: its millisecond shifted left by 16, plus the
/// sequence number.
static LAST_TICK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The tick after every earlier one, and no earlier than the start of `millis`. A sequence
/// that overflows carries into the millisecond.
fn next_tick(millis: u64) -> u64 {
    use std::sync::atomic::Ordering::Relaxed;
    let floor = millis << 16;
    let mut last = LAST_TICK.load(Relaxed);
    loop {
        let next = floor.max(last.saturating_add(1));
        match LAST_TICK.compare_exchange_weak(last, next, Relaxed, Relaxed) {
            Ok(_) => return next,
            Err(current) => last = current,
        }
    }
}

/// Appends the low `digits * 6` bits of `value` in [`SORTED_BASE64URL`] digits, most
/// significant first.
fn push_sorted(out: &mut String, value: u64, digits: u32) {
    for shift in (0..digits).rev() {
        let digit = (value >> (shift * 6)) & 63;
        out.push(char::from(SORTED_BASE64URL[digit as usize]));
    }
}

string_id!(
    /// A JWT ID (`jti`), fresh for every minted token.
    Jti, ""
);
string_id!(
    /// A JWK key id (`kid`): the RFC 7638 thumbprint of the public key, or the kid an imported
    /// key was given.
    KeyId, ""
);
string_id!(
    /// A claim on an outbox row; a worker may only record a result while it holds it.
    LeaseId, "lease_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_follow_the_registration_charset() {
        for ok in [
            "rp-1",
            "AaiyAPdpYdesoKnqjj8HJqRn4T5titww",
            "my_app.prod~2",
            "urn:example:rp",
            "https://rp.example/client",
            "svc+logout@example",
            &"a".repeat(MAX_CLIENT_ID_CHARS),
        ] {
            assert_eq!(
                ClientId::parse(ok).map(|c| c.into_inner()),
                Ok(ok.to_owned())
            );
        }
        assert!(ClientId::parse(ClientId::generate().as_str()).is_ok());
        for bad in [
            "",
            "x\",outcome=\"delivered\"} 1e+99\\",
            "back\\slash",
            "new\nline",
            "tab\there",
            "sp ace",
            "comma,id",
            "brace{",
            "équipe",
            "nul\0",
            &"a".repeat(MAX_CLIENT_ID_CHARS + 1),
        ] {
            assert_eq!(
                ClientId::parse(bad),
                Err(IdError::ClientIdCharset),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_refused_registration_client_id_names_the_charset() {
        assert_eq!(
            ClientId::parse("sp ace").map_err(|e| e.to_string()),
            Err("client_id must be 1-255 characters from A-Z, a-z, 0-9 and ._~:@/+-".to_owned())
        );
        assert_eq!(
            IdError::ClientIdCharset.for_field("sid"),
            IdError::ClientIdCharset
        );
    }

    #[test]
    fn caller_ids_are_1_to_255_characters_without_controls() {
        let longest = "é".repeat(MAX_ID_CHARS);
        for ok in ["s", "sess 1", "équipe/ü", "x\",\"y", longest.as_str()] {
            assert_eq!(SessionId::parse(ok), Ok(SessionId::new(ok)), "{ok:?}");
            assert_eq!(UserId::parse(ok), Ok(UserId::new(ok)), "{ok:?}");
            assert_eq!(
                ClientId::parse_reference(ok),
                Ok(ClientId::new(ok)),
                "{ok:?}"
            );
            assert_eq!(check_caller_text("name", ok), Ok(()), "{ok:?}");
        }
        let too_long = "a".repeat(MAX_ID_CHARS + 1);
        for bad in [
            "",
            "new\nline",
            "tab\there",
            "nul\0",
            "del\u{7f}",
            "c1\u{85}",
            &too_long,
        ] {
            let refusal = |field| Some(IdError::Malformed { field });
            assert_eq!(
                SessionId::parse(bad).err(),
                refusal("session_id"),
                "{bad:?}"
            );
            assert_eq!(UserId::parse(bad).err(), refusal("user_id"), "{bad:?}");
            assert_eq!(
                ClientId::parse_reference(bad).err(),
                refusal("client_id"),
                "{bad:?}"
            );
            assert_eq!(
                check_caller_text("name", bad).err(),
                refusal("name"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_refused_caller_id_names_its_field_as_before() {
        let message = |r: Result<SessionId, IdError>| r.map_err(|e| e.to_string());
        assert_eq!(
            message(SessionId::parse("")),
            Err("session_id must be 1-255 characters without control characters".to_owned())
        );
        assert_eq!(
            message(SessionId::parse("a\nb").map_err(|e| e.for_field("sid"))),
            Err("sid must be 1-255 characters without control characters".to_owned())
        );
        assert_eq!(
            UserId::parse("").map_err(|e| e.to_string()),
            Err("user_id must be 1-255 characters without control characters".to_owned())
        );
        assert_eq!(
            ClientId::parse_reference("").map_err(|e| e.to_string()),
            Err("client_id must be 1-255 characters without control characters".to_owned())
        );
    }

    #[test]
    fn generated_ids_carry_128_bits_and_differ() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_ne!(a, b);
        let raw = a.as_str().trim_start_matches("sess_");
        assert_eq!(URL_SAFE_NO_PAD.decode(raw).map(|v| v.len()).ok(), Some(16));
    }

    #[test]
    fn delivery_ids_sort_in_generation_order_and_keep_128_random_bits() {
        let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap();
        let times = [
            0,
            1,
            63,
            64,
            1_700_000_000_000,
            1_700_000_000_001,
            1_800_000_000_000,
        ];
        let ids: Vec<DeliveryId> = times
            .iter()
            .map(|&t| DeliveryId::generate_at(at(t)))
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ids, "string order is generation order");
        let behind = DeliveryId::generate_at(at(0));
        assert!(
            ids.iter().all(|id| *id < behind),
            "a clock behind never goes back"
        );
        let same_ms = DeliveryId::generate_at(at(5));
        let next = DeliveryId::generate_at(at(5));
        assert!(
            same_ms < next,
            "ids of one millisecond sort in generation order"
        );
        let raw = &same_ms.as_str()[4 + 11..];
        assert_eq!(URL_SAFE_NO_PAD.decode(raw).map(|v| v.len()).ok(), Some(16));
        assert!(SORTED_BASE64URL.windows(2).all(|w| w[0] < w[1]));
    }
}

/// The issuer identifier: the exact `iss` of every logout token and the discovery `issuer`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Issuer(String);

impl Issuer {
    /// Wraps an issuer string; it is used byte for byte.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The issuer as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Issuer({:?})", self.0)
    }
}
