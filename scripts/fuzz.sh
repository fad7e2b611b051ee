#!/usr/bin/env bash
# `make fuzz` / `make fuzz-ci`: runs the cargo-fuzz targets under fuzz/
# (libFuzzer) for SECONDS each: scripts/fuzz.sh SECONDS [TARGET...]
# (default: every target).
#
# FUZZ_BUILD: the cargo-fuzz build mode, `-O` (optimised, the default: the
# long runs of `make fuzz`) or `--dev` (unoptimised, much quicker to build:
# the short pass of `make fuzz-ci` in `make test`).
#
# The machines have one stable toolchain; cargo-fuzz needs nightly flags
# (sanitizers, coverage instrumentation), which RUSTC_BOOTSTRAP=1 allows on
# stable. cargo-fuzz is installed into ~/.cargo when missing.
#
# Each target starts from its seeds (fuzz/seeds/TARGET, committed: payloads
# captured from the Twitch simulator by fuzz/seeds/capture.py, and hand-made
# configurations and forms) plus its growing corpus (fuzz/corpus/TARGET, not
# committed). A crash stops the run with the input saved under
# fuzz/artifacts/TARGET/; it then becomes a regression test in the normal
# suite (docs/fuzzing.md).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export RUSTC_BOOTSTRAP=1 PATH="$HOME/.cargo/bin:$PATH"
seconds=${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(webhook eventsub_ws config form)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked --version 0.13.2
fi
mode=${FUZZ_BUILD:--O}
case $mode in -O|--dev) ;; *) echo "fuzz: FUZZ_BUILD must be -O or --dev" >&2; exit 2 ;; esac
cargo fuzz build "$mode"
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  echo "fuzz: $target for ${seconds}s" >&2
  cargo fuzz run "$mode" "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
