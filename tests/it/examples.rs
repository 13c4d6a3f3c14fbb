//! The README's scripts and the examples run as a newcomer would run them: the `logoutd` under
//! test first on `PATH`, everything on loopback. The README shows each script verbatim, so what
//! is tested here is what a reader copies.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap()
}

/// The script without its shebang and its one-line summary: the part the README shows.
fn script_body(path: &str) -> String {
    read(path).lines().skip(2).collect::<Vec<_>>().join("\n")
}

/// `PATH` with the directory of the binary under test first.
fn path_with_logoutd() -> String {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_logoutd"));
    let dir = bin.parent().unwrap().display().to_string();
    format!("{dir}:{}", std::env::var("PATH").unwrap_or_default())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether the tools the scripts call are installed; under `CI=true` their absence fails.
fn tools_present(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|tool| {
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .map(|out| !out.status.success())
                .unwrap_or(true)
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but {missing:?} are not installed"
    );
    eprintln!("SKIPPED: the README scripts need {missing:?}");
    false
}

fn run_script(path: &str, env: &[(&str, String)]) -> Output {
    let mut command = Command::new("bash");
    command
        .arg(repo().join(path))
        .env("PATH", path_with_logoutd());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn readme_shows_the_scripts_verbatim() {
    let readme = read("README.md");
    for script in ["examples/walkthrough.sh", "examples/receiving.sh"] {
        assert!(
            readme.contains(&script_body(script)),
            "README.md must show {script} from its third line on, verbatim"
        );
    }
}

#[test]
fn walkthrough_delivers_to_the_mock_rp() {
    if !tools_present(&["curl", "jq"]) {
        return;
    }
    let listen = format!("127.0.0.1:{}", free_port());
    let out = run_script("examples/walkthrough.sh", &[("LOGOUTD_LISTEN", listen)]);
    assert_success("examples/walkthrough.sh", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(r#""deliveries":1"#), "{stdout}");
    let last: Vec<&str> = stdout.lines().rev().take(2).collect();
    assert_eq!(last, ["delivered", "true"], "{stdout}");
}

#[test]
fn receiving_script_validates_its_token() {
    if !tools_present(&["curl", "jq", "python3"]) {
        return;
    }
    let out = run_script(
        "examples/receiving.sh",
        &[("JWKS_PORT", free_port().to_string())],
    );
    assert_success("examples/receiving.sh", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("HTTP/1.1 200"), "{stdout}");
    assert_eq!(stdout.lines().last(), Some("true"), "{stdout}");
}

/// The scripts' receipt assertion must fail when the mock RP is down and nothing comes back,
/// not pass on empty input as `jq -e` alone does.
#[test]
fn receipt_assertion_fails_without_a_receiver() {
    if !tools_present(&["curl", "jq"]) {
        return;
    }
    let script = read("examples/receiving.sh");
    let assertion = script
        .lines()
        .find(|line| line.contains("/receipts?"))
        .unwrap();
    let closed = format!("http://127.0.0.1:{}", free_port());
    let out = Command::new("bash")
        .args(["-c", &format!("set -euo pipefail; {assertion}")])
        .env("RP", closed)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{assertion} passed with no receiver");
    let out = Command::new("bash")
        .args([
            "-c",
            "set -euo pipefail; printf '' | jq -se '.[0] | length == 1 and all(.valid)'",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the jq check passed on empty input");
}

/// `examples/oidc-provider`: panva's oidc-provider as the IdP, logoutd doing its back-channel
/// logout, checked by a receiver built on an independent JOSE library. `.ci/run` installs its
/// packages with `npm ci`; elsewhere the test is skipped until they are installed.
#[test]
fn oidc_provider_example_passes() {
    let dir = repo().join("examples/oidc-provider");
    if !dir.join("node_modules").exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but examples/oidc-provider has no node_modules: run `npm ci` there"
        );
        eprintln!("SKIPPED: examples/oidc-provider (run `npm ci` in it first)");
        return;
    }
    let out = Command::new("npm")
        .arg("test")
        .current_dir(&dir)
        .env("LOGOUTD_BIN", env!("CARGO_BIN_EXE_logoutd"))
        .output()
        .unwrap();
    assert_success("npm test in examples/oidc-provider", &out);
}

/// The benchmark scripts are not run here (they take minutes and build in release), but they
/// must parse: `bash -n` for the side-by-side script and `node --check` for its peer.
#[test]
fn benchmark_scripts_parse() {
    let out = Command::new("bash")
        .arg("-n")
        .arg(repo().join("benches/compare.sh"))
        .output()
        .unwrap();
    assert_success("bash -n benches/compare.sh", &out);
    if !tools_present(&["node"]) {
        return;
    }
    let out = Command::new("node")
        .arg("--check")
        .arg(repo().join("benches/oidc-provider/bench.mjs"))
        .output()
        .unwrap();
    assert_success("node --check benches/oidc-provider/bench.mjs", &out);
}
