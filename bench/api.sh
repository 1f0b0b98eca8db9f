#!/usr/bin/env bash
# API benchmark (issue 3): a server holding N subjects, loaded by wrk on loopback.
#   GET /v1/subjects/{id} (token check + casbin decision + decrypt of the allowed fields)
#   GET /healthz, in the same run, and the ratio;
#   POST /v1/subjects/batch with 1,000 subjects per request.
# Client and server share this machine's 2 cores (wrk runs one thread).
# Usage: bash bench/api.sh        (N=100000 DURATION=15s CONNECTIONS=32 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-32}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk"; exit 1; }
cargo build --release -q -p cli -p bench
B=target/release/steward
W=${BENCH_DIR:-/tmp}/steward-api-bench-$N
# The loaded directory is kept between runs (loading takes a while); each run works on a
# fresh copy, so the batch-create phase of one run does not grow the next run's data.
. bench/load.sh
load_bench_dir
TOKEN=$(bench_token bench fundraiser)
export TOKEN
ADMIN=$(bench_token bench-admin admin)
bench_ids
export IDS_FILE="$W/ids.txt"
./target/release/steward-bench batch-json 1000 > "$W/batch.json"
export BATCH_FILE="$W/batch.json"
PORT=$((30000 + RANDOM % 20000))
URL="http://127.0.0.1:$PORT"
SERVER=""
trap '[ -n "$SERVER" ] && kill $SERVER 2>/dev/null; wait 2>/dev/null || true' EXIT
start() {
  "$@" >/dev/null 2>"$W/server.log" &
  SERVER=$!
  for _ in $(seq 200); do curl -sf "$URL/healthz" >/dev/null && return; sleep 0.1; done
  echo "server did not start"; cat "$W/server.log"; exit 1
}
stop() { kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""; }
run() { wrk -t1 -c"$1" -d"$DURATION" --latency -s "$2" "$3"; }

start "$B" serve --data "$W/d" --addr "127.0.0.1:$PORT" --rate-limit 0
echo "== GET /v1/subjects/{id} (fundraiser token; $N subjects; $(wc -l < "$IDS_FILE") distinct ids at random)"
sleep 1; du -sb "$W/d" | cut -f1 > "$W/size-before"
run "$CONNECTIONS" bench/wrk/get_subject.lua "$URL" | tee "$W/get.txt"
# Every read is audited: the data directory grows by what an audit event costs on disk.
sleep 1; du -sb "$W/d" | cut -f1 > "$W/size-after"
echo "== GET /healthz"
run "$CONNECTIONS" bench/wrk/healthz.lua "$URL/healthz" | tee "$W/healthz.txt"
echo "== POST /v1/subjects/batch (1,000 subjects per request)"
TOKEN="$ADMIN" run 2 bench/wrk/post_batch.lua "$URL/v1/subjects/batch" | tee "$W/batch.txt"
stop
# The same reads on the same router and data, with the audit log's store writes discarded
# (bench binary only), to measure what the audit append costs an HTTP read.
start ./target/release/steward-bench serve --data "$W/d" --identity "$W/id.txt" --addr "127.0.0.1:$PORT" --discard-audit
echo "== GET /v1/subjects/{id} without the audit store write"
run "$CONNECTIONS" bench/wrk/get_subject.lua "$URL" | tee "$W/get-noaudit.txt"
stop
python3 - "$W" <<'PY'
import re, sys
w = sys.argv[1]
def parse(name):
    t = open(f"{w}/{name}.txt").read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", t, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", t)
    return rps, lat, int(non2xx.group(1)) if non2xx else 0
g, h, b, n = parse("get"), parse("healthz"), parse("batch"), parse("get-noaudit")
print()
print("| request | requests/s | p50 | p99 | non-2xx |")
print("|---|---|---|---|---|")
print(f"| GET /v1/subjects/{{id}} | {g[0]:.0f} | {g[1].get('50')} | {g[1].get('99')} | {g[2]} |")
print(f"| GET /healthz | {h[0]:.0f} | {h[1].get('50')} | {h[1].get('99')} | {h[2]} |")
print(f"| POST /v1/subjects/batch (x1000) | {b[0]:.1f} ({b[0]*1000:.0f} subjects/s) | {b[1].get('50')} | {b[1].get('99')} | {b[2]} |")
print(f"| GET /v1/subjects/{{id}}, audit store write discarded | {n[0]:.0f} | {n[1].get('50')} | {n[1].get('99')} | {n[2]} |")
print(f"\nsubject reads / healthz = {g[0]/h[0]:.2f}; cost of the audit append on reads = {(1 - g[0]/n[0])*100:.1f}%")
reads = int(re.search(r"(\d+) requests in", open(f"{w}/get.txt").read()).group(1))
grown = int(open(f"{w}/size-after").read()) - int(open(f"{w}/size-before").read())
print(f"data directory growth during the reads: {grown} bytes for {reads} audited reads = {grown / reads:.0f} bytes per read")
PY
