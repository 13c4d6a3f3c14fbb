//! Unit tests of the config: the layers' precedence, the defaults, the checks and the
//! redacted store URL.

use super::validate::{connections_for_descriptors, delivery_nice, health_policy, millis};
use super::*;
use clap::Parser;

/// The knobs as `serve` parses them, without the rest of the command line.
#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    knobs: Knobs,
}

/// Loads settings (with `--dev`) from a config file holding `file`, the variables `vars` and
/// the flags `flags`.
fn load_from(file: &str, vars: &[(&str, &str)], flags: &[&str]) -> Result<Settings, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logoutd.toml");
    std::fs::write(&path, file).unwrap();
    let argv = std::iter::once("serve").chain(flags.iter().copied());
    let flags = Flags::try_parse_from(argv).unwrap().knobs;
    load(
        flags,
        Some(path),
        true,
        &Environment::from_vars(vars.iter().copied()),
    )
}

/// One knob set in the file, in its variable and by its flag: the flag wins, then the
/// variable, then the file, then the default; `read` shows the resolved value.
struct Layers<'a> {
    file: &'a str,
    var: (&'a str, &'a str),
    flag: [&'a str; 2],
}

impl Layers<'_> {
    /// What `read` shows with all three layers, without the flag, with the file alone and
    /// with none.
    fn resolve(&self, read: impl Fn(&Settings) -> String) -> [String; 4] {
        let all = load_from(self.file, &[self.var], &self.flag);
        let no_flag = load_from(self.file, &[self.var], &[]);
        let file = load_from(self.file, &[], &[]);
        let none = load_from("", &[], &[]);
        [all, no_flag, file, none].map(|settings| read(&settings.unwrap()))
    }
}

#[test]
fn a_flag_beats_its_variable_which_beats_the_file_which_beats_the_default() {
    let listen = Layers {
        file: "listen = \"127.0.0.1:1\"",
        var: ("LOGOUTD_LISTEN", "127.0.0.1:2"),
        flag: ["--listen", "127.0.0.1:3"],
    };
    assert_eq!(
        listen.resolve(|s| s.listen.to_string()),
        ["127.0.0.1:3", "127.0.0.1:2", "127.0.0.1:1", DEFAULT_LISTEN]
    );
    let in_flight = Layers {
        file: "max_in_flight = 11",
        var: ("LOGOUTD_MAX_IN_FLIGHT", "12"),
        flag: ["--max-in-flight", "13"],
    };
    assert_eq!(
        in_flight.resolve(|s| s.dispatch.max_in_flight.to_string()),
        ["13", "12", "11", &DEFAULT_MAX_IN_FLIGHT.to_string()]
    );
    let timeout = Layers {
        file: "attempt_timeout_ms = 1100",
        var: ("LOGOUTD_ATTEMPT_TIMEOUT_MS", "1200"),
        flag: ["--attempt-timeout-ms", "1300"],
    };
    assert_eq!(
        timeout.resolve(|s| format!("{:?}", s.sender.timeout)),
        [
            "1.3s",
            "1.2s",
            "1.1s",
            &format!("{:?}", crate::sender::DEFAULT_TIMEOUT)
        ]
    );
    let sweep = Layers {
        file: "expiry_sweep = false",
        var: ("LOGOUTD_EXPIRY_SWEEP", "true"),
        flag: ["--expiry-sweep", "false"],
    };
    assert_eq!(
        sweep.resolve(|s| s.housekeeping.expiry_sweep.to_string()),
        ["false", "true", "false", &DEFAULT_EXPIRY_SWEEP.to_string()]
    );
    let store = Layers {
        file: "store = \"sqlite://file.db\"",
        var: ("LOGOUTD_STORE", "sqlite://var.db"),
        flag: ["--store", "memory://"],
    };
    assert_eq!(
        store.resolve(|s| s.store.expose().to_owned()),
        [
            "memory://",
            "sqlite://var.db",
            "sqlite://file.db",
            DEFAULT_STORE
        ]
    );
}

