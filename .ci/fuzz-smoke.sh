#!/usr/bin/env bash
# A short fuzz pass: every cargo-fuzz target for a few seconds, starting from the committed
# corpus (copied, so the tree stays clean). A crash fails CI with the input in the log.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${FUZZ_SECONDS:-10}"
# Pinned: a new release must not turn CI red overnight. Change the pin on purpose.
CARGO_FUZZ_VERSION=0.13.2
if [ "$(cargo +nightly fuzz --version 2>/dev/null | awk '{print $NF}')" != "$CARGO_FUZZ_VERSION" ]; then
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --quiet
fi
cargo +nightly fuzz build -s none --dev
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for target in $(cargo +nightly fuzz list); do
  mkdir -p "$work/$target"
  echo "-- $target (${seconds}s)"
  cargo +nightly fuzz run -s none --dev "$target" "$work/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=20 -artifact_prefix="$work/" \
    2>&1 | grep -E "^(Done|#[0-9]+ +DONE)|panicked|ERROR|SUMMARY|Test unit" || true
  # cargo fuzz exits non-zero on a crash; the pipe above hides it, so run the check again.
  if ls "$work"/crash-* "$work"/oom-* "$work"/timeout-* >/dev/null 2>&1; then
    echo "fuzz target $target failed; the input is above (Base64) and in the artifacts"
    exit 1
  fi
done
