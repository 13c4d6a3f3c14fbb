//! The logout token's claims and their builder (pure: no I/O, time is passed in).
//!
//! Implements the claim set of OpenID Connect Back-Channel Logout 1.0 §2.4, with the explicit
//! typing of the errata (§2.4.1) left to [`crate::keys`], which signs the claims.

use crate::ids::{ClientId, Issuer, Jti, SessionId, UserId};
use crate::keys::SignError;
use crate::metadata::SessionMetadata;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use serde::de::{Deserializer, Error as _, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The only member of the `events` claim (Back-Channel Logout 1.0 §2.4).
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// The longest lifetime logoutd gives a token, in seconds (design §3): a limit, not a
/// setting. It bounds every configured lifetime, and the keys module relies on it to keep a
/// retired key published until the last token it signed has expired, whatever lifetime a
/// node was configured with ([`crate::keys::RETIRED_GRACE_SECS`]).
pub const MAX_LIFETIME_SECS: i64 = 120;
/// The lifetime of a token unless the caller (or `token_lifetime_seconds`) asks for less, in
/// seconds. Design §3 makes the default the maximum, which leaves the most room for an RP
/// whose clock is behind.
pub const DEFAULT_LIFETIME_SECS: i64 = MAX_LIFETIME_SECS;

/// A builder input that was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The requested lifetime is outside 1..=[`MAX_LIFETIME_SECS`] seconds.
    #[error("token lifetime must be between 1 and {MAX_LIFETIME_SECS} seconds, got {0}")]
    Lifetime(i64),
}

/// Why a logout token could not be minted for a delivery attempt. The text is the cause's
/// own, which names the fix (the key to generate, the lifetime to set).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// The configured token lifetime was refused by the builder.
    #[error(transparent)]
    Lifetime(#[from] TokenError),
    /// No active key signs with the client's alg, or the crypto library failed.
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// What `Debug` and `Display` of a [`LogoutToken`] print instead of the token.
pub(crate) const REDACTED_TOKEN: &str = "[redacted logout token]";

/// A minted logout token: the compact JWS sent to one RP.
///
/// It is a credential the RP acts on, and its payload carries `session_metadata`, so it must
/// never reach a log, an error message or a stored attempt. `Debug` and `Display` print
/// [`REDACTED_TOKEN`]; the sender reads the token itself with [`LogoutToken::expose`].
pub struct LogoutToken(String);

impl LogoutToken {
    /// Wraps a compact JWS, such as one [`crate::keys::KeySet::sign`] produced.
    pub fn new(compact: String) -> Self {
        Self(compact)
    }

    /// The token itself, for the request body and for scrubbing echoes of it from the RP's
    /// answer. Never log or store it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LogoutToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogoutToken({REDACTED_TOKEN})")
    }
}

impl fmt::Display for LogoutToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED_TOKEN)
    }
}

/// Whom the token logs out: the user, the session, or both (spec §2.4 requires at least one
/// of `sub` and `sid`, so "neither" cannot be expressed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// Every session of the user (`sub` only).
    Sub(UserId),
    /// One session (`sid` only).
    Sid(SessionId),
    /// One session of a known user (`sub` and `sid`).
    Both(UserId, SessionId),
}

impl Subject {
    /// Builds a subject from optional parts; `None` when both are absent.
    pub fn from_parts(sub: Option<UserId>, sid: Option<SessionId>) -> Option<Self> {
        match (sub, sid) {
            (Some(u), Some(s)) => Some(Self::Both(u, s)),
            (Some(u), None) => Some(Self::Sub(u)),
            (None, Some(s)) => Some(Self::Sid(s)),
            (None, None) => None,
        }
    }

    fn split(self) -> (Option<UserId>, Option<SessionId>) {
        match self {
            Self::Sub(u) => (Some(u), None),
            Self::Sid(s) => (None, Some(s)),
            Self::Both(u, s) => (Some(u), Some(s)),
        }
    }
}

/// The `events` claim: always exactly `{BACKCHANNEL_LOGOUT_EVENT: {}}` (spec §2.4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogoutEvent;

