#!/usr/bin/env bash
# Build the tokenbroker .deb: release binaries, man pages and completions (packaging/gen),
# then cargo-deb (installed from crates.io if missing). Prints the path of the .deb on the
# last line of its output. Usage: scripts/build-deb.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

if ! cargo deb --version >/dev/null 2>&1; then
    echo "build-deb: installing cargo-deb (cargo install cargo-deb --locked)" >&2
    cargo install cargo-deb --locked
fi

cargo build --release --locked -p tokenbrokerd -p tokenbroker

# cargo-deb reads the generated files from target/release/packaging/ (its name for the real
# target folder, wherever CARGO_TARGET_DIR puts it; see the assets in daemon/Cargo.toml).
target_dir="$(cargo metadata --format-version 1 --no-deps --locked |
    grep -o '"target_directory":"[^"]*"' | sed 's/.*:"\(.*\)"/\1/')"
gen_out="$target_dir/release/packaging"
rm -rf "$gen_out"
# The generator only formats text: a debug build is enough and shares the test build.
cargo run --locked -q -p tokenbroker-gen -- "$gen_out" >/dev/null
# Debian policy: man pages gzipped (cargo-deb leaves files under target/release/ as they are).
gzip -9n "$gen_out"/man/*.1

out_dir="$target_dir/debian"
mkdir -p "$out_dir"
deb="$(cargo deb -p tokenbrokerd --no-build --output "$out_dir/" | tail -n 1)"
if [ ! -f "$deb" ]; then
    echo "build-deb: cargo deb did not report a .deb (got: $deb)" >&2
    exit 1
fi
echo "$deb"
