//! Which IP addresses are special-purpose, and so never a back-channel logout endpoint.
//!
//! The lists follow the IANA registries, as RFC 6890 ("Special-Purpose IP Address
//! Registries") set them up and later RFCs extended them:
//!
//! - the IANA IPv4 Special-Purpose Address Registry;
//! - the IANA IPv6 Special-Purpose Address Registry;
//! - the IANA IPv6 Address Space registry, where only `2000::/3` is allocated as global
//!   unicast and the rest is reserved, multicast, link-local, unique-local or the deprecated
//!   site-local block;
//! - the IANA IPv4 Multicast Address Space registry (`224.0.0.0/4`).
//!
//! Every block of the special-purpose registries is refused, including those the registry
//! marks globally reachable (AS112, AMT, anycast relays): none hosts an RP. Two translation
//! prefixes carry an IPv4 address that decides instead: IPv4-mapped `::ffff:0:0/96` and the
//! NAT64 well-known prefix `64:ff9b::/96` (RFC 6052) are as public as the IPv4 address they
//! embed. Other NAT64 forms are refused: `64:ff9b:1::/48` (RFC 8215, local use) explicitly,
//! and network-specific prefixes cannot be told apart from ordinary addresses. 6to4
//! (`2002::/16`) and Teredo (`2001::/32`) are refused whatever they embed, since the relay
//! they reach is not the address written.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

/// IPv4 blocks refused, in the registry's notation: the IANA IPv4 Special-Purpose Address
/// Registry, plus multicast.
const V4_REFUSED: &[(&str, &str)] = &[
    ("0.0.0.0/8", "\"This network\" (RFC 791 §3.2)"),
    ("10.0.0.0/8", "Private-Use (RFC 1918)"),
    ("100.64.0.0/10", "Shared Address Space (RFC 6598)"),
    ("127.0.0.0/8", "Loopback (RFC 1122 §3.2.1.3)"),
    (
        "169.254.0.0/16",
        "Link Local (RFC 3927), cloud metadata services",
    ),
    ("172.16.0.0/12", "Private-Use (RFC 1918)"),
    ("192.0.0.0/24", "IETF Protocol Assignments (RFC 6890 §2.1)"),
    ("192.0.2.0/24", "Documentation, TEST-NET-1 (RFC 5737)"),
    ("192.31.196.0/24", "AS112-v4 (RFC 7535)"),
    ("192.52.193.0/24", "AMT (RFC 7450)"),
    ("192.88.99.0/24", "Deprecated 6to4 Relay Anycast (RFC 7526)"),
    ("192.168.0.0/16", "Private-Use (RFC 1918)"),
    (
        "192.175.48.0/24",
        "Direct Delegation AS112 Service (RFC 7534)",
    ),
    ("198.18.0.0/15", "Benchmarking (RFC 2544)"),
    ("198.51.100.0/24", "Documentation, TEST-NET-2 (RFC 5737)"),
    ("203.0.113.0/24", "Documentation, TEST-NET-3 (RFC 5737)"),
    ("224.0.0.0/4", "Multicast (RFC 5771)"),
    ("240.0.0.0/4", "Reserved (RFC 1112 §4)"),
    ("255.255.255.255/32", "Limited Broadcast (RFC 919 §7)"),
];

/// IPv6 blocks refused: the IANA IPv6 Special-Purpose Address Registry, and the IPv6 Address
/// Space registry's non-global blocks. Everything outside `2000::/3` is refused as well.
const V6_REFUSED: &[(&str, &str)] = &[
    ("::/128", "Unspecified (RFC 4291)"),
    ("::1/128", "Loopback (RFC 4291)"),
    ("::/96", "IPv4-compatible, deprecated (RFC 4291 §2.5.5.1)"),
    (
        "64:ff9b:1::/48",
        "IPv4-IPv6 Translation, local use (RFC 8215)",
    ),
    ("100::/64", "Discard-Only (RFC 6666)"),
    ("100:0:0:1::/64", "Dummy IPv6 Prefix (RFC 9780)"),
    ("2001::/23", "IETF Protocol Assignments (RFC 2928)"),
    ("2001::/32", "TEREDO (RFC 4380)"),
    ("2001:2::/48", "Benchmarking (RFC 5180)"),
    ("2001:db8::/32", "Documentation (RFC 3849)"),
    ("2002::/16", "6to4 (RFC 3056)"),
    (
        "2620:4f:8000::/48",
        "Direct Delegation AS112 Service (RFC 7534)",
    ),
    ("3fff::/20", "Documentation (RFC 9637)"),
    ("5f00::/16", "Segment Routing SIDs (RFC 9602)"),
    ("fc00::/7", "Unique-Local (RFC 4193)"),
    ("fe80::/10", "Link-Local Unicast (RFC 4291)"),
    ("fec0::/10", "Site-Local, deprecated (RFC 3879)"),
    ("ff00::/8", "Multicast (RFC 4291)"),
];