impl Serialize for LogoutEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(BACKCHANNEL_LOGOUT_EVENT, &EmptyObject)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for LogoutEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EventVisitor)
    }
}

struct EmptyObject;

impl Serialize for EmptyObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_map(Some(0))?.end()
    }
}

struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = LogoutEvent;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "an object with the single member {BACKCHANNEL_LOGOUT_EVENT:?}"
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LogoutEvent, A::Error> {
        let mut seen = false;
        while let Some(key) = map.next_key::<String>()? {
            let value: serde_json::Map<String, serde_json::Value> = map.next_value()?;
            if key != BACKCHANNEL_LOGOUT_EVENT || seen || !value.is_empty() {
                return Err(A::Error::custom("events must be exactly the logout event"));
            }
            seen = true;
        }
        if seen {
            Ok(LogoutEvent)
        } else {
            Err(A::Error::custom("events lacks the logout event"))
        }
    }
}

/// The claims of a logout token (spec §2.4). Field order is the serialization order.
///
/// `Debug` shows metadata keys only, never values.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutClaims {
    /// Exactly the discovery `issuer`.
    pub iss: Issuer,
    /// The client_id, as a single string.
    pub aud: ClientId,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expiry, seconds since the epoch; `iat` + lifetime.
    pub exp: i64,
    /// A fresh identifier with at least 128 random bits.
    pub jti: Jti,
    /// Always the single back-channel logout event.
    pub events: LogoutEvent,
    /// The user, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<UserId>,
    /// The session, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<SessionId>,
    /// The session end's event id, shared with its SSF SETs (RFC 8417 §2.2); only when the
    /// operator turned `logout_token_txn` on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn: Option<String>,
    /// The session's metadata snapshot; omitted when absent or empty.
    #[serde(default, skip_serializing_if = "metadata_is_empty")]
    pub session_metadata: Option<SessionMetadata>,
}

fn metadata_is_empty(meta: &Option<SessionMetadata>) -> bool {
    meta.as_ref().is_none_or(SessionMetadata::is_empty)
}

impl fmt::Debug for LogoutClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogoutClaims")
            .field("iss", &self.iss)
            .field("aud", &self.aud)
            .field("iat", &self.iat)
            .field("exp", &self.exp)
            .field("jti", &self.jti)
            .field("sub", &self.sub)
            .field("sid", &self.sid)
            .field("txn", &self.txn)
            // SessionMetadata's own Debug prints keys only.
            .field("session_metadata", &self.session_metadata)
            .finish()
    }
}

/// A new `jti`: 128 bits, base64url, in one allocation.
///
/// The bits come from `rand`'s thread-local ChaCha12 generator, a CSPRNG seeded and
/// periodically reseeded from the OS. It is used instead of the OS source directly because
/// a `jti` is drawn for every delivery attempt and an OS draw costs several times more
/// than the rest of building the claims.
fn fresh_jti() -> Jti {
    use rand::RngCore as _;
    let mut bytes = [0u8; crate::ids::RANDOM_ID_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    let mut text = String::with_capacity(22);
    URL_SAFE_NO_PAD.encode_string(bytes, &mut text);
    Jti::new(text)
}

impl LogoutClaims {
    /// Appends the claims as compact JSON to `out`, byte for byte what `serde_json` writes
    /// for this type, without going through serde (signing hot path).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"iss\":");
        json_str(out, self.iss.as_str());
        out.extend_from_slice(b",\"aud\":");
        json_str(out, self.aud.as_str());
        out.extend_from_slice(b",\"iat\":");
        push_int(out, self.iat);
        out.extend_from_slice(b",\"exp\":");
        push_int(out, self.exp);
        out.extend_from_slice(b",\"jti\":");
        json_str(out, self.jti.as_str());
        out.extend_from_slice(EVENTS_MEMBER.as_bytes());
        if let Some(sub) = &self.sub {
            out.extend_from_slice(b",\"sub\":");
            json_str(out, sub.as_str());
        }
        if let Some(sid) = &self.sid {
            out.extend_from_slice(b",\"sid\":");
            json_str(out, sid.as_str());
        }
        if let Some(txn) = &self.txn {
            out.extend_from_slice(b",\"txn\":");
            json_str(out, txn);
        }
        if let Some(meta) = self.session_metadata.as_ref().filter(|m| !m.is_empty()) {
            out.extend_from_slice(b",\"session_metadata\":");
            let mut sep = b'{';
            for (key, value) in meta.iter() {
                out.push(sep);
                sep = b',';
                json_str(out, key);
                out.push(b':');
                json_str(out, value);
            }
            out.push(b'}');
        }
        out.push(b'}');
    }
}

