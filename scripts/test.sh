#!/usr/bin/env bash
# Run every test: unit tests, binary tests, and the end-to-end tests against a real
# authorization server (django-oauth-toolkit), a real dbus-daemon and gnome-keyring, plus the
# README's demo once.
# Needs the packages and venv of scripts/install-test-deps.sh (`bash .ci/run` does both).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --workspace --locked
# The README's one-command demo, end to end (exits after printing a token).
TOKENBROKER_BIN_DIR="$PWD/target/debug" dbus-run-session -- bash scripts/demo-session.sh --once
# The .deb: build, install, check the installed units, policy, users, man pages (issue 7).
bash scripts/test-packaging.sh
# Every test, then one summary line of them all (cargo prints one per test binary).
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { p += $4; f += $6; s += $8 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
# Every fuzz target for a few seconds, where nightly and cargo-fuzz are there (the long run is
# recorded in docs/SECURITY.md; the seed corpora also ran above, on stable).
if cargo +nightly fuzz --version >/dev/null 2>&1; then
    bash scripts/fuzz.sh "${TOKENBROKER_FUZZ_SECONDS:-5}" || status=1
else
    echo "test: no nightly cargo-fuzz here: the fuzz targets did not run"
fi
exit "$status"