/// The IPv4-IPv6 translation well-known prefix `64:ff9b::/96` (RFC 6052).
const NAT64_WELL_KNOWN: (u128, u8) = (0x0064_ff9b << 96, 96);
/// Global unicast, `2000::/3` (IANA IPv6 Address Space registry).
const GLOBAL_UNICAST: (u128, u8) = (0x2000 << 112, 3);

/// `(first address, prefix length)` of `net/len`; `None` when it does not parse.
fn parse_block<T: std::str::FromStr>(block: &str) -> Option<(T, u8)> {
    let (net, len) = block.split_once('/')?;
    Some((net.parse().ok()?, len.parse().ok()?))
}

static V4_BLOCKS: LazyLock<Vec<(u32, u8)>> = LazyLock::new(|| {
    V4_REFUSED
        .iter()
        .filter_map(|(block, _)| parse_block::<Ipv4Addr>(block))
        .map(|(net, len)| (u32::from(net), len))
        .collect()
});

static V6_BLOCKS: LazyLock<Vec<(u128, u8)>> = LazyLock::new(|| {
    V6_REFUSED
        .iter()
        .filter_map(|(block, _)| parse_block::<Ipv6Addr>(block))
        .map(|(net, len)| (u128::from(net), len))
        .collect()
});

fn in_v4(ip: u32, (net, len): (u32, u8)) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    ip & mask == net & mask
}

fn in_v6(ip: u128, (net, len): (u128, u8)) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    ip & mask == net & mask
}

/// True for an IPv4 address outside every refused block.
pub(super) fn is_public_v4(ip: Ipv4Addr) -> bool {
    let ip = u32::from(ip);
    !V4_BLOCKS.iter().any(|block| in_v4(ip, *block))
}

