//! Tests of the delivery benchmark's report line.

use super::*;

fn report(sink_cpu: Option<Duration>) -> Report {
    Report {
        scenario: Scenario {
            alg: SigningAlg::RS256,
            sessions: 1000,
            rps: 5,
            sessions_per_user: 100,
            probes: 0,
            metadata_pairs: 0,
            store: None,
            nodes: 1,
            serve: false,
            ssf_streams: 0,
        },
        deliveries: 6000,
        duplicates: 0,
        sets: 0,
        set_duplicates: 0,
        wall: Duration::from_secs(2),
        cpu: Duration::from_secs(3),
        split: None,
        raw_sig_before_after: (2500.0, 1500.0),
        peak_rss_kib: 0,
        end_latency_ms: None,
        end_latency_max: None,
        sink_cpu,
        cores: 2,
    }
}

#[test]
fn the_ceiling_leaves_out_the_cores_the_receiver_used() {
    // 3,000 deliveries/s; the receiver used half a core, so 1.5 cores sign 3,000/s at most.
    let share = report(Some(Duration::from_secs(1)))
        .ceiling_share()
        .unwrap();
    assert!((share - 1.0).abs() < 1e-9, "{share}");
    let line = report(Some(Duration::from_secs(1))).to_string();
    assert!(
        line.contains("sink_cpu/delivery=167us sink_core=50% ceiling=100%"),
        "{line}"
    );
    assert!(
        line.ends_with("process=in-process nodes=1 duplicates=0"),
        "{line}"
    );
}

#[test]
fn the_receivers_share_is_of_one_core_over_the_wall_time() {
    // 1.9 s of the receiver's CPU over a 2 s run: 95 % of one core.
    let share = report(Some(Duration::from_millis(1900)))
        .sink_core_share()
        .unwrap();
    assert!((share - 0.95).abs() < 1e-9, "{share}");
    let mut served = report(None);
    served.scenario.serve = true;
    assert!(served.to_string().contains(" process=serve "));
}

#[test]
fn the_ratio_divides_by_the_mean_raw_rate_and_the_line_shows_both() {
    // 500 us per delivery against the mean 2,000 signatures/s (500 us), measured at 400
    // and 667 us before and after.
    let line = report(None).to_string();
    assert!(
        line.contains("cpu/delivery=500us raw_sig=500us raw_sig_before/after=400/667us ratio=1.00"),
        "{line}"
    );
}

#[test]
fn without_the_receivers_figure_there_is_no_ceiling() {
    assert_eq!(report(None).ceiling_share(), None);
    assert!(!report(None).to_string().contains("ceiling="));
}

#[test]
fn ssf_streams_add_the_sets_to_the_line_and_only_then() {
    assert!(!report(None).to_string().contains("sets="));
    let mut with_ssf = report(None);
    with_ssf.scenario.ssf_streams = 2;
    with_ssf.sets = 2000;
    assert!(
        with_ssf
            .to_string()
            .contains(" ssf_streams=2 sets=2000 set_duplicates=0 "),
        "{with_ssf}"
    );
}

#[test]
fn the_line_names_the_slowest_end_call_and_when_it_began() {
    let mut measured = report(None);
    measured.end_latency_ms = Some((2.5, 40.0));
    measured.end_latency_max = Some((86.414, 92.3));
    let line = measured.to_string();
    assert!(
        line.contains(" end_api_p50=2.50ms end_api_p99=40.00ms end_api_max=86.41ms@92ms"),
        "{line}"
    );
    assert!(!report(None).to_string().contains("end_api_max="));
}
