#!/usr/bin/env bash
# Side by side: logoutd against oidc-provider 9.x (benches/oidc-provider/bench.mjs) on the
# same workload (600 sessions x 5 RPs, RS256) delivering into the same loopback receiver
# (one `logoutd-bench sink --ports 5`), in the same run.
#
# - oidc-provider runs once per in-flight setting (IN_FLIGHT, default 16 32 64 256), and
#   logoutd is compared with its best figure of the sweep.
# - logoutd runs as a `logoutd serve` process on a fresh SQLite file, its RPs and sessions
#   created through /api/v2 and ended with user-wide end calls, its CPU read from /proc of
#   that process (`logoutd-bench deliver --serve`); then in process (`logoutd-bench deliver`,
#   the figure used for profiling). Each logoutd line carries the raw RSA-2048 signature cost
#   measured just before and after it.
# - Every line carries the receiver's CPU per delivery and its share of one core; the run
#   fails if the receiver kept more than 90 % of a core busy in any of them.
#
# `logoutd-bench compare-summary` prints the ratios. Loopback only.
# Usage: bash benches/compare.sh   (from anywhere; SESSIONS, RPS and IN_FLIGHT may be set)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
sessions="${SESSIONS:-600}"
rps="${RPS:-5}"
read -r -a in_flight <<<"${IN_FLIGHT:-16 32 64 256}"
target="${CARGO_TARGET_DIR:-$root/target}"
bench="$target/release/logoutd-bench"
peer="$root/benches/oidc-provider"

cargo build --release --quiet
if [[ ! -d "$peer/node_modules/oidc-provider" ]]; then
  npm ci --prefix "$peer" --no-audit --no-fund >&2
fi

scratch="$(mktemp -d)"
sink_pid=""
cleanup() {
  if [[ -n "$sink_pid" ]]; then
    kill "$sink_pid" 2>/dev/null || true
    wait "$sink_pid" 2>/dev/null || true
  fi
  rm -rf "$scratch"
}
trap cleanup EXIT

"$bench" sink --ports "$rps" >"$scratch/sink.out" 2>"$scratch/sink.err" &
sink_pid=$!
for _ in $(seq 100); do
  [[ -s "$scratch/sink.out" ]] && break
  kill -0 "$sink_pid" 2>/dev/null || { cat "$scratch/sink.err" >&2; echo "sink exited" >&2; exit 1; }
  sleep 0.05
done
read -r first _ rest <"$scratch/sink.out" || true
if [[ "$first" != "listening" ]]; then
  echo "sink did not report its addresses" >&2
  exit 1
fi
read -r -a urls <<<"${rest#on }"
sink_args=()
for url in "${urls[@]}"; do
  sink_args+=(--sink "$url")
done
results="$scratch/results"
: >"$results"

# oidc-provider at each in-flight setting, then logoutd as `serve` and in process, against
# the same sink process.
for k in "${in_flight[@]}"; do
  if ! node "$peer/bench.mjs" --sessions "$sessions" --rps "$rps" --in-flight "$k" "${urls[@]}" \
    >"$scratch/peer.out" 2>"$scratch/peer.err"; then
    cat "$scratch/peer.err" >&2
    echo "oidc-provider bench failed (in-flight $k)" >&2
    exit 1
  fi
  grep '^peer oidc-provider ' "$scratch/peer.out" | tail -n 1 | tee -a "$results"
done

for mode in serve in-process; do
  process=()
  [[ "$mode" == serve ]] && process=(--serve)
  if ! "$bench" deliver "${process[@]}" --alg RS256 --sessions "$sessions" --rps "$rps" --probes 0 \
    "${sink_args[@]}" >"$scratch/logoutd.out" 2>"$scratch/logoutd.err"; then
    tail -n 20 "$scratch/logoutd.err" >&2
    echo "logoutd-bench deliver ($mode) failed" >&2
    exit 1
  fi
  grep '^deliver RS256 ' "$scratch/logoutd.out" | tail -n 1 | tee -a "$results"
done

"$bench" compare-summary <"$results"
