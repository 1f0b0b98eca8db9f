# Shared by bench/api.sh and bench/console.sh (sourced): a data directory with N demo
# constituents, loaded once and kept under $W/base; each run works on a fresh copy in $W/d.
# Needs B (the steward binary), N and W set.
load_bench_dir() {
  if [ ! -f "$W/ready" ]; then
    rm -rf "$W"; mkdir -p "$W"
    "$B" init --data "$W/base" --identity "$W/id.txt" --json >/dev/null
    "$B" demo --no-serve --size "$N" --data "$W/base" --json >/dev/null
    touch "$W/ready"
  fi
  rm -rf "$W/d"; cp -r "$W/base" "$W/d"; rm -f "$W/d/steward.lock" "$W/d/steward.owner"
}

# A user's API token (added with ROLE, or a new token if it exists).
bench_token() {
  local name=$1 role=$2 out
  if "$B" users list --data "$W/d" --json | grep -q "\"name\": \"$name\""; then
    out=$("$B" users token "$name" --data "$W/d" --json)
  else
    out=$("$B" users add "$name" --role "$role" --data "$W/d" --json)
  fi
  echo "$out" | python3 -c 'import sys, json; print(json.load(sys.stdin)["token"])'
}

# Up to 20,000 subject ids into $W/ids.txt.
bench_ids() {
  rm -f "$W/ids.txt"; local after="" page
  for _ in $(seq 20); do
    page=$("$B" subject list --limit 1000 ${after:+--after "$after"} --data "$W/d" --json)
    echo "$page" | python3 -c 'import sys, json; print("\n".join(json.load(sys.stdin)["items"]))' >> "$W/ids.txt"
    after=$(echo "$page" | python3 -c 'import sys, json; print(json.load(sys.stdin)["next"] or "")')
    [ -n "$after" ] || break
  done
}
