#!/usr/bin/env bash
# The product binary on a million-row donor file: three end-to-end imports, each into a fresh
# data directory, with wall time and peak RSS from /usr/bin/time and each stage's seconds
# and rows/s from the import's JSON summary (BENCHMARKS.md, "Imports").
# Usage: bash bench/import_million.sh [ROWS]   (after cargo build --release -p cli -p bench)
set -euo pipefail
rows="${1:-1000000}"
root="$(cd "$(dirname "$0")/.." && pwd)"
steward="$root/target/release/steward"
work="$(mktemp -d "${BENCH_DIR:-/tmp}/steward-import-XXXXXX")"
trap 'rm -rf "$work"' EXIT
"$root/target/release/steward-bench" donor-file --out "$work/donors.csv" --truth "$work/truth.csv" --n "$rows"
"$steward" init --data "$work/empty" >/dev/null 2>&1
for run in 1 2 3; do
  rm -rf "$work/data"
  cp -r "$work/empty" "$work/data"
  /usr/bin/time -f "%e %M" -o "$work/time" \
    "$steward" import "$work/donors.csv" --profile generic --data "$work/data" --json >"$work/summary.json"
  read -r wall kb <"$work/time"
  python3 - "$run" "$wall" "$kb" "$work/summary.json" <<'PY'
import json, sys
run, wall, kb, path = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
d = json.load(open(path))
stages = " ".join(f"{s['stage']} {s['seconds']:.1f} s ({s['rows_per_second']:,.0f} rows/s)" for s in d["stages"])
print(f"run {run}: {wall:.1f} s, peak RSS {kb:,} KiB ({kb * 1024 / 1e9:.3f} GB); {stages}; "
      f"new {d['new']}, merged {d['merged']}, review {d['review']}")
PY
done
