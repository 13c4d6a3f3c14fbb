//! Which back-channel logout URLs and peer addresses logoutd may talk to.
//!
//! By default only `https` URLs whose host is public are accepted, and the sender refuses to
//! connect to a non-public address even when DNS has changed since registration. An operator
//! can relax both with `--allow-insecure-rp-urls` (tests and demos).

mod special;

#[cfg(test)]
pub(crate) use special::tests::{public_samples, refused_samples};

use std::net::IpAddr;
use url::{Host, Url};

/// Longest accepted URL, in bytes.
pub(crate) const MAX_URL_LEN: usize = 2048;

/// Why a back-channel logout URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not an absolute URL.
    #[error("backchannel_logout_urls entries must be absolute URLs")]
    Malformed,
    /// Longer than [`MAX_URL_LEN`].
    #[error("backchannel_logout_urls entries must be at most {MAX_URL_LEN} characters")]
    TooLong,
    /// Carries a `#fragment`.
    #[error("backchannel_logout_urls entries must not contain a fragment")]
    Fragment,
    /// Carries `user:password@`.
    #[error("backchannel_logout_urls entries must not contain credentials")]
    Credentials,
    /// A scheme other than https and http.
    #[error("backchannel_logout_urls entries must use https")]
    NotHttps,
    /// Plain http, while insecure URLs are not allowed.
    #[error(
        "backchannel_logout_urls entries must use https; plain http is accepted only when \
         logoutd runs with --allow-insecure-rp-urls (LOGOUTD_ALLOW_INSECURE_RP_URLS=true), \
         meant for tests and demos"
    )]
    PlainHttp,
    /// The host is loopback, private, link-local, unique-local or a metadata service.
    #[error(
        "backchannel_logout_urls entries must not point at loopback, private, link-local or \
         metadata addresses; such URLs are accepted only when logoutd runs with \
         --allow-insecure-rp-urls (LOGOUTD_ALLOW_INSECURE_RP_URLS=true), meant for tests and \
         demos"
    )]
    NonPublicHost,
}

/// The operator's choice about insecure RP URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NetPolicy {
    /// Allow `http` and non-public hosts (`--allow-insecure-rp-urls`).
    pub allow_insecure: bool,
}

impl NetPolicy {
    /// Parses and checks a back-channel logout URL at registration time.
    pub fn validate_url(self, raw: &str) -> Result<Url, UrlError> {
        if raw.len() > MAX_URL_LEN {
            return Err(UrlError::TooLong);
        }
        let url = Url::parse(raw).map_err(|_| UrlError::Malformed)?;
        if url.cannot_be_a_base() || url.host().is_none() {
            return Err(UrlError::Malformed);
        }
        if url.fragment().is_some() {
            return Err(UrlError::Fragment);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::Credentials);
        }
        match url.scheme() {
            "https" => {}
            "http" if self.allow_insecure => {}
            "http" => return Err(UrlError::PlainHttp),
            _ => return Err(UrlError::NotHttps),
        }
        if !self.allow_insecure && !host_is_public(&url) {
            return Err(UrlError::NonPublicHost);
        }
        Ok(url)
    }

    /// Whether the sender may connect to `ip`.
    pub fn may_connect(self, ip: IpAddr) -> bool {
        self.allow_insecure || is_public_ip(ip)
    }
}

fn host_is_public(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(v4)) => is_public_ip(IpAddr::V4(v4)),
        Some(Host::Ipv6(v6)) => is_public_ip(IpAddr::V6(v6)),
        Some(Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            !(name == "localhost"
                || name.ends_with(".localhost")
                || name == "metadata.google.internal"
                || name.ends_with(".internal")
                || name.ends_with(".local"))
        }
        None => false,
    }
}

/// True for globally routable unicast addresses; false for every block of the IANA
/// special-purpose address registries (RFC 6890) and the other non-global blocks listed in
/// `special`: loopback, private, shared (CGN), link-local (including 169.254.169.254
/// metadata services), unique-local, site-local, multicast, documentation, benchmarking,
/// unspecified, 6to4, Teredo and local-use NAT64 addresses. IPv4-mapped and NAT64
/// well-known-prefix addresses are judged by the IPv4 address they embed.
pub(crate) fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => special::is_public_v4(v4),
        IpAddr::V6(v6) => special::is_public_v6(v6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> NetPolicy {
        NetPolicy::default()
    }

    #[test]
    fn https_public_url_keeps_its_query() {
        let url = strict()
            .validate_url("https://rp.example.com/bc?tenant=a&x=1")
            .unwrap();
        assert_eq!(url.query(), Some("tenant=a&x=1"));
    }

    #[test]
    fn refuses_what_the_contract_refuses() {
        for (raw, err) in [
            ("not a url", UrlError::Malformed),
            ("/relative", UrlError::Malformed),
            ("https://rp.example.com/x#frag", UrlError::Fragment),
            ("http://rp.example.com/x", UrlError::PlainHttp),
            ("ftp://rp.example.com/x", UrlError::NotHttps),
            ("https://u:p@rp.example.com/x", UrlError::Credentials),
            ("https://127.0.0.1/x", UrlError::NonPublicHost),
            ("https://localhost/x", UrlError::NonPublicHost),
            ("https://10.1.2.3/x", UrlError::NonPublicHost),
            ("https://192.168.0.1/x", UrlError::NonPublicHost),
            ("https://169.254.169.254/latest", UrlError::NonPublicHost),
            ("https://[::1]/x", UrlError::NonPublicHost),
            ("https://[fd00::1]/x", UrlError::NonPublicHost),
            ("https://[fe80::1]/x", UrlError::NonPublicHost),
            ("https://[::ffff:127.0.0.1]/x", UrlError::NonPublicHost),
            (
                "https://metadata.google.internal/x",
                UrlError::NonPublicHost,
            ),
        ] {
            assert_eq!(strict().validate_url(raw), Err(err), "{raw}");
        }
    }

    #[test]
    fn refusals_the_override_lifts_name_it_and_others_do_not() {
        let named = |raw: &str| {
            let err = strict().validate_url(raw).unwrap_err().to_string();
            err.contains("--allow-insecure-rp-urls")
        };
        assert!(named("http://rp.example.com/x"));
        assert!(named("https://127.0.0.1/x"));
        assert!(named("https://10.1.2.3/x"));
        assert!(!named("ftp://rp.example.com/x"));
        assert!(!named("https://rp.example.com/x#frag"));
    }

    #[test]
    fn operator_override_allows_loopback_http() {
        let open = NetPolicy {
            allow_insecure: true,
        };
        assert!(open.validate_url("http://127.0.0.1:9000/logout").is_ok());
        assert_eq!(
            open.validate_url("http://127.0.0.1/x#f"),
            Err(UrlError::Fragment)
        );
        assert!(open.may_connect("127.0.0.1".parse().unwrap()));
        assert!(!strict().may_connect("127.0.0.1".parse().unwrap()));
        assert!(strict().may_connect("93.184.216.34".parse().unwrap()));
    }
}
