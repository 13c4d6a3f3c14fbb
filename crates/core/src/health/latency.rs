//! The latency histogram: fixed log-scale buckets, and the percentiles read from them.
//!
//! Bucket 0 holds attempts under 1 ms; bucket `i` ≥ 1 holds latencies in
//! `[GROWTH^(i-1), GROWTH^i)` ms. A percentile is reported as the geometric middle of its
//! bucket, so it is within 10 % of the true value (`sqrt(1.2) - 1` ≈ 9.5 %), or within 1 ms
//! below 10 ms where whole milliseconds are all that is measured.

/// The ratio between a bucket's upper and lower bound.
pub(crate) const GROWTH: f64 = 1.2;
/// The last bucket; it also holds every latency above its lower bound (about 60 minutes,
/// beyond any attempt timeout).
pub(crate) const LAST_BUCKET: i64 = 83;

/// The bucket of a latency in milliseconds.
pub(crate) fn bucket_of(latency_ms: u64) -> i64 {
    if latency_ms == 0 {
        return 0;
    }
    // Exact for the integers this sees; the cast saturates and is then capped.
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    let i = ((latency_ms as f64).ln() / GROWTH.ln()).floor() as i64 + 1;
    i.clamp(1, LAST_BUCKET)
}

/// The value a bucket reports: the geometric middle of its bounds, in whole milliseconds
/// (0 for bucket 0).
pub(crate) fn value_of(bucket: i64) -> u64 {
    if bucket <= 0 {
        return 0;
    }
    #[allow(clippy::cast_precision_loss)]
    let middle = GROWTH.powf(bucket as f64 - 0.5);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let value = middle.round() as u64;
    value.max(1)
}

/// The `q` quantile (0 < q ≤ 1) of the attempts counted per bucket, `None` when there are
/// none: the value of the bucket holding the attempt of rank `ceil(q × n)`.
pub(crate) fn quantile(counts: &[(i64, u64)], q: f64) -> Option<u64> {
    let mut sorted: Vec<(i64, u64)> = counts.iter().copied().filter(|(_, n)| *n > 0).collect();
    sorted.sort_unstable_by_key(|(bucket, _)| *bucket);
    let total: u64 = sorted.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return None;
    }
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    #[allow(clippy::cast_sign_loss)]
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (bucket, n) in sorted {
        seen += n;
        if seen >= rank {
            return Some(value_of(bucket));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_latency_is_reported_within_ten_percent_or_one_ms() {
        for ms in (1..100_000u64).chain([250_000, 1_000_000]) {
            let reported = value_of(bucket_of(ms));
            let error = reported.abs_diff(ms);
            #[allow(clippy::cast_precision_loss)]
            let relative = error as f64 / ms as f64;
            assert!(
                relative <= 0.1 || error <= 1,
                "{ms} ms reported as {reported}"
            );
        }
    }

    #[test]
    fn buckets_grow_with_latency_and_stop_at_the_last() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1), 1);
        assert!(bucket_of(100) < bucket_of(121));
        assert_eq!(bucket_of(u64::MAX), LAST_BUCKET);
    }

    #[test]
    fn quantiles_take_the_bucket_of_the_ranked_attempt() {
        // 98 fast attempts and 2 slow ones: p50 is fast, p99 is slow.
        let counts = [(bucket_of(5_000), 2), (bucket_of(10), 98)];
        assert_eq!(quantile(&counts, 0.5), Some(value_of(bucket_of(10))));
        assert_eq!(quantile(&counts, 0.99), Some(value_of(bucket_of(5_000))));
        let one = [(bucket_of(40), 1)];
        assert_eq!(quantile(&one, 0.5), quantile(&one, 0.99));
    }

    #[test]
    fn no_attempts_have_no_quantile() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[(3, 0)], 0.99), None);
    }
}
