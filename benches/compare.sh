#!/usr/bin/env bash
# Side by side: logoutd against oidc-provider 9.x (benches/oidc-provider/bench.mjs) on the
# same workload (600 sessions x 5 RPs, RS256) delivering into the same loopback receiver
# (one `logoutd-bench sink --ports 5`), in the same run. Prints both result lines and the
# ratios of end-to-end deliveries/s and of CPU per delivery. Loopback only.
#
# Usage: bash benches/compare.sh   (from anywhere; SESSIONS and RPS may be set)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
sessions="${SESSIONS:-600}"
rps="${RPS:-5}"
bin="$root/target/release/logoutd"
bench="$root/target/release/logoutd-bench"
peer="$root/benches/oidc-provider"

if [[ ! -x "$bin" || ! -x "$bench" ]]; then
  cargo build --release --quiet
fi
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

# oidc-provider first, then logoutd, against the same sink process.
if ! node "$peer/bench.mjs" --sessions "$sessions" --rps "$rps" "${urls[@]}" \
  >"$scratch/peer.out" 2>"$scratch/peer.err"; then
  cat "$scratch/peer.err" >&2
  echo "oidc-provider bench failed" >&2
  exit 1
fi
peer_line="$(grep '^peer oidc-provider ' "$scratch/peer.out" | tail -n 1)"

if ! "$bench" deliver --alg RS256 --sessions "$sessions" --rps "$rps" --probes 0 \
  "${sink_args[@]}" >"$scratch/logoutd.out" 2>"$scratch/logoutd.err"; then
  tail -n 20 "$scratch/logoutd.err" >&2
  echo "logoutd-bench deliver failed" >&2
  exit 1
fi
logoutd_line="$(grep '^deliver RS256 ' "$scratch/logoutd.out" | tail -n 1)"

# The value of `key=NUMBER...` in a result line.
field() {
  local line="$1" key="$2"
  sed -n "s|.* $key=\([0-9.][0-9.]*\).*|\1|p" <<<" $line"
}
peer_rate="$(field "$peer_line" 'deliveries/s')"
peer_cpu="$(field "$peer_line" 'cpu/delivery')"
ld_rate="$(field "$logoutd_line" 'deliveries/s')"
ld_cpu="$(field "$logoutd_line" 'cpu/delivery')"
for v in peer_rate peer_cpu ld_rate ld_cpu; do
  if [[ -z "${!v}" ]]; then
    echo "could not read $v from: $peer_line / $logoutd_line" >&2
    exit 1
  fi
done

echo "$peer_line"
echo "$logoutd_line"
awk -v a="$ld_rate" -v b="$peer_rate" \
  'BEGIN { printf "ratio deliveries/s logoutd/oidc-provider = %.2f\n", a / b }'
awk -v a="$peer_cpu" -v b="$ld_cpu" \
  'BEGIN { printf "ratio cpu/delivery oidc-provider/logoutd = %.2f\n", a / b }'
