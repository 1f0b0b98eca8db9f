#!/usr/bin/env bash
# Console benchmark (issue 18): server time per HTML page at N subjects, beside the JSON
# route that makes the same hub call, in one run, with wrk on loopback (one thread; client
# and server share the machine's 2 cores):
#   GET /subjects/{id} (constituent page)  beside GET /v1/subjects/{id};
#   GET /home (a DPO's work queue with REQUESTS open requests)  beside GET /v1/requests;
#   POST /find (search by email)  beside POST /v1/subjects/lookup.
# Usage: bash bench/console.sh   (N=100000 DURATION=15s CONNECTIONS=8 REQUESTS=200)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-8}
REQUESTS=${REQUESTS:-200}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk"; exit 1; }
cargo build --release -q -p cli
B=target/release/steward
W=${BENCH_DIR:-/tmp}/steward-api-bench-$N
. bench/load.sh
load_bench_dir
bench_ids
head -n 2000 "$W/ids.txt" > "$W/ids-2k.txt"
printf 'bench console password 1\n' > "$W/pw"
for u in bench-fr:fundraiser bench-dpo:dpo; do
  "$B" users add "${u%%:*}" --role "${u##*:}" --password-file "$W/pw" --data "$W/d" --json >/dev/null
done
TOKEN=$(bench_token bench-dpo-api dpo); export TOKEN
# Open requests for the work queue, on the first REQUESTS subjects.
head -n "$REQUESTS" "$W/ids.txt" | while read -r id; do
  "$B" request open --subject "$id" --type access --jurisdiction uk-gdpr --data "$W/d" --json >/dev/null
done
PORT=$((30000 + RANDOM % 20000)); URL="http://127.0.0.1:$PORT"
"$B" serve --data "$W/d" --addr "127.0.0.1:$PORT" --rate-limit 0 >/dev/null 2>"$W/server.log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait 2>/dev/null || true' EXIT
for _ in $(seq 200); do curl -sf "$URL/healthz" >/dev/null && break; sleep 0.1; done
session() {
  curl -s -o /dev/null -c "$W/jar-$1" -d "username=$1" -d "password=bench console password 1" -d next=/home "$URL/sign-in"
  awk '$6 == "steward_session" {print $7}' "$W/jar-$1"
}
FR=$(session bench-fr); DPO=$(session bench-dpo)
CSRF=$(curl -s -b "steward_session=$FR" "$URL/find" | python3 -c 'import re, sys; print(re.search(r"name=\"csrf\" value=\"([0-9a-f]{64})\"", sys.stdin.read()).group(1))')
# Emails of 500 subjects, through the API (the console search looks them up).
head -n 500 "$W/ids.txt" | while read -r id; do
  curl -s -H "Authorization: Bearer $TOKEN" "$URL/v1/subjects/$id" | python3 -c 'import sys, json; e = json.load(sys.stdin)["fields"].get("email"); e and print(e)'
done > "$W/emails.txt"
export EMAILS_FILE="$W/emails.txt" CSRF
run() { wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$@"; }
echo "== GET /subjects/{id} (fundraiser session, $(wc -l < "$W/ids-2k.txt") ids at random)"
SESSION=$FR IDS_FILE="$W/ids-2k.txt" PATH_PREFIX=/subjects/ run bench/wrk/console_get.lua "$URL" | tee "$W/c-subject.txt"
echo "== GET /v1/subjects/{id} (DPO token)"
IDS_FILE="$W/ids-2k.txt" run bench/wrk/get_subject.lua "$URL" | tee "$W/c-api-subject.txt"
echo "== GET /home (DPO session, $REQUESTS open requests)"
SESSION=$DPO IDS_FILE="" PATH_PREFIX=/home run bench/wrk/console_get.lua "$URL" | tee "$W/c-home.txt"
echo "== GET /v1/requests (DPO token)"
run bench/wrk/healthz.lua "$URL/v1/requests" | tee "$W/c-api-requests.txt"
echo "== POST /find (fundraiser session, $(wc -l < "$EMAILS_FILE") emails at random)"
SESSION=$FR run bench/wrk/console_find.lua "$URL" | tee "$W/c-find.txt"
echo "== POST /v1/subjects/lookup (DPO token)"
run bench/wrk/api_lookup.lua "$URL" | tee "$W/c-api-lookup.txt"
python3 - "$W" <<'PY'
import re, sys
w = sys.argv[1]
def parse(name):
    t = open(f"{w}/{name}.txt").read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", t, re.M))
    non = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", t)
    return rps, lat, int(non.group(1)) if non else 0
print()
print("| route | requests/s | p50 | p99 | non-2xx |")
print("|---|---|---|---|---|")
for name, label in [("c-subject", "GET /subjects/{id} (HTML)"), ("c-api-subject", "GET /v1/subjects/{id} (JSON)"),
                    ("c-home", "GET /home (HTML)"), ("c-api-requests", "GET /v1/requests (JSON)"),
                    ("c-find", "POST /find (HTML)"), ("c-api-lookup", "POST /v1/subjects/lookup (JSON)")]:
    r = parse(name)
    print(f"| {label} | {r[0]:.0f} | {r[1].get('50')} | {r[1].get('99')} | {r[2]} |")
PY