const EVENTS_MEMBER: &str =
    ",\"events\":{\"http://schemas.openid.net/event/backchannel-logout\":{}}";

/// Appends `value` in decimal, as `serde_json` writes it, without the `fmt` machinery.
fn push_int(out: &mut Vec<u8>, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    let mut digits = [0u8; 20];
    let mut rest = value.unsigned_abs();
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Writes `text` as a JSON string: plain printable ASCII is copied, anything else is left
/// to `serde_json` so the escaping stays identical.
fn json_str(out: &mut Vec<u8>, text: &str) {
    let plain = text
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
    if plain {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, text).is_err() {
        // Writing a str into a Vec cannot fail; keep the output valid JSON regardless.
        out.extend_from_slice(b"\"\"");
    }
}

/// Builds [`LogoutClaims`] for one delivery attempt (spec §2.4).
#[derive(Debug, Clone)]
pub struct LogoutTokenBuilder {
    issuer: Issuer,
    audience: ClientId,
    subject: Subject,
    now: DateTime<Utc>,
    lifetime_secs: i64,
    metadata: Option<SessionMetadata>,
    jti: Option<Jti>,
    txn: Option<String>,
}

impl LogoutTokenBuilder {
    /// Starts a token for `audience`, issued by `issuer` at `now`, with the default lifetime.
    pub fn new(issuer: &Issuer, audience: &ClientId, subject: Subject, now: DateTime<Utc>) -> Self {
        Self {
            issuer: issuer.clone(),
            audience: audience.clone(),
            subject,
            now,
            lifetime_secs: DEFAULT_LIFETIME_SECS,
            metadata: None,
            jti: None,
            txn: None,
        }
    }

    /// Sets the lifetime; it must be whole seconds in 1..=[`MAX_LIFETIME_SECS`].
    pub fn lifetime(mut self, lifetime: Duration) -> Result<Self, TokenError> {
        let secs = lifetime.num_seconds();
        let whole = lifetime.subsec_nanos() == 0;
        if !whole || !(1..=MAX_LIFETIME_SECS).contains(&secs) {
            return Err(TokenError::Lifetime(secs));
        }
        self.lifetime_secs = secs;
        Ok(self)
    }

    /// Adds the session metadata snapshot; an empty map is omitted from the claims.
    pub fn session_metadata(mut self, metadata: &SessionMetadata) -> Self {
        self.metadata = (!metadata.is_empty()).then(|| metadata.clone());
        self
    }

    /// Adds `txn`: the session end's event id, which its SSF SETs carry too.
    pub fn txn(mut self, txn: &str) -> Self {
        self.txn = Some(txn.to_owned());
        self
    }

    /// Fixes the `jti` (for golden tests); otherwise every build draws a fresh one.
    pub fn jti(mut self, jti: Jti) -> Self {
        self.jti = Some(jti);
        self
    }

    /// The claims. Without a fixed `jti`, a new 128-bit one is drawn; clone the builder to
    /// mint several tokens from one template.
    pub fn build(self) -> LogoutClaims {
        let iat = self.now.timestamp();
        let (sub, sid) = self.subject.split();
        LogoutClaims {
            iss: self.issuer,
            aud: self.audience,
            iat,
            exp: iat + self.lifetime_secs,
            jti: self.jti.unwrap_or_else(fresh_jti),
            events: LogoutEvent,
            sub,
            sid,
            txn: self.txn,
            session_metadata: self.metadata,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn builder(subject: Subject) -> LogoutTokenBuilder {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        LogoutTokenBuilder::new(
            &Issuer::new("https://idp"),
            &ClientId::new("c1"),
            subject,
            now,
        )
    }

    #[test]
    fn claims_serialize_in_order_without_nonce() {
        let claims = builder(Subject::Sid(SessionId::new("s1")))
            .jti(Jti::new("j"))
            .build();
        let text = serde_json::to_string(&claims).unwrap();
        assert_eq!(
            text,
            r#"{"iss":"https://idp","aud":"c1","iat":1700000000,"exp":1700000120,"jti":"j","events":{"http://schemas.openid.net/event/backchannel-logout":{}},"sid":"s1"}"#
        );
    }

    #[test]
    fn lifetime_outside_1_to_120_is_refused() {
        let b = builder(Subject::Sub(UserId::new("u")));
        assert!(b.clone().lifetime(Duration::seconds(0)).is_err());
        assert!(b.clone().lifetime(Duration::seconds(121)).is_err());
        assert!(b.clone().lifetime(Duration::milliseconds(1500)).is_err());
        let claims = b.lifetime(Duration::seconds(30)).unwrap().build();
        assert_eq!(claims.exp - claims.iat, 30);
    }

    #[test]
    fn empty_metadata_is_omitted_and_values_stay_out_of_debug() {
        let b = builder(Subject::Sub(UserId::new("u")));
        let empty = b.clone().session_metadata(&SessionMetadata::new()).build();
        assert!(
            !serde_json::to_string(&empty)
                .unwrap()
                .contains("session_metadata")
        );
        let meta = SessionMetadata::from_json(&json!({"k": "secret-value"})).unwrap();
        let claims = b.session_metadata(&meta).build();
        assert!(!format!("{claims:?}").contains("secret-value"));
        let round: LogoutClaims =
            serde_json::from_str(&serde_json::to_string(&claims).unwrap()).unwrap();
        assert_eq!(round, claims);
    }

    #[test]
    fn a_logout_token_never_prints_itself() {
        let compact = "eyJhbGciOiJFUzI1NiJ9.eyJzaWQiOiJzMSJ9.c2lnbmF0dXJl";
        let token = LogoutToken::new(compact.to_owned());
        let shown = [
            format!("{token}"),
            format!("{token:?}"),
            format!("{token:#?}"),
            format!("{:?}", Some(&token)),
            format!("{:>80}", token),
            token.to_string(),
        ];
        for text in shown {
            assert!(!text.contains("eyJ"), "{text}");
            assert!(!text.contains("c2lnbmF0dXJl"), "{text}");
            assert!(text.contains(REDACTED_TOKEN), "{text}");
        }
        assert_eq!(token.expose(), compact);
    }

    #[test]
    fn mint_errors_read_as_their_cause() {
        let lifetime = TokenError::Lifetime(0);
        assert_eq!(
            MintError::from(lifetime.clone()).to_string(),
            lifetime.to_string()
        );
        let sign = SignError::NoKey(crate::alg::SigningAlg::ES256);
        assert_eq!(
            MintError::from(sign).to_string(),
            "no active signing key for ES256; create one with `logoutd keys generate --alg ES256`"
        );
    }

    #[test]
    fn integers_are_written_like_serde_json() {
        for value in [0, 7, -7, 1_700_000_000, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            push_int(&mut out, value);
            assert_eq!(out, serde_json::to_vec(&value).unwrap());
        }
    }

    #[test]
    fn events_deserialization_is_exact() {
        let bad = [
            json!({}),
            json!({ BACKCHANNEL_LOGOUT_EVENT: {"x": 1} }),
            json!({ BACKCHANNEL_LOGOUT_EVENT: {}, "other": {} }),
        ];
        for value in bad {
            assert!(serde_json::from_value::<LogoutEvent>(value).is_err());
        }
    }
}
