//! Tests of the SSF cost summary's arithmetic and lines.

use super::*;

fn run(tokens: u64, sets: u64, cpu_ms: u64, sink_ms: Option<u64>, raw_us: u64) -> Run {
    Run {
        tokens,
        sets,
        duplicates: 0,
        wall: Duration::from_secs(10),
        cpu: Duration::from_millis(cpu_ms),
        sink_cpu: sink_ms.map(Duration::from_millis),
        raw_rs256: Duration::from_micros(raw_us),
        end_p99_ms: Some(4.31),
    }
}

/// Two pairs of 10,000 tokens, B with 4,000 SETs: A 5 s and 6 s, B 7 s and 7.6 s.
fn summary() -> Summary {
    Summary {
        pairs: vec![
            (
                run(10_000, 0, 5_000, Some(300), 250),
                run(10_000, 4_000, 7_000, Some(400), 250),
            ),
            (
                run(10_000, 0, 6_000, Some(300), 500),
                run(10_000, 4_000, 7_600, Some(500), 500),
            ),
        ],
    }
}

#[test]
fn the_cost_per_token_is_as_cpu_over_as_tokens_pooled_with_each_pairs_range() {
    // 11 s over 20,000 tokens; the pairs 500 and 600 us.
    let token = summary().cpu_per_token();
    assert_eq!(
        token,
        Spread {
            pooled: 550.0,
            min: 500.0,
            max: 600.0
        }
    );
}

#[test]
fn the_added_cost_per_set_is_bs_cpu_beyond_as_over_the_sets() {
    // (2 s + 1.6 s) over 8,000 SETs; the pairs 500 and 400 us.
    let set = summary().added_cpu_per_set();
    assert!((set.pooled - 450.0).abs() < 1e-9, "{set:?}");
    assert!((set.min - 400.0).abs() < 1e-9, "{set:?}");
    assert!((set.max - 500.0).abs() < 1e-9, "{set:?}");
}

#[test]
fn noise_can_make_the_added_cost_negative_and_it_is_shown_so() {
    let pairs = vec![(run(100, 0, 1_000, None, 1), run(100, 10, 900, None, 1))];
    let set = Summary { pairs }.added_cpu_per_set();
    assert!((set.pooled + 10_000.0).abs() < 1e-9, "{set:?}");
}

#[test]
fn the_raw_signature_is_the_mean_of_both_runs_of_each_pair() {
    // 250 us in the first pair, 500 us in the second.
    let raw = summary().raw_rs256();
    assert!((raw.pooled - 375.0).abs() < 1e-9, "{raw:?}");
    assert!((raw.min - 250.0).abs() < 1e-9, "{raw:?}");
    assert!((raw.max - 500.0).abs() < 1e-9, "{raw:?}");
}

#[test]
fn the_receivers_figures_are_per_token_in_a_and_added_per_set_in_b() {
    let s = summary();
    let token = s.sink_per_token().unwrap();
    assert!((token.pooled - 30.0).abs() < 1e-9, "{token:?}");
    // (0.1 s + 0.2 s) over 8,000 SETs.
    let set = s.sink_added_per_set().unwrap();
    assert!((set.pooled - 37.5).abs() < 1e-9, "{set:?}");
    // 0.5 s of a 10 s run.
    assert!((s.sink_core_max().unwrap() - 0.05).abs() < 1e-9);
}

#[test]
fn without_the_receivers_cpu_there_are_no_receiver_figures() {
    let mut s = summary();
    s.pairs[1].1.sink_cpu = None;
    assert_eq!(s.sink_per_token(), None);
    assert_eq!(s.lines().len(), 2);
    assert_eq!(Summary { pairs: Vec::new() }.sink_core_max(), None);
}

#[test]
fn the_summary_lines_set_the_cost_per_set_next_to_the_cost_per_token() {
    let lines = summary().lines();
    assert_eq!(
        lines[0],
        "ssf summary pairs=2 cpu/token=550us (500-600) added_cpu/set=450us (400-500) \
         set/token=0.82 raw_rs256_cpu=375us (250-500)"
    );
    assert_eq!(
        lines[1],
        "ssf summary cpu/token/raw=1.47 added_cpu/set/raw=1.20 wall_b/a=1.00 (1.00-1.00)"
    );
    assert_eq!(
        lines[2],
        "ssf summary sink_cpu/token=30us (30-30) sink_added_cpu/set=38us (25-50) \
         sink_core_max=5%"
    );
}

#[test]
fn a_run_line_shows_tokens_sets_wall_and_both_cpus() {
    let line = run(10_000, 4_000, 7_000, Some(400), 250).line("B1");
    assert_eq!(
        line,
        "ssf run=B1 tokens=10000 sets=4000 duplicates=0 wall=10.00s serve_cpu=7000ms \
         sink_cpu=400ms raw_rs256_cpu=250us end_api_p99=4.3ms"
    );
}

#[test]
fn run_b_has_the_streams_and_both_run_logoutd_serve() {
    let scenario = SsfScenario {
        alg: SigningAlg::RS256,
        sessions: 10,
        rps: 5,
        streams: 2,
        sessions_per_user: 5,
        probes: 0,
        pairs: 1,
    };
    let (a, b) = (scenario.deliver(0), scenario.deliver(2));
    assert!(a.serve && b.serve);
    assert_eq!((a.ssf_streams, b.ssf_streams), (0, 2));
    assert_eq!((b.sessions, b.rps, b.nodes), (10, 5, 1));
}