#[test]
fn a_switch_is_on_when_any_layer_turns_it_on() {
    let insecure = |file: &str, vars: &[(&str, &str)], flags: &[&str]| {
        load_from(file, vars, flags).unwrap().net.allow_insecure
    };
    let var = "LOGOUTD_ALLOW_INSECURE_RP_URLS";
    assert!(!insecure("", &[], &[]));
    assert!(insecure("", &[], &["--allow-insecure-rp-urls"]));
    assert!(insecure("", &[(var, "true")], &[]));
    assert!(!insecure("", &[(var, "false")], &[]));
    assert!(insecure(
        "allow_insecure_rp_urls = true",
        &[(var, "false")],
        &[]
    ));
    let loose = load_from("", &[("LOGOUTD_ALLOW_LOOSE_KEY_PERMISSIONS", "true")], &[]);
    assert!(loose.unwrap().allow_loose_key_permissions);
}

#[test]
fn a_variable_that_does_not_read_as_its_type_is_named_in_the_error() {
    let err = load_from("", &[("LOGOUTD_MAX_IN_FLIGHT", "many")], &[]).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("LOGOUTD_MAX_IN_FLIGHT"), "{text}");
    let err = load_from("", &[("LOGOUTD_EXPIRY_SWEEP", "maybe")], &[]).unwrap_err();
    assert!(err.to_string().contains("LOGOUTD_EXPIRY_SWEEP"), "{err}");
}

#[test]
fn text_settings_from_variables_stay_text() {
    let settings = load_from("", &[("LOGOUTD_KEYS_DIR", "2026")], &[]).unwrap();
    assert_eq!(settings.keys_dir, PathBuf::from("2026"));
}

#[test]
fn file_only_keys_have_no_variable_and_other_variables_are_ignored() {
    let vars = [
        ("LOGOUTD_BODY_LIMIT_BYTES", "1"),
        ("LOGOUTD_LOG", "warn"),
        ("LOGOUTD_URL", "http://127.0.0.1:1"),
    ];
    let settings = load_from("", &vars, &[]).unwrap();
    assert_eq!(settings.body_limit, crate::api::DEFAULT_BODY_LIMIT);
    let settings = load_from("body_limit_bytes = 1", &vars, &[]).unwrap();
    assert_eq!(settings.body_limit, 1);
}

#[test]
fn unknown_file_keys_are_refused() {
    let err = load_from("listen = \"127.0.0.1:1\"\nnope = 1\n", &[], &[]).unwrap_err();
    let ConfigError::File { reason, .. } = &err else {
        panic!("expected a file error, got {err:?}");
    };
    assert!(reason.contains("unknown field `nope`"), "{reason}");
    assert!(reason.starts_with("line 2, column 1:"), "{reason}");
}

#[test]
fn an_explicit_config_file_must_exist_and_the_default_one_may_not() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    assert!(matches!(
        Knobs::from_file(&missing, true),
        Err(ConfigError::File { .. })
    ));
    assert!(Knobs::from_file(&missing, false).is_ok());
}

#[test]
fn the_defaults_shown_in_help_are_the_defaults_applied() {
    let env = Environment::default();
    let unset = Settings::from_knobs(Knobs::default(), true, &env).unwrap();
    let shown = Settings::from_knobs(Knobs::defaults(), true, &env).unwrap();
    assert_eq!(format!("{unset:?}"), format!("{shown:?}"));
}

#[test]
fn the_api_token_comes_from_the_environment_and_is_checked() {
    let strong = "0123456789abcdefghijklmnopqrstuv";
    let env = Environment::from_vars([(Environment::API_TOKEN, format!("  {strong}\n"))]);
    let settings = Settings::from_knobs(Knobs::default(), false, &env).unwrap();
    assert_eq!(settings.api_token.unwrap().expose(), strong);
    assert!(!settings.dev);
    let weak = Environment::from_vars([(Environment::API_TOKEN, "x")]);
    assert!(matches!(
        Settings::from_knobs(Knobs::default(), false, &weak),
        Err(ConfigError::WeakApiToken(_))
    ));
}

const SECRET: &str = "s3cret-pw";

#[test]
fn a_store_url_never_shows_its_password() {
    let url = StoreUrl::from(format!("postgres://app:{SECRET}@db.internal:5432/logoutd"));
    assert_eq!(
        url.to_string(),
        "postgres://app:redacted@db.internal:5432/logoutd"
    );
    assert!(!format!("{url:?}").contains(SECRET));
    assert!(url.expose().contains(SECRET));
    let query = StoreUrl::from(format!(
        "postgres://db.internal/logoutd?password={SECRET}&x=1"
    ));
    assert_eq!(
        query.to_string(),
        "postgres://db.internal/logoutd?password=redacted&x=1"
    );
    let unparsed = StoreUrl::from(format!("postgres://app:{SECRET}@db:notaport/logoutd"));
    assert_eq!(unparsed.to_string(), "postgres://[redacted]");
    let plain = StoreUrl::from("sqlite://data/logoutd.db");
    assert_eq!(plain.to_string(), "sqlite://data/logoutd.db");
}

