//! The summary of `benches/compare.sh`: reads the result lines of oidc-provider's runs
//! (`peer oidc-provider ...`, one per in-flight setting) and of logoutd's (`deliver ...`, as
//! `logoutd serve` and in process), compares logoutd with the peer's best figure of the sweep
//! for each measure, and refuses the run when the receiver kept a core busy, since a
//! saturated receiver caps whoever delivers into it.

/// The receiver's share of one core, in percent, above which a run is refused.
pub const SATURATED_PERCENT: f64 = 90.0;

/// One result line's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// `oidc-provider in-flight=K`, `logoutd serve` or `logoutd in-process`.
    pub label: String,
    /// Whether it is a logoutd run.
    pub logoutd: bool,
    /// Deliveries per second.
    pub rate: f64,
    /// CPU per delivery of the delivering process(es), µs.
    pub cpu_us: f64,
    /// Raw signature cost measured around the run, µs (logoutd's lines).
    pub raw_sig_us: Option<f64>,
    /// The receiver's CPU per delivery, µs.
    pub sink_cpu_us: Option<f64>,
    /// The receiver's share of one core over the run, percent.
    pub sink_core_percent: Option<f64>,
}

/// The number in `key=NUMBER[unit]` among a line's space-separated fields.
pub fn field(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace().find_map(|item| {
        let value = item.strip_prefix(key)?.strip_prefix('=')?;
        let end = value
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(value.len());
        value.get(..end)?.parse().ok()
    })
}

/// The text in `key=TEXT` among a line's space-separated fields.
fn text<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|item| item.strip_prefix(key)?.strip_prefix('='))
}

/// The figures of a result line, or `None` for any other line.
pub fn parse(line: &str) -> Option<Run> {
    let (label, logoutd) = if line.starts_with("peer oidc-provider ") {
        let in_flight = text(line, "in_flight").unwrap_or("?");
        (format!("oidc-provider in-flight={in_flight}"), false)
    } else if line.starts_with("deliver ") {
        let process = text(line, "process").unwrap_or("in-process");
        (format!("logoutd {process}"), true)
    } else {
        return None;
    };
    Some(Run {
        label,
        logoutd,
        rate: field(line, "deliveries/s")?,
        cpu_us: field(line, "cpu/delivery")?,
        raw_sig_us: field(line, "raw_sig"),
        sink_cpu_us: field(line, "sink_cpu/delivery"),
        sink_core_percent: field(line, "sink_core"),
    })
}

/// The summary lines of the result lines in `output`, or why the run does not count: a side
/// is missing, or the receiver did not report its CPU or saturated a core.
pub fn summarize(output: &str) -> anyhow::Result<Vec<String>> {
    let runs: Vec<Run> = output.lines().filter_map(parse).collect();
    check_receiver(&runs)?;
    let (peers, ours): (Vec<&Run>, Vec<&Run>) = runs.iter().partition(|r| !r.logoutd);
    let fastest = peers
        .iter()
        .copied()
        .max_by(|a, b| a.rate.total_cmp(&b.rate))
        .ok_or_else(|| anyhow::anyhow!("no oidc-provider result line"))?;
    let leanest = peers
        .iter()
        .copied()
        .min_by(|a, b| a.cpu_us.total_cmp(&b.cpu_us))
        .unwrap_or(fastest);
    anyhow::ensure!(!ours.is_empty(), "no logoutd result line");
    let mut lines = vec![format!(
        "oidc-provider best: {:.0} deliveries/s ({}), {:.0}us cpu/delivery ({})",
        fastest.rate, fastest.label, leanest.cpu_us, leanest.label
    )];
    for run in ours {
        lines.push(against(run, fastest, leanest));
    }
    lines.push(receiver_line(&runs));
    Ok(lines)
}

/// One logoutd run against the peer's fastest and leanest runs.
fn against(run: &Run, fastest: &Run, leanest: &Run) -> String {
    let raw = run.raw_sig_us.map_or(String::new(), |raw| {
        format!(
            ", {:.2}x its raw signature ({raw:.0}us)",
            run.cpu_us / raw.max(1e-9)
        )
    });
    format!(
        "{}: {:.0} deliveries/s, {:.0}us cpu/delivery{raw}; ratio deliveries/s {}/oidc-provider best = {:.2}, ratio cpu/delivery oidc-provider best/{} = {:.2}",
        run.label,
        run.rate,
        run.cpu_us,
        run.label,
        run.rate / fastest.rate.max(1e-9),
        run.label,
        leanest.cpu_us / run.cpu_us.max(1e-9),
    )
}

/// Fails when a run lacks the receiver's figures or kept more than [`SATURATED_PERCENT`] of
/// a core busy.
fn check_receiver(runs: &[Run]) -> anyhow::Result<()> {
    for run in runs {
        let share = run.sink_core_percent.ok_or_else(|| {
            anyhow::anyhow!("{}: the receiver's CPU time was not reported", run.label)
        })?;
        anyhow::ensure!(
            share <= SATURATED_PERCENT,
            "{}: the receiver used {share:.0}% of a core (limit {SATURATED_PERCENT:.0}%), so it may have been the bottleneck; this run does not count",
            run.label
        );
    }
    Ok(())
}

