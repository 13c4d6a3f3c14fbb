//! Relying-party registration in Auth0's `oidc_logout` shape.

use crate::alg::{SigningAlg, TokenTyp};
use crate::health::PausedBy;
use crate::ids::ClientId;
use crate::initiator::Initiator;
use crate::jwe::{ContentEnc, KeyAlg};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use url::Url;
use utoipa::ToSchema;

/// How a client chooses the initiators it is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InitiatorMode {
    /// Every initiator (the default, see [`LogoutInitiators::default`]).
    #[default]
    All,
    /// `rp-logout`, `idp-logout` and the selected ones.
    Custom,
}

/// Auth0's `backchannel_logout_initiators`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogoutInitiators {
    /// `all` or `custom`.
    pub mode: InitiatorMode,
    /// The initiators chosen in `custom` mode.
    #[serde(default)]
    pub selected_initiators: Vec<Initiator>,
}

impl Default for LogoutInitiators {
    /// `all`: a client registered without `backchannel_logout_initiators` is told of every
    /// kind of session end. Auth0 defaults to `custom` with only `rp-logout` and `idp-logout`,
    /// which leaves such a client unaware of revocations, password changes and expiries; see
    /// [`LogoutInitiators::auth0_default`] for that behaviour.
    fn default() -> Self {
        Self {
            mode: InitiatorMode::All,
            selected_initiators: Vec::new(),
        }
    }
}

impl LogoutInitiators {
    /// Auth0's default: `custom` with only the always-on initiators (`rp-logout`,
    /// `idp-logout`). Registrations stored by earlier versions of logoutd carry exactly this,
    /// written out, so they keep it.
    pub fn auth0_default() -> Self {
        Self {
            mode: InitiatorMode::Custom,
            selected_initiators: Initiator::ALWAYS_ON.to_vec(),
        }
    }
}

impl LogoutInitiators {
    /// Whether a client with this setting is told about `initiator`.
    pub fn subscribes(&self, initiator: Initiator) -> bool {
        match self.mode {
            InitiatorMode::All => true,
            InitiatorMode::Custom => {
                Initiator::ALWAYS_ON.contains(&initiator)
                    || self.selected_initiators.contains(&initiator)
            }
        }
    }
}

/// Auth0's `backchannel_logout_session_metadata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct MetadataOptIn {
    /// Include `session_metadata` in this client's logout tokens.
    pub include: bool,
}

/// `backchannel_logout_user_wide`: what a user-wide end (every session of a user) sends the
/// client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserWide {
    /// One token per ended session it took part in, each with `sub`, `sid` and (when opted
    /// in) that session's `session_metadata`: the default, and what registrations stored
    /// without the setting mean.
    #[default]
    PerSession,
    /// One token for all the ended sessions it took part in, with `sub` (the user) and
    /// neither `sid` nor `session_metadata`. Not for clients that require `sid`
    /// (`backchannel_logout_session_required`).
    PerUser,
}

/// Auth0's `oidc_logout` object.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct OidcLogout {
    /// Zero or one back-channel logout URL.
    pub backchannel_logout_urls: Vec<Url>,
    /// Which initiators the client receives.
    pub backchannel_logout_initiators: LogoutInitiators,
    /// Whether tokens carry session metadata.
    pub backchannel_logout_session_metadata: MetadataOptIn,
    /// What a user-wide end sends: `per_session` (the default) or `per_user`.
    #[serde(default)]
    pub backchannel_logout_user_wide: UserWide,
    /// The pace of this client's deliveries; absent when it has no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backchannel_logout_rate_limit: Option<RateLimit>,
}

/// `backchannel_logout_rate_limit`: the pace at which a client receives its logout tokens: at
/// most `burst` back to back, and `per_second` on average (a token bucket of `burst` tokens
/// refilled at `per_second`). Waiting for the pace is not an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RateLimit {
    /// Deliveries per second on average, from 0.001 to 1000; fractions are allowed (0.5 is
    /// one every 2 s).
    #[schema(minimum = 0.001, maximum = 1000, examples(20, 0.5))]
    pub per_second: f64,
    /// The most deliveries sent back to back after a quiet spell, from 1 to 1000.
    #[schema(minimum = 1, maximum = 1000, examples(5))]
    pub burst: u32,
}

// `per_second` is finite (validated), so equality is an equivalence.
impl Eq for RateLimit {}

impl RateLimit {
    /// The slowest pace: one delivery every 1000 s.
    pub const MIN_PER_SECOND: f64 = 0.001;
    /// The fastest pace.
    pub const MAX_PER_SECOND: f64 = 1000.0;
    /// The largest burst.
    pub const MAX_BURST: u32 = 1000;

    /// The burst used when none is given: `max(1, ceil(per_second))`, one second's worth.
    pub fn default_burst(per_second: f64) -> u32 {
        // In range, `per_second` is at most 1000, so the cast is exact.
        (per_second.ceil() as u32).clamp(1, Self::MAX_BURST)
    }

    /// The limit, or why it is out of range.
    pub fn new(per_second: f64, burst: Option<u32>) -> Result<Self, String> {
        if !per_second.is_finite()
            || !(Self::MIN_PER_SECOND..=Self::MAX_PER_SECOND).contains(&per_second)
        {
            return Err(format!(
                "backchannel_logout_rate_limit.per_second must be a number from {} to {}",
                Self::MIN_PER_SECOND,
                Self::MAX_PER_SECOND
            ));
        }
        let burst = burst.unwrap_or_else(|| Self::default_burst(per_second));
        if !(1..=Self::MAX_BURST).contains(&burst) {
            return Err(format!(
                "backchannel_logout_rate_limit.burst must be an integer from 1 to {}",
                Self::MAX_BURST
            ));
        }
        Ok(Self { per_second, burst })
    }