#[test]
fn the_store_password_appears_in_no_settings_or_error() {
    let store = format!("postgres://app:{SECRET}@db.internal/logoutd");
    let settings = load_from("", &[("LOGOUTD_STORE", &store)], &[]).unwrap();
    assert!(!format!("{settings:?}").contains(SECRET));
    let env = Environment::from_vars([("LOGOUTD_STORE", store.as_str())]);
    assert!(!format!("{env:?}").contains(SECRET));
    let bad = load_from("", &[("LOGOUTD_STORE", &store)], &["--listen", "nowhere"]);
    assert!(!bad.unwrap_err().to_string().contains(SECRET));
    // A syntax error on the store's line does not quote the line.
    let broken = format!("store = \"{store}\nlisten = 1\n");
    let err = load_from(&broken, &[], &[]).unwrap_err().to_string();
    assert!(!err.contains(SECRET), "{err}");
}

#[tokio::test]
async fn a_store_that_cannot_be_opened_does_not_show_its_password() {
    let url = format!("mysql://app:{SECRET}@db.internal/logoutd");
    let err = crate::store::open(&url).await.err().unwrap();
    assert!(!err.to_string().contains(SECRET), "{err}");
}

#[test]
fn the_connection_cap_is_half_the_descriptor_limit_within_bounds() {
    assert_eq!(connections_for_descriptors(Some(256)), 128);
    assert_eq!(connections_for_descriptors(Some(1024)), 512);
    assert_eq!(connections_for_descriptors(Some(10)), MAX_CONNECTIONS_FLOOR);
    assert_eq!(
        connections_for_descriptors(Some(1 << 20)),
        MAX_CONNECTIONS_CEILING
    );
    assert_eq!(connections_for_descriptors(None), MAX_CONNECTIONS_CEILING);
}

#[test]
fn millis_refuses_zero_and_defaults_when_unset() {
    let default = Duration::from_secs(5);
    assert_eq!(millis("x", None, default).unwrap(), default);
    assert_eq!(
        millis("x", Some(200), default).unwrap(),
        Duration::from_millis(200)
    );
    assert!(millis("x", Some(0), default).is_err());
}

#[test]
fn the_health_policy_is_off_unless_min_failures_is_set() {
    assert_eq!(health_policy(None, Some(60)).unwrap(), None);
    let on = health_policy(Some(20), None).unwrap().unwrap();
    assert_eq!(on.min_failures, 20);
    assert_eq!(on.pause_after, chrono::Duration::hours(6));
    let now = health_policy(Some(3), Some(0)).unwrap().unwrap();
    assert_eq!(now.pause_after, chrono::Duration::zero());
    assert!(health_policy(Some(0), None).is_err());
    assert!(health_policy(Some(1), Some(u64::MAX)).is_err());
    let unset = Settings::from_knobs(Knobs::default(), true, &Environment::default()).unwrap();
    assert_eq!(unset.dispatch.health_policy, None);
}

#[test]
fn delivery_nice_defaults_to_ten_and_stays_within_0_to_19() {
    assert_eq!(delivery_nice(None).unwrap(), DEFAULT_DELIVERY_NICE);
    assert_eq!(delivery_nice(Some(0)).unwrap(), 0);
    assert_eq!(delivery_nice(Some(19)).unwrap(), 19);
    assert!(delivery_nice(Some(-1)).is_err());
    assert!(delivery_nice(Some(20)).is_err());
}

#[test]
fn the_configuration_reference_lists_every_key_with_its_default() {
    let doc = include_str!("../../../../docs/operations.md");
    let rows: Vec<Vec<&str>> = doc
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| line.split('|').collect())
        .collect();
    let row = |key: &str| {
        rows.iter()
            .find(|row| row[1].contains(&format!("`{key}`")))
            .unwrap_or_else(|| panic!("no row for {key} in docs/operations.md"))
    };
    let mut keys = super::knobs::flag_ids();
    keys.push("body_limit_bytes".to_owned());
    for key in &keys {
        row(key);
    }
    let serde_json::Value::Object(defaults) = serde_json::to_value(Knobs::defaults()).unwrap()
    else {
        panic!("the defaults are not a map");
    };
    for (key, value) in defaults {
        let text = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned);
        let shown = row(&key)[3];
        assert!(shown.contains(&format!("`{text}`")), "{key}: {shown}");
    }
}

