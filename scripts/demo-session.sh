#!/usr/bin/env bash
# Runs inside dbus-run-session (see demo.sh). Every process it starts is stopped on exit.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${TOKENBROKER_BIN_DIR:-$here/target/release}"
work="$(mktemp -d /tmp/tokenbroker-demo.XXXXXX)"
export XDG_RUNTIME_DIR="$work/run" XDG_CONFIG_HOME="$work/config" XDG_DATA_HOME="$work/data"
export XDG_STATE_HOME="$work/state" NO_PROXY="127.0.0.1,localhost"
mkdir -p -m 700 "$XDG_RUNTIME_DIR" "$XDG_CONFIG_HOME" "$XDG_DATA_HOME" "$XDG_STATE_HOME"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

wait_for() { # wait_for WHAT CMD...: up to 20 s
    local what="$1"; shift
    for _ in $(seq 1 200); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "demo: $what did not come up; logs are in $work" >&2
    trap - EXIT; exit 1
}

printf 'demo-keyring-password' | gnome-keyring-daemon --unlock --components=secrets --foreground \
    >"$work/keyring.log" 2>&1 &
pids+=($!)
wait_for "the keyring's bus name" sh -c 'dbus-send --session --print-reply --dest=org.freedesktop.DBus / org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets | grep -q "boolean true"'
wait_for "the Secret Service" sh -c 'printf x | secret-tool store --label=probe tokenbroker-demo probe && secret-tool clear tokenbroker-demo probe'

"$here/tests/authserver/.venv/bin/python" "$here/tests/authserver/serve.py" --port 0 \
    --data-dir "$work/authserver" >"$work/authserver.out" 2>"$work/authserver.log" &
pids+=($!)
wait_for "the demo authorization server" grep -q '^READY port=' "$work/authserver.out"
port="$(sed -n 's/^READY port=//p' "$work/authserver.out")"

"$bin/tokenbrokerd" >"$work/tokenbrokerd.log" 2>&1 &
pids+=($!)
wait_for "tokenbrokerd" "$bin/tokenbroker" status

tb="$bin/tokenbroker"
printf '%s\n' 's3cr&t=+%/: é' | "$tb" provider add demo --issuer "http://127.0.0.1:$port/o" \
    --client-id tb-password --client-secret-stdin --allow-insecure-loopback --scope read --scope write
"$tb" account add alice --provider demo --username alice
printf '%s\n' 'correct horse battery staple' | "$tb" login alice --password-stdin
echo
echo "An access token for account alice:"
"$tb" token alice
echo
"$tb" status
if [ "${1:-}" = "--once" ]; then
    exit 0
fi
cat <<TXT

tokenbrokerd is running. In another shell:
  export TOKENBROKER_SOCKET=$XDG_RUNTIME_DIR/tokenbroker/socket
  $tb token alice --json
Press Ctrl-C to stop the demo (the authorization server, keyring and daemon stop with it).
TXT
wait
