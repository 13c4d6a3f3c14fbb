#!/usr/bin/env bash
# The README's "Receiving logout tokens": a throwaway key, the mock RP, one token delivered and checked.
set -euo pipefail
cd "$(mktemp -d)"                       # a scratch directory, never a server's own keys/
JWKS_PORT=${JWKS_PORT:-9000}; JWKS_URI=http://127.0.0.1:$JWKS_PORT/jwks.json
wait_for() { for _ in $(seq 100); do "$@" && return 0; sleep 0.1; done; echo "timed out: $*" >&2; return 1; }

# A throwaway key and its JWKS, served on loopback (plain http is allowed only there).
logoutd keys generate --alg ES256 --keys-dir keys
logoutd keys jwks --keys-dir keys > jwks.json
python3 -m http.server "$JWKS_PORT" --bind 127.0.0.1 > http.log 2>&1 &
trap 'kill $(jobs -p) 2>/dev/null' EXIT
wait_for curl -sf "$JWKS_URI" -o /dev/null

# Start the receiver on a free port and read its address from stdout.
logoutd mock-rp --issuer https://op.example --client-id rp-1 \
  --jwks-uri "$JWKS_URI" --receipts receipts.jsonl > mock-rp.out 2> mock-rp.log &
wait_for test -s mock-rp.out
RP=$(sed 's/^listening on //' mock-rp.out)

# Deliver a token the way an OP does (spec §2.5).
TOKEN=$(logoutd token mint --keys-dir keys --issuer https://op.example \
  --client-id rp-1 --sub user-1 --sid sess-1 --meta tenant=acme)
curl -si -X POST --data-urlencode "logout_token=$TOKEN" "$RP/backchannel"   # 200, Cache-Control: no-store

# Check one token by hand: exit code 0 when valid, else one reason per line on stderr.
logoutd token verify --issuer https://op.example --client-id rp-1 --jwks-uri "$JWKS_URI" "$TOKEN"

# A CI assertion: fails when the receipts are missing, empty or invalid.
curl -sf "$RP/receipts?format=json&min=1&wait_ms=30000" | jq -se '.[0] | length == 1 and all(.valid)'
