//! The SSRF guard at connect time: a DNS resolver that drops non-public addresses.
//!
//! A registered host name may later resolve to a loopback, private or metadata address (DNS
//! rebinding, or a stale record). Filtering inside the resolver means the HTTP client never
//! opens a socket to such an address, whatever the registration check saw.

use crate::net_policy::NetPolicy;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};

/// Every address of a host was refused by the [`NetPolicy`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refused non-public address for host {host} ({addrs}); only public addresses are reached \
     unless serve runs with --allow-insecure-rp-urls"
)]
pub(crate) struct RefusedAddress {
    /// The host name, or the IP literal, that was refused.
    pub host: String,
    /// The refused addresses, comma separated.
    pub addrs: String,
}

impl RefusedAddress {
    /// A refusal of `host`, listing the addresses it resolved to.
    pub(crate) fn new(host: &str, ips: impl IntoIterator<Item = IpAddr>) -> Self {
        let addrs: Vec<String> = ips.into_iter().map(|ip| ip.to_string()).collect();
        Self {
            host: host.to_owned(),
            addrs: addrs.join(", "),
        }
    }
}

/// Resolves with the system resolver, then keeps only the addresses the policy allows.
#[derive(Debug, Clone, Copy)]
pub(super) struct GuardedResolver {
    pub(super) policy: NetPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
                found.into_iter().partition(|a| policy.may_connect(a.ip()));
            if allowed.is_empty() && !refused.is_empty() {
                let refusal = RefusedAddress::new(&host, refused.iter().map(SocketAddr::ip));
                return Err(refusal.into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}