#[test]
fn the_operator_webhook_needs_a_secret_and_follows_the_rp_url_policy() {
    let secret = crate::operator_events::WebhookSecret::generate();
    let var = ("LOGOUTD_OPERATOR_WEBHOOK_SECRET", secret.as_str());
    let hook = [
        "--operator-webhook-url",
        "https://hooks.example.test/logoutd",
    ];
    let settings = load_from("", &[var], &hook).unwrap();
    let webhook = settings.operator_webhook.as_ref().unwrap();
    assert_eq!(webhook.url.as_str(), "https://hooks.example.test/logoutd");
    assert!(!format!("{settings:?}").contains(&secret[6..]));
    assert!(load_from("", &[], &[]).unwrap().operator_webhook.is_none());
    let no_secret = load_from("", &[], &hook).unwrap_err().to_string();
    assert!(no_secret.contains("operator_webhook_url"), "{no_secret}");
    let no_url = load_from("", &[var], &[]).unwrap_err().to_string();
    assert!(no_url.contains("operator_webhook_secret"), "{no_url}");
    let bad = ("LOGOUTD_OPERATOR_WEBHOOK_SECRET", "not-a-secret");
    let refused = load_from("", &[bad], &hook).unwrap_err().to_string();
    assert!(
        refused.contains("whsec_") && !refused.contains("not-a-secret"),
        "{refused}"
    );
    let plain = ["--operator-webhook-url", "http://127.0.0.1:9/hook"];
    assert!(load_from("", &[var], &plain).is_err());
    let insecure = [
        "--operator-webhook-url",
        "http://127.0.0.1:9/hook",
        "--allow-insecure-rp-urls",
    ];
    assert!(
        load_from("", &[var], &insecure)
            .unwrap()
            .operator_webhook
            .is_some()
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("{secret}\n")).unwrap();
    let path = file.path().to_str().unwrap();
    let from_file = [hook[0], hook[1], "--operator-webhook-secret-file", path];
    assert!(
        load_from("", &[], &from_file)
            .unwrap()
            .operator_webhook
            .is_some()
    );
}

#[test]
fn ssf_is_off_by_default_and_needs_an_https_issuer_outside_tests() {
    let env = Environment::default();
    assert!(
        !Settings::from_knobs(Knobs::default(), true, &env)
            .unwrap()
            .ssf
    );
    let knobs = |issuer: &str, insecure: bool| Knobs {
        ssf: Some(true),
        issuer: Some(issuer.to_owned()),
        allow_insecure_rp_urls: insecure,
        ..Knobs::default()
    };
    let strong =
        Environment::from_vars([(Environment::API_TOKEN, "0123456789abcdefghijklmnopqrstuv")]);
    let refused = Settings::from_knobs(knobs("http://127.0.0.1:8080", false), false, &strong)
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("ssf") && refused.contains("https"),
        "{refused}"
    );
    assert!(
        Settings::from_knobs(knobs("https://logout.example.test", false), false, &strong)
            .unwrap()
            .ssf
    );
    assert!(
        Settings::from_knobs(knobs("http://127.0.0.1:8080", true), false, &strong)
            .unwrap()
            .ssf
    );
    assert!(
        Settings::from_knobs(knobs("http://127.0.0.1:8080", false), true, &env)
            .unwrap()
            .ssf
    );
}

#[test]
fn the_ssf_poll_lease_is_a_minute_by_default_and_at_least_a_second() {
    let env = Environment::default();
    let lease = |secs: Option<u64>| {
        let knobs = Knobs {
            ssf_poll_lease_seconds: secs,
            ..Knobs::default()
        };
        Settings::from_knobs(knobs, true, &env).map(|s| s.ssf_poll_lease)
    };
    assert_eq!(lease(None).unwrap(), Duration::from_secs(60));
    assert_eq!(lease(Some(2)).unwrap(), Duration::from_secs(2));
    assert_eq!(lease(Some(86_400)).unwrap(), Duration::from_secs(86_400));
    for refused in [0, 86_401] {
        let err = lease(Some(refused)).unwrap_err().to_string();
        assert!(err.contains("ssf_poll_lease_seconds"), "{err}");
    }
}
