//! The nine Auth0 logout initiators: why a session ended.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Why a session ended, in Auth0's vocabulary.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Initiator {
    /// The RP asked for the logout (RP-initiated logout).
    RpLogout,
    /// The IdP ended the session (e.g. the user logged out at the IdP).
    IdpLogout,
    /// The user's password changed.
    PasswordChanged,
    /// The session reached its absolute or idle expiry.
    SessionExpired,
    /// An operator or the management API revoked the session.
    SessionRevoked,
    /// The user account was deleted.
    AccountDeleted,
    /// The user's email identifier changed.
    EmailIdentifierChanged,
    /// An MFA phone factor was removed.
    MfaPhoneUnenrolled,
    /// The user account was deactivated.
    AccountDeactivated,
}

impl Initiator {
    /// Every initiator.
    pub const ALL: [Initiator; 9] = [
        Self::RpLogout,
        Self::IdpLogout,
        Self::PasswordChanged,
        Self::SessionExpired,
        Self::SessionRevoked,
        Self::AccountDeleted,
        Self::EmailIdentifierChanged,
        Self::MfaPhoneUnenrolled,
        Self::AccountDeactivated,
    ];

    /// Initiators a `custom`-mode client always receives.
    pub const ALWAYS_ON: [Initiator; 2] = [Self::RpLogout, Self::IdpLogout];

    /// The Auth0 name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RpLogout => "rp-logout",
            Self::IdpLogout => "idp-logout",
            Self::PasswordChanged => "password-changed",
            Self::SessionExpired => "session-expired",
            Self::SessionRevoked => "session-revoked",
            Self::AccountDeleted => "account-deleted",
            Self::EmailIdentifierChanged => "email-identifier-changed",
            Self::MfaPhoneUnenrolled => "mfa-phone-unenrolled",
            Self::AccountDeactivated => "account-deactivated",
        }
    }
}

impl fmt::Display for Initiator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Initiator {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|i| i.as_str() == s)
            .ok_or_else(|| format!("unknown initiator {s:?}"))
    }
}
