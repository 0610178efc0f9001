#!/usr/bin/env bash
# The demo in one command, on a fresh Debian 12 machine (as root):
#   installs what is needed, builds tokenbroker, starts a demo authorization server
#   (django-oauth-toolkit on 127.0.0.1), a private session bus with an unlocked gnome-keyring,
#   and tokenbrokerd; adds a provider and an account, signs in, and prints an access token.
# It then keeps everything running until Ctrl-C (or exits at once with --once).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$here/scripts/install-test-deps.sh"
cargo build --release --locked -p tokenbrokerd -p tokenbroker --manifest-path "$here/Cargo.toml"
exec dbus-run-session -- bash "$here/scripts/demo-session.sh" "$@"
