#!/usr/bin/env bash
# Run every fuzz target (fuzz/, cargo-fuzz with libFuzzer on the nightly toolchain) for SECONDS
# each (default 60), or with RUNS=N for N executions each. New inputs that find new paths go to
# fuzz/corpus/TARGET (commit the interesting ones); a crash stops the run and is saved under
# fuzz/artifacts/TARGET. Needs: rustup's nightly toolchain and `cargo install cargo-fuzz`.
#
#   bash scripts/fuzz.sh            # 60 s per target
#   bash scripts/fuzz.sh 10         # the short run CI makes where nightly is present
#   RUNS=10000000 bash scripts/fuzz.sh   # the long run of docs/SECURITY.md
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:-60}"
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: no nightly toolchain (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: cargo-fuzz is missing (cargo install cargo-fuzz --locked)" >&2
    exit 1
fi
targets=$(cargo +nightly fuzz list)
for t in $targets; do
    # A scratch copy of the seed corpus: what the run finds does not change the committed one.
    work="fuzz/target/corpus-run/$t"
    rm -rf "$work"; mkdir -p "$work"
    cp fuzz/corpus/"$t"/* "$work"/
    if [ -n "${RUNS:-}" ]; then
        limit=(-runs="$RUNS"); label="$RUNS runs"
    else
        limit=(-max_total_time="$seconds"); label="$seconds s"
    fi
    echo "fuzz: $t ($label)"
    start=$(date +%s)
    log="fuzz/target/fuzz-$t.log"
    set +e
    cargo +nightly fuzz run "$t" "$work" fuzz/corpus/"$t" -- "${limit[@]}" -max_len=65536 \
        -print_final_stats=1 >"$log" 2>&1
    status=$?
    set -e
    grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|SUMMARY|Done)" "$log" || true
    [ "$status" -eq 0 ] || tail -n 40 "$log"
    echo "fuzz: $t done in $(( $(date +%s) - start )) s, exit $status"
    [ "$status" -eq 0 ] || exit "$status"
done