/// The receiver's busiest share of a core and its CPU per delivery across the runs.
fn receiver_line(runs: &[Run]) -> String {
    let shares = runs.iter().filter_map(|r| r.sink_core_percent);
    let busiest = shares.fold(0.0, f64::max);
    let per: Vec<f64> = runs.iter().filter_map(|r| r.sink_cpu_us).collect();
    let low = per.iter().copied().fold(f64::INFINITY, f64::min);
    let high = per.iter().copied().fold(0.0, f64::max);
    format!(
        "receiver: {low:.0}-{high:.0}us cpu/delivery, at most {busiest:.0}% of one core in any run (limit {SATURATED_PERCENT:.0}%)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER_16: &str = "peer oidc-provider RS256 sessions=600 rps=5 in_flight=16 deliveries=3000 wall=6.00s deliveries/s=500 cpu/delivery=2800us sink_cpu/delivery=40us sink_core=2% peak_rss=90MiB duplicates=0";
    const PEER_64: &str = "peer oidc-provider RS256 sessions=600 rps=5 in_flight=64 deliveries=3000 wall=5.00s deliveries/s=600 cpu/delivery=2900us sink_cpu/delivery=50us sink_core=3% peak_rss=95MiB duplicates=0";
    const SERVE: &str = "deliver RS256 sessions=600 rps=5 deliveries=3000 wall=2.00s deliveries/s=1500 cpu/delivery=1200us raw_sig=1000us raw_sig_before/after=900/1100us ratio=1.20 peak_rss=30MiB sink_cpu/delivery=60us sink_core=9% ceiling=70% process=serve nodes=1 duplicates=0";
    const IN_PROCESS: &str = "deliver RS256 sessions=600 rps=5 deliveries=3000 wall=2.00s deliveries/s=1400 cpu/delivery=1400us raw_sig=1000us raw_sig_before/after=900/1100us ratio=1.40 peak_rss=40MiB split_us=delivery:1000,sqlite:200,runtime:200 sink_cpu/delivery=55us sink_core=8% ceiling=65% process=in-process nodes=1 duplicates=0";

    #[test]
    fn fields_are_read_without_their_units() {
        assert_eq!(field(SERVE, "cpu/delivery"), Some(1200.0));
        assert_eq!(field(SERVE, "wall"), Some(2.0));
        assert_eq!(field(SERVE, "raw_sig"), Some(1000.0));
        assert_eq!(field(SERVE, "sink_core"), Some(9.0));
        assert_eq!(field(SERVE, "absent"), None);
        assert_eq!(text(SERVE, "process"), Some("serve"));
    }

    #[test]
    fn lines_are_told_apart_and_others_ignored() {
        let peer = parse(PEER_64).unwrap();
        assert_eq!(peer.label, "oidc-provider in-flight=64");
        assert!(!peer.logoutd);
        assert_eq!(peer.raw_sig_us, None);
        assert_eq!(parse(IN_PROCESS).unwrap().label, "logoutd in-process");
        assert_eq!(parse("listening on http://127.0.0.1:1"), None);
    }

    #[test]
    fn logoutd_is_compared_with_the_peers_best_figure_of_each_kind() {
        let output = [PEER_16, PEER_64, SERVE, IN_PROCESS, "noise"].join("\n");
        let lines = summarize(&output).unwrap();
        assert_eq!(
            lines[0],
            "oidc-provider best: 600 deliveries/s (oidc-provider in-flight=64), 2800us cpu/delivery (oidc-provider in-flight=16)"
        );
        // 1500 / 600 and 2800 / 1200.
        assert!(lines[1].starts_with("logoutd serve: 1500 deliveries/s, 1200us cpu/delivery, 1.20x its raw signature (1000us);"), "{}", lines[1]);
        assert!(lines[1].ends_with("ratio deliveries/s logoutd serve/oidc-provider best = 2.50, ratio cpu/delivery oidc-provider best/logoutd serve = 2.33"), "{}", lines[1]);
        assert!(
            lines[2].contains("logoutd in-process/oidc-provider best = 2.33"),
            "{}",
            lines[2]
        );
        assert_eq!(
            lines[3],
            "receiver: 40-60us cpu/delivery, at most 9% of one core in any run (limit 90%)"
        );
    }

    #[test]
    fn a_saturated_or_silent_receiver_fails_the_run() {
        let saturated = PEER_64.replace("sink_core=3%", "sink_core=95%");
        let err = summarize(&[saturated.as_str(), SERVE].join("\n")).unwrap_err();
        assert!(
            err.to_string()
                .contains("in-flight=64: the receiver used 95% of a core"),
            "{err}"
        );
        let silent = SERVE.replace(" sink_core=9%", "");
        let err = summarize(&[PEER_64, silent.as_str()].join("\n")).unwrap_err();
        assert!(err.to_string().contains("not reported"), "{err}");
    }

    #[test]
    fn a_missing_side_fails_the_run() {
        assert!(summarize(SERVE).is_err());
        assert!(summarize(PEER_64).is_err());
    }
}
