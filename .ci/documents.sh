#!/usr/bin/env bash
# The documents Steward writes, opened with what people open them with:
# - the segment and access-package CSV files in a real spreadsheet engine (LibreOffice
#   headless, Debian package libreoffice-calc-nogui), split on commas and on semicolons with
#   formula evaluation on: no cell Steward wrote runs as a formula, and a phone number stays
#   a readable phone number;
# - the access package's letter (index.html) in headless Chromium (Debian package chromium):
#   it renders (a screenshot with text on it) and reads as a letter, every Art. 15(1)(a)-(h)
#   item under a plain heading, no internal names.
# Needs the debug binary (built by `cargo test --workspace`).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v soffice >/dev/null 2>&1 || missing+=(libreoffice-calc-nogui)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  (apt-get update -qq && apt-get install -y -qq "${missing[@]}") >/dev/null 2>&1 \
    || { echo "could not install ${missing[*]}"; exit 1; }
fi
B=target/debug/steward
[ -x "$B" ] || cargo build -q -p cli
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$B" init --data "$T/d" --identity "$T/id.txt" --json >/dev/null
id=$(printf '%s' '{"given_name":"=40000+2","family_name":"Smith;=50000+3","email":"sheet@example.org","phone":"+447700900123","city":"a; =60000+4"}' \
  | "$B" subject add --data "$T/d" --json | python3 -c 'import sys, json; print(json.load(sys.stdin)["id"])')
"$B" consent record --subject "$id" --purpose newsletter-email --event given --source form --data "$T/d" --json >/dev/null
"$B" export --purpose newsletter-email --format csv --out "$T/segment.csv" --data "$T/d" --json >/dev/null
rid=$("$B" request open --type access --subject "$id" --jurisdiction uk-gdpr --data "$T/d" --json \
  | python3 -c 'import sys, json; print(json.load(sys.stdin)["id"])')
"$B" request update "$rid" --action verify --data "$T/d" --json >/dev/null
"$B" request update "$rid" --action start --data "$T/d" --json >/dev/null
"$B" request fulfil "$rid" --out "$T/package" --data "$T/d" --json >/dev/null
package_csv=$(find "$T/package" -name '*.csv' | head -1)
[ -n "$package_csv" ] || { echo "the access package has no CSV file"; exit 1; }
python3 .ci/documents_check.py "$T" "$T/segment.csv" "$package_csv" "$T/package/index.html"
