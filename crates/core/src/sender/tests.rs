//! Unit tests of the parts of the sender that need no socket.

use super::*;

fn strict() -> NetPolicy {
    NetPolicy::default()
}

fn open() -> NetPolicy {
    NetPolicy {
        allow_insecure: true,
    }
}

fn url(raw: &str) -> Url {
    Url::parse(raw).unwrap()
}

#[test]
fn form_body_is_one_urlencoded_parameter() {
    assert_eq!(form_body("a.b-c_d"), "logout_token=a.b-c_d");
    assert_eq!(form_body("a+b/c= &x"), "logout_token=a%2Bb%2Fc%3D+%26x");
}

#[test]
fn form_body_matches_form_urlencoding_for_every_ascii_character() {
    for b in 0u8..128 {
        let token = format!("ab{}cd", char::from(b));
        let expected: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
        assert_eq!(
            form_body(&token),
            format!("logout_token={expected}"),
            "byte {b}"
        );
    }
}

#[test]
fn precheck_refuses_non_public_ip_literals() {
    for raw in [
        "https://127.0.0.1/x",
        "https://10.0.0.1/x",
        "https://169.254.169.254/latest",
        "https://[::1]/x",
        "https://[::ffff:127.0.0.1]/x",
    ] {
        let refusal = precheck(strict(), &url(raw));
        assert!(
            matches!(&refusal, Some(Outcome::Refused(m)) if m.contains("non-public")),
            "{raw}: {refusal:?}"
        );
    }
    assert_eq!(precheck(strict(), &url("https://93.184.216.34/x")), None);
    assert_eq!(precheck(strict(), &url("https://rp.example.test/x")), None);
}

#[test]
fn precheck_refuses_plain_http_unless_insecure_is_allowed() {
    let refusal = precheck(strict(), &url("http://rp.example.test/x"));
    assert!(matches!(refusal, Some(Outcome::Refused(_))), "{refusal:?}");
    assert_eq!(precheck(open(), &url("http://127.0.0.1:9/x")), None);
    let ftp = precheck(open(), &url("ftp://127.0.0.1/x"));
    assert!(matches!(ftp, Some(Outcome::Refused(_))), "{ftp:?}");
}

#[test]
fn config_rejects_zero_timeout_and_bad_user_agent() {
    let zero = SenderConfig {
        timeout: Duration::ZERO,
        ..SenderConfig::default()
    };
    assert!(matches!(Sender::new(zero), Err(SenderError::ZeroTimeout)));
    let bad = SenderConfig {
        user_agent: "bad\nagent".into(),
        ..SenderConfig::default()
    };
    assert!(matches!(Sender::new(bad), Err(SenderError::BadUserAgent)));
    assert!(Sender::new(SenderConfig::default()).is_ok());
}

fn literal_url(ip: IpAddr) -> Url {
    match ip {
        IpAddr::V4(v4) => url(&format!("https://{v4}/bc")),
        IpAddr::V6(v6) => url(&format!("https://[{v6}]/bc")),
    }
}

#[test]
fn precheck_refuses_every_special_purpose_block() {
    for (ip, name) in crate::net_policy::refused_samples() {
        let refusal = precheck(strict(), &literal_url(ip));
        assert!(
            matches!(&refusal, Some(Outcome::Refused(m)) if m.contains("non-public")),
            "{ip} ({name}): {refusal:?}"
        );
    }
    for ip in crate::net_policy::public_samples() {
        assert_eq!(precheck(strict(), &literal_url(ip)), None, "{ip}");
    }
}

#[tokio::test]
async fn the_resolver_drops_every_special_purpose_address() {
    use reqwest::dns::Resolve as _;
    let resolver = resolve::GuardedResolver { policy: strict() };
    for (ip, name) in crate::net_policy::refused_samples() {
        let host: reqwest::dns::Name = ip.to_string().parse().unwrap();
        let err = match resolver.resolve(host).await {
            Ok(addrs) => panic!("{ip} ({name}) resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(err) => err.to_string(),
        };
        assert!(
            err.contains("refused non-public address") && err.contains("--allow-insecure-rp-urls"),
            "{ip} ({name}): {err}"
        );
    }
    for ip in crate::net_policy::public_samples() {
        let host: reqwest::dns::Name = ip.to_string().parse().unwrap();
        let addrs: Vec<_> = resolver.resolve(host).await.unwrap().collect();
        assert_eq!(addrs.iter().map(|a| a.ip()).collect::<Vec<_>>(), [ip]);
    }
}

#[test]
fn a_refused_scheme_names_what_would_allow_it() {
    let refused = |raw: &str| match precheck(strict(), &url(raw)) {
        Some(Outcome::Refused(reason)) => reason,
        other => panic!("{raw}: {other:?}"),
    };
    let http = refused("http://rp.example/bc");
    assert!(http.contains("--allow-insecure-rp-urls"), "{http}");
    let ftp = refused("ftp://rp.example/bc");
    assert!(
        ftp.contains("use https") && !ftp.contains("--allow"),
        "{ftp}"
    );
    assert!(precheck(open(), &url("http://rp.example/bc")).is_none());
}
