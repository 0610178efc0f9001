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
    # packaging (issue 7)
    dpkg-dev                                    # dpkg-shlibdeps: cargo-deb's $auto dependencies
    man-db groff-base                           # man --warnings -l on the installed pages
    bash-completion                             # loads the installed bash completion
    dbus-daemon dbus-bin util-linux passwd      # the system-bus policy test: dbus-daemon, dbus-send, setpriv, useradd
    systemd                                     # systemd-analyze verify, systemd-sysusers, systemd-tmpfiles, systemd-creds
    strace                                      # the syscalls of the installed daemon, against the unit's SystemCallFilter=
    # tray (issue 6)
    libgtk-3-dev libayatana-appindicator3-dev   # to build tokenbroker-tray (GTK 3, tray-icon)
    libayatana-appindicator3-1                  # loaded by tray-icon at run time
    xvfb trayer xdotool imagemagick             # the tray's tests: X server, tray host, clicks, screenshots
    desktop-file-utils                          # validates the tray's autostart entry
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

# The fuzz targets' short run (scripts/fuzz.sh, from test.sh) where the machine has a nightly
# toolchain; the stable build and the tests do not need it.
if cargo +nightly --version >/dev/null 2>&1; then
    if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
        echo "install-test-deps: installing cargo-fuzz for the nightly toolchain"
        cargo +nightly install cargo-fuzz --locked
    fi
else
    echo "install-test-deps: no nightly toolchain: the fuzz targets will not run"
fi
