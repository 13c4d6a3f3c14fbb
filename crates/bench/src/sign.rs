//! Signing throughput: building claims, signing and encoding a whole logout token, compared
//! with aws-lc-rs signing a message of the same length with the same key (design §7).
//!
//! The two loops alternate in short slices so that both see the same machine load.

use logoutd_core::{ClientId, Issuer, SessionId, UserId};
use logoutd_core::{KeySet, SignError, SigningKey};
use logoutd_core::{LogoutTokenBuilder, Subject};
use logoutd_core::{SigningAlg, TokenTyp};
use std::time::{Duration, Instant};

/// Length of one measuring slice.
const SLICE: Duration = Duration::from_millis(100);

/// The outcome for one alg.
#[derive(Debug, Clone, Copy)]
pub struct SignReport {
    /// The algorithm.
    pub alg: SigningAlg,
    /// Complete tokens per second on one core.
    pub tokens_per_sec: f64,
    /// Raw signatures per second on one core, same key, same message length.
    pub raw_per_sec: f64,
}

impl SignReport {
    /// tokens/s divided by raw signatures/s; the goal is at least 0.95.
    pub fn ratio(&self) -> f64 {
        if self.raw_per_sec > 0.0 {
            self.tokens_per_sec / self.raw_per_sec
        } else {
            0.0
        }
    }
}

impl std::fmt::Display for SignReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<6} tokens/s {:>9.0}   raw aws-lc-rs sig/s {:>9.0}   ratio {:.3}",
            self.alg.as_str(),
            self.tokens_per_sec,
            self.raw_per_sec,
            self.ratio()
        )
    }
}

/// Runs `op` for one slice; returns (operations, elapsed).
fn slice<F: FnMut() -> Result<(), SignError>>(mut op: F) -> Result<(u64, Duration), SignError> {
    let start = Instant::now();
    let mut count = 0u64;
    loop {
        op()?;
        count += 1;
        let elapsed = start.elapsed();
        if elapsed >= SLICE {
            return Ok((count, elapsed));
        }
    }
}

fn rate(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// The CPU time of one raw aws-lc-rs signature with `alg` (a fresh key, a message the
/// length of a logout token), over about `total` of the calling thread's CPU time. Unlike
/// the rates of [`measure`], which are timed by the clock, it does not grow when other work
/// shares the cores, so it compares with CPU time per delivery on a busy machine.
pub fn raw_cpu_per_signature(alg: SigningAlg, total: Duration) -> Result<Duration, SignError> {
    let key = SigningKey::generate(alg, None).map_err(|_| SignError::NoKey(alg))?;
    let message = vec![b'm'; 300];
    let cpu = || super::proc_stats::thread_cpu_time().unwrap_or_default();
    let start = cpu();
    let mut count = 0u32;
    while cpu().saturating_sub(start) < total || count == 0 {
        for _ in 0..10 {
            key.with_signature(&message, |sig| {
                std::hint::black_box(sig);
            })?;
        }
        count += 10;
    }
    Ok(cpu().saturating_sub(start) / count)
}

/// Measures `alg` for about `total` on the calling thread, with a freshly generated key.
pub fn measure(alg: SigningAlg, total: Duration) -> Result<SignReport, SignError> {
    let key = SigningKey::generate(alg, None).map_err(|_| SignError::NoKey(alg))?;
    let keys = KeySet::from_keys(vec![key]);
    let issuer = Issuer::new("https://issuer.example");
    let client = ClientId::new("bench-client");
    let now = chrono::Utc::now();
    let mint = || {
        let subject = Subject::Both(UserId::new("user-1"), SessionId::new("session-1"));
        let claims = LogoutTokenBuilder::new(&issuer, &client, subject, now).build();
        keys.sign(alg, TokenTyp::LogoutJwt, &claims)
    };
    let sample = mint()?;
    let input_len = sample.rfind('.').unwrap_or(sample.len());
    let message = sample
        .as_bytes()
        .get(..input_len)
        .unwrap_or_default()
        .to_vec();
    let key = keys.active_key(alg).ok_or(SignError::NoKey(alg))?;
    let (mut full, mut raw) = ((0u64, Duration::ZERO), (0u64, Duration::ZERO));
    let start = Instant::now();
    while start.elapsed() < total {
        let (n, t) = slice(|| {
            key.with_signature(&message, |sig| {
                std::hint::black_box(sig);
            })
        })?;
        raw = (raw.0 + n, raw.1 + t);
        let (n, t) = slice(|| mint().map(|token| drop(std::hint::black_box(token))))?;
        full = (full.0 + n, full.1 + t);
    }
    Ok(SignReport {
        alg,
        tokens_per_sec: rate(full.0, full.1),
        raw_per_sec: rate(raw.0, raw.1),
    })
}
