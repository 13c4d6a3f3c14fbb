#!/usr/bin/env bash
# The README's walk-through: a server, a mock RP on loopback, one session ended, its token checked.
set -euo pipefail
cd "$(mktemp -d)"                       # a scratch directory: data/, keys/ and logs go here
LISTEN=${LOGOUTD_LISTEN:-127.0.0.1:8080}; BASE=http://$LISTEN; API=$BASE/api/v2
wait_for() { for _ in $(seq 100); do "$@" && return 0; sleep 0.1; done; echo "timed out: $*" >&2; return 1; }

# The server: --dev prints a generated API token once on stdout; --allow-insecure-rp-urls lets
# it deliver to the mock RP's plain-http loopback URL (the default is https and public hosts only).
logoutd serve --dev --listen "$LISTEN" --allow-insecure-rp-urls > serve.out 2> serve.log &
trap 'kill $(jobs -p) 2>/dev/null' EXIT
wait_for curl -sf "$BASE/readyz" -o /dev/null
T=$(sed -n 's/^LOGOUTD_API_TOKEN=//p' serve.out)

# An RP: the mock RP trusts the server's issuer and JWKS, and prints the URL it listens on.
logoutd mock-rp --issuer "$BASE" --client-id app1 --jwks-uri "$BASE/.well-known/jwks.json" > mock-rp.out 2> mock-rp.log &
wait_for test -s mock-rp.out
RP=$(sed 's/^listening on //' mock-rp.out)

A="Authorization: Bearer $T"; J='Content-Type: application/json'
curl -sf -XPOST $API/clients -H "$A" -H "$J" -d '{"client_id":"app1","name":"App 1","oidc_logout":{"backchannel_logout_urls":["'"$RP"'/bc"],"backchannel_logout_session_metadata":{"include":true}}}'; echo
curl -sf -XPOST $API/sessions -H "$A" -H "$J" -d '{"id":"sess-1","user_id":"auth0|alice","clients":[{"client_id":"app1"}],"session_metadata":{"tenant":"acme"}}'; echo
curl -sf -XPOST $API/logout-events -H "$A" -H "$J" -d '{"session_id":"sess-1","initiator":"rp-logout"}'; echo   # 202 {"event_id","deliveries":1,"skipped":[],"held":[]}

# The RP's receipt (the request waits up to 30 s for it), then the delivery as logoutd
# recorded it, a moment after the RP answered.
curl -sf "$RP/receipts?format=json&min=1&wait_ms=30000" | jq -se '.[0] | length == 1 and all(.valid)'
delivered() { curl -sf "$API/logout-deliveries?session_id=sess-1" -H "$A" | jq -e '.deliveries[0].state == "delivered"' > /dev/null; }
wait_for delivered && echo delivered