/// True for a global unicast IPv6 address outside every refused block, or a translation
/// address (IPv4-mapped, NAT64 well-known prefix) whose IPv4 address is public.
pub(super) fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(embedded) = ip.to_ipv4_mapped() {
        return is_public_v4(embedded);
    }
    let bits = u128::from(ip);
    if in_v6(bits, NAT64_WELL_KNOWN) {
        let [.., a, b, c, d] = ip.octets();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    in_v6(bits, GLOBAL_UNICAST) && !V6_BLOCKS.iter().any(|block| in_v6(bits, *block))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::net::IpAddr;

    /// The first, a middle and the last address of a block.
    fn v4_samples(block: &str) -> [Ipv4Addr; 3] {
        let (net, len) = parse_block::<Ipv4Addr>(block).unwrap();
        let size = 1u64 << (32 - u32::from(len));
        let first = u64::from(u32::from(net));
        let at = |offset: u64| Ipv4Addr::from(u32::try_from(first + offset).unwrap());
        [at(0), at(size / 2), at(size - 1)]
    }

    fn v6_samples(block: &str) -> [Ipv6Addr; 3] {
        let (net, len) = parse_block::<Ipv6Addr>(block).unwrap();
        let host_bits = 128 - u32::from(len);
        let last = if host_bits == 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        let first = u128::from(net);
        [
            net,
            Ipv6Addr::from(first | ((last / 2 + 1) & last)),
            Ipv6Addr::from(first | last),
        ]
    }

    /// Addresses of every refused block (three per block), and of the translation forms
    /// that embed a non-public IPv4 address. Shared with the connect-time tests.
    pub(crate) fn refused_samples() -> Vec<(IpAddr, &'static str)> {
        let mut out = Vec::new();
        for (block, name) in V4_REFUSED {
            out.extend(v4_samples(block).map(|ip| (IpAddr::V4(ip), *name)));
        }
        for (block, name) in V6_REFUSED {
            out.extend(v6_samples(block).map(|ip| (IpAddr::V6(ip), *name)));
        }
        for (raw, name) in [
            ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
            ("::ffff:10.1.2.3", "IPv4-mapped private"),
            ("::ffff:169.254.169.254", "IPv4-mapped metadata"),
            ("64:ff9b::7f00:1", "NAT64 of loopback"),
            ("64:ff9b::a9fe:a9fe", "NAT64 of the metadata address"),
            ("64:ff9b::c0a8:1", "NAT64 of 192.168.0.1"),
            ("2002:7f00:1::", "6to4 of 127.0.0.1"),
            ("2002:808:808::1", "6to4 of a public address"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
            ("::8.8.8.8", "IPv4-compatible"),
            ("400::1", "reserved by the IETF, outside 2000::/3"),
            ("4000::1", "reserved by the IETF, outside 2000::/3"),
            ("e000::1", "reserved by the IETF, outside 2000::/3"),
        ] {
            out.push((raw.parse().unwrap(), name));
        }
        out
    }

    /// Public addresses next to refused blocks, which must stay allowed.
    pub(crate) fn public_samples() -> Vec<IpAddr> {
        [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "192.0.1.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.254",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2001:200::1",
            "2003::1",
            "2620:4f:7fff::1",
            "2a00:1450:4001::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ]
        .iter()
        .map(|raw| raw.parse().unwrap())
        .collect()
    }

    #[test]
    fn every_special_purpose_block_is_refused() {
        for (ip, name) in refused_samples() {
            let public = match ip {
                IpAddr::V4(v4) => is_public_v4(v4),
                IpAddr::V6(v6) => is_public_v6(v6),
            };
            assert!(!public, "{ip} ({name}) passed as public");
        }
    }

    #[test]
    fn public_neighbours_of_the_blocks_are_allowed() {
        for ip in public_samples() {
            let public = match ip {
                IpAddr::V4(v4) => is_public_v4(v4),
                IpAddr::V6(v6) => is_public_v6(v6),
            };
            assert!(public, "{ip} was refused");
        }
    }

    #[test]
    fn registration_refuses_every_block_and_keeps_public_ones() {
        let policy = super::super::NetPolicy::default();
        let url = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => format!("https://{v4}/bc"),
            IpAddr::V6(v6) => format!("https://[{v6}]/bc"),
        };
        for (ip, name) in refused_samples() {
            let refused = policy.validate_url(&url(ip));
            assert_eq!(
                refused,
                Err(super::super::UrlError::NonPublicHost),
                "{ip} ({name})"
            );
            assert!(!policy.may_connect(ip), "{ip} ({name})");
        }
        for ip in public_samples() {
            assert!(policy.validate_url(&url(ip)).is_ok(), "{ip}");
            assert!(policy.may_connect(ip), "{ip}");
        }
    }

    #[test]
    fn every_block_parses_and_sits_on_its_prefix() {
        assert_eq!(V4_BLOCKS.len(), V4_REFUSED.len());
        assert_eq!(V6_BLOCKS.len(), V6_REFUSED.len());
        for (net, len) in V4_BLOCKS.iter() {
            assert!(in_v4(*net, (*net, *len)) && *len <= 32);
            assert_eq!(
                net & !u32::MAX.checked_shl(32 - u32::from(*len)).unwrap_or(0),
                0
            );
        }
        for (net, len) in V6_BLOCKS.iter() {
            assert!(*len <= 128);
            assert_eq!(
                net & !u128::MAX.checked_shl(128 - u32::from(*len)).unwrap_or(0),
                0
            );
        }
        let nat64: Ipv6Addr = "64:ff9b::".parse().unwrap();
        assert_eq!(NAT64_WELL_KNOWN.0, u128::from(nat64));
        let global: Ipv6Addr = "2000::".parse().unwrap();
        assert_eq!(GLOBAL_UNICAST.0, u128::from(global));
    }
}