    /// The time between two deliveries at the limit's pace, in microseconds, rounded up so
    /// that the pace is never faster than asked (at least 1000, at most 10^9).
    pub fn interval_us(&self) -> i64 {
        let us = (1e6 / self.per_second).ceil();
        if us.is_finite() && us >= 1.0 {
            (us as i64).clamp(1, 1_000_000_000)
        } else {
            1_000_000_000
        }
    }
}

/// A client's ID-token encryption registration (OpenID Connect Dynamic Client Registration
/// 1.0 §2), which logoutd applies to its logout tokens: signed, then encrypted (a nested JWT,
/// OpenID Connect Core 1.0 §10.2). Every member is absent for a client that did not register
/// encryption.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct TokenEncryption {
    /// The key-management alg its logout tokens are encrypted with (OpenID Connect Dynamic
    /// Client Registration 1.0 §2); absent when they are not encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_encrypted_response_alg: Option<KeyAlg>,
    /// The content-encryption alg of its encrypted logout tokens; set whenever the alg is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_encrypted_response_enc: Option<ContentEnc>,
    /// Where its public keys are published (a JWK Set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uri)]
    pub jwks_uri: Option<Url>,
    /// Its public keys, inline (a JWK Set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
}

/// A registered relying party.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RelyingParty {
    /// The client_id; the `aud` of its logout tokens.
    pub client_id: ClientId,
    /// Display name.
    pub name: String,
    /// Back-channel logout settings.
    pub oidc_logout: OidcLogout,
    /// The RP requires `sid` in logout tokens (`backchannel_logout_session_required`).
    pub backchannel_logout_session_required: bool,
    /// The `typ` header its tokens carry.
    pub logout_token_typ: TokenTyp,
    /// The alg its tokens are signed with.
    pub id_token_signed_response_alg: SigningAlg,
    /// ID-token encryption of its logout tokens: top-level members, absent when unused.
    #[serde(flatten)]
    pub encryption: TokenEncryption,
    /// While paused, its deliveries stay pending and nothing is sent.
    pub paused: bool,
    /// Who paused it (`operator` or `health_policy`), while paused.
    #[serde(default)]
    pub paused_by: Option<PausedBy>,
    /// When it was paused, while paused.
    #[serde(default)]
    pub paused_at: Option<DateTime<Utc>>,
    /// Registration time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl RelyingParty {
    /// The back-channel logout URL, if one is registered.
    pub fn logout_url(&self) -> Option<&Url> {
        self.oidc_logout.backchannel_logout_urls.first()
    }

    /// Whether a session end with `initiator` produces a delivery for this client.
    pub fn wants(&self, initiator: Initiator) -> bool {
        self.logout_url().is_some()
            && self
                .oidc_logout
                .backchannel_logout_initiators
                .subscribes(initiator)
    }

    /// Whether its tokens carry `session_metadata`.
    pub fn includes_metadata(&self) -> bool {
        self.oidc_logout.backchannel_logout_session_metadata.include
    }

    /// The pace its deliveries are held to, if any.
    pub fn rate_limit(&self) -> Option<&RateLimit> {
        self.oidc_logout.backchannel_logout_rate_limit.as_ref()
    }

    /// The algorithms its logout tokens are encrypted with, when it registered encryption.
    pub fn encryption(&self) -> Option<(KeyAlg, ContentEnc)> {
        let settings = &self.encryption;
        let alg = settings.id_token_encrypted_response_alg?;
        Some((
            alg,
            settings.id_token_encrypted_response_enc.unwrap_or_default(),
        ))
    }

    /// Whether a user-wide end sends it one `sub` token for all the sessions it took part in.
    pub fn per_user(&self) -> bool {
        self.oidc_logout.backchannel_logout_user_wide == UserWide::PerUser
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn omitted_initiators_mean_every_initiator() {
        let default = LogoutInitiators::default();
        assert_eq!(default.mode, InitiatorMode::All);
        assert!(Initiator::ALL.into_iter().all(|i| default.subscribes(i)));
    }

    #[test]
    fn auth0_s_default_is_only_the_always_on_initiators() {
        let auth0 = LogoutInitiators::auth0_default();
        let told: Vec<Initiator> = Initiator::ALL
            .into_iter()
            .filter(|i| auth0.subscribes(*i))
            .collect();
        assert_eq!(told, Initiator::ALWAYS_ON);
        let explicit: LogoutInitiators =
            serde_json::from_str(r#"{"mode":"custom","selected_initiators":[]}"#).unwrap();
        assert!(!explicit.subscribes(Initiator::SessionRevoked));
        assert!(explicit.subscribes(Initiator::RpLogout));
    }

    #[test]
    fn a_registration_stored_without_the_user_wide_setting_is_per_session() {
        let stored: OidcLogout = serde_json::from_str(
            r#"{"backchannel_logout_urls":[],"backchannel_logout_initiators":{"mode":"all"},
                "backchannel_logout_session_metadata":{"include":false}}"#,
        )
        .unwrap();
        assert_eq!(stored.backchannel_logout_user_wide, UserWide::PerSession);
        let per_user: UserWide = serde_json::from_str(r#""per_user""#).unwrap();
        assert_eq!(per_user, UserWide::PerUser);
    }
}
