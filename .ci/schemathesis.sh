#!/usr/bin/env bash
# OpenAPI conformance: schemathesis against a real server on a fresh data directory.
# Every check runs (.ci/schemathesis.toml, which names the few exceptions and why): a 5xx, an
# undocumented status or content type, a response off its schema, a schema-valid request
# refused or a schema-violating one accepted all fail. Needs the debug binary (built by `cargo test --workspace`).
set -euo pipefail
cd "$(dirname "$0")/.."
# Pinned: a new release must not turn CI red overnight. Change the pin on purpose.
SCHEMATHESIS_VERSION=4.32.5
if [ "$(schemathesis --version 2>/dev/null | awk '{print $NF}')" != "$SCHEMATHESIS_VERSION" ]; then
  python3 -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
B=target/debug/steward
[ -x "$B" ] || cargo build -q -p cli
T=$(mktemp -d)
PORT=$((30000 + RANDOM % 20000))
"$B" init --data "$T/d" --identity "$T/id.txt" --json >/dev/null
TOKEN=$("$B" users add schemathesis-admin-7f3a --role admin --data "$T/d" --json \
  | python3 -c 'import sys, json; print(json.load(sys.stdin)["token"])')
# Some subjects to find, so reads reach real records too.
"$B" demo --no-serve --size 50 --data "$T/d" --json >/dev/null
"$B" serve --data "$T/d" --addr "127.0.0.1:$PORT" --rate-limit 0 --auth-failures-per-minute 0 >"$T/server.out" 2>"$T/server.log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$T"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
# DELETE/PATCH /v1/users/{name} are left out: generated names can revoke or demote the run's
# own admin, after which every later case is a 401 (the end-to-end authorisation matrix
# covers both operations). POST /v1/notifications/{id}/done is left out too: generating cases
# for it makes hypothesis hit CPython 3.11's "AST constructor recursion depth mismatch" in
# most runs (a runtime error of the tool, seen three times, twice in a row in one CI run); the
# authorisation matrix and tests/e2e/recipients.rs exercise it.
run() {
  schemathesis --config-file .ci/schemathesis.toml run "http://127.0.0.1:$PORT/openapi.json" \
    --header "Authorization: Bearer $TOKEN" \
    --exclude-path "/v1/users/{name}" \
    --exclude-path "/v1/notifications/{id}/done" \
    --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" \
    --seed 20261122 \
    --phases examples,coverage,fuzzing \
    --workers 2 \
    --no-color
}
# Seen once here: hypothesis, describing a lambda of schemathesis's own, hit CPython 3.11's
# "AST constructor recursion depth mismatch" (a runtime error of the tool, not a finding about
# Steward; the same seed passed on the next run). A run that failed on that alone, with no
# failed check, runs once more.
if ! run 2>&1 | tee "$T/st.log"; then
  if grep -q "AST constructor recursion depth mismatch" "$T/st.log" && ! grep -q "^Failures:" "$T/st.log"; then
    echo "== schemathesis: the tool's own AST error; once more"
    run
  else
    exit 1
  fi
fi
