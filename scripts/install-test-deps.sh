#!/usr/bin/env bash
# Install everything the end-to-end tests need on a fresh Debian 12 machine (run as root).
# Idempotent and non-interactive; safe to run again.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DEBIAN_FRONTEND=noninteractive

packages=(
    ca-certificates curl procps socat
    openssl           # generates the client keys of the private_key_jwt tests
    dbus dbus-bin dbus-daemon
    gnome-keyring libsecret-tools
    systemd           # busctl, used to enumerate Secret Service items
    python3 python3-venv python3-pip
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-test-deps: missing packages (${missing[*]}); run as root" >&2
        exit 1
    fi
    apt-get update
    apt-get install -y --no-install-recommends "${packages[@]}"
else
    echo "install-test-deps: apt packages already installed"
fi

bash "$here/tests/authserver/setup.sh"
