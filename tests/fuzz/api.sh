#!/usr/bin/env bash
# Fuzzes Careline's HTTP API from its own OpenAPI document with Schemathesis
# (PyPI): as nobody and as each staff role (operator, doctor, supervisor,
# admin), every documented operation gets generated requests, valid and not.
# A 5xx answer, or a status the document does not list for that operation,
# fails the run; so does a panic in the server's log.
#
# Usage: tests/fuzz/api.sh [CARELINE_BINARY]   (default target/debug/careline)
# Env: CARELINE_FUZZ_EXAMPLES (examples per operation and phase, default 10),
#      CARELINE_FUZZ_SECONDS (the bound of each role's run, default 90),
#      CARELINE_FUZZ_REPORTS (a directory to keep each role's whole report in).
# Bounded: each role's run is cut at CARELINE_FUZZ_SECONDS, and the server
# (SQLite in a temporary directory, loopback only) is stopped on exit.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${1:-$root/target/debug/careline}"
examples="${CARELINE_FUZZ_EXAMPLES:-10}"
seconds="${CARELINE_FUZZ_SECONDS:-90}"
# As a module of the python3 that pip installed it for (its script may not be on PATH).
python3 -c 'import schemathesis.cli' 2>/dev/null || { echo "schemathesis is missing: python3 -m pip install schemathesis (bash .ci/run does)" >&2; exit 2; }
[ -x "$bin" ] || { echo "no careline binary at $bin: cargo build --bin careline" >&2; exit 2; }

dir="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:$port"
(cd "$dir" && exec "$bin" serve --demo --listen "127.0.0.1:$port" >"$dir/serve.log" 2>&1) &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do
  curl -sf "$url/healthz" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$dir/serve.log" >&2; echo "careline did not start" >&2; exit 1; }
  sleep 0.2
done

# A bearer token for each role's demo account (the passwords are printed at the first start).
token() {
  local password
  password="$(awk -v u="$1" '$2 == u { print $3; exit }' "$dir/serve.log")"
  curl -sf "$url/api/auth/login" -H 'content-type: application/json' \
    -d "{\"username\": \"$1\", \"password\": \"$password\", \"kind\": \"bearer\"}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])'
}

# Every role signs in first: fuzzing the login itself delays later sign-ins from this address.
declare -A tokens
for who in asha dr.mehta meera admin; do tokens[$who]="$(token "$who")"; done

failed=0
for who in nobody asha dr.mehta meera admin; do
  header=()
  [ "$who" = nobody ] || header=(-H "Authorization: Bearer ${tokens[$who]}")
  echo "== API fuzzing as $who"
  # Logging out would end the run's own session; it is covered by the API tests.
  if ! timeout "$seconds" python3 -m schemathesis.cli run "$url/api/openapi.json" "${header[@]}" \
    --exclude-path /api/auth/logout \
    --checks not_a_server_error,status_code_conformance \
    --phases examples,coverage,fuzzing \
    --max-examples "$examples" --workers 1 --seed 20261203 --no-color >"$dir/fuzz-$who.txt" 2>&1; then
    failed=1
    # The failures, then the summary (the run's report is long).
    sed -n '/= FAILURES =/,$p' "$dir/fuzz-$who.txt" | head -200
    tail -5 "$dir/fuzz-$who.txt"
    echo "API fuzzing as $who failed (or ran past ${seconds}s)" >&2
  else
    grep -E 'generated|passed|failures' "$dir/fuzz-$who.txt" | tail -2
  fi
  [ -z "${CARELINE_FUZZ_REPORTS:-}" ] || { mkdir -p "$CARELINE_FUZZ_REPORTS"; cp "$dir/fuzz-$who.txt" "$CARELINE_FUZZ_REPORTS/"; }
done
if grep -q 'panicked' "$dir/serve.log"; then
  grep -B2 -A8 'panicked' "$dir/serve.log" | head -60 >&2
  echo "the server panicked during API fuzzing" >&2
  failed=1
fi
exit "$failed"
