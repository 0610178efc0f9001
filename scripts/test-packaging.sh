#!/usr/bin/env bash
# Build the .deb, install it on this machine, and check what it installed: the units pass
# `systemd-analyze verify`, the packaged files are the ones in packaging/, the user, group
# and folders exist with their modes, the man pages render without warnings, the completions
# load, the binaries run. Then remove and purge it and check what stays. One line per check;
# exits non-zero at the first failure. Needs root and the packages of install-test-deps.sh.
# Works without systemd as PID 1 (as in CI).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
export LC_ALL=C.UTF-8

started=$SECONDS
work="$(mktemp -d /tmp/tokenbroker-test-packaging.XXXXXX)"
trap 'rm -rf "$work"' EXIT

ok() { printf 'test-packaging: ok    %s\n' "$*"; }
fail() {
    printf 'test-packaging: FAIL  %s\n' "$*" >&2
    exit 1
}

if [ "$(id -u)" -ne 0 ]; then
    fail "run as root (it installs the .deb)"
fi

# --- build and install --------------------------------------------------------------------
if ! bash scripts/build-deb.sh >"$work/build.log" 2>&1; then
    tail -n 40 "$work/build.log" >&2
    fail "scripts/build-deb.sh failed (log above)"
fi
deb="$(tail -n 1 "$work/build.log")"
[ -f "$deb" ] || fail "build-deb.sh printed no .deb path (got: $deb)"
ok "built $deb in $((SECONDS - started)) s"

# Start from nothing so that the install runs the first-install path of the postinst. A purge
# wipes the secret store: refuse when one holds anything (a real installation), unless told.
if dpkg-query -W -f='${Status}' tokenbroker 2>/dev/null | grep -q 'installed'; then
    if [ -n "$(ls -A /var/lib/tokenbroker 2>/dev/null)" ] && [ "${TOKENBROKER_TEST_PURGE:-}" != 1 ]; then
        fail "tokenbroker is installed with a secret store in /var/lib/tokenbroker, which this test would purge; set TOKENBROKER_TEST_PURGE=1 to allow it"
    fi
    dpkg --purge tokenbroker >"$work/purge0.log" 2>&1 || fail "purging the installed tokenbroker: $(cat "$work/purge0.log")"
fi
if ! apt-get install -y --no-install-recommends "$deb" >"$work/install.log" 2>&1; then
    tail -n 30 "$work/install.log" >&2
    fail "apt-get install $deb"
fi
ok "installed with apt-get install (dependencies pulled)"

status="$(dpkg-query -W -f='${Status} ${Version}' tokenbroker)"
case "$status" in
    "install ok installed "*) ok "dpkg -s tokenbroker: $status" ;;
    *) fail "dpkg -s tokenbroker: $status" ;;
esac
deb_version="${status##* }"
upstream_version="${deb_version%-*}"

# --- files --------------------------------------------------------------------------------
same() { # same INSTALLED REPO
    [ -f "$1" ] || fail "$1 is not installed"
    cmp -s "$1" "$2" || fail "$1 differs from $2"
    ok "$1 = $2"
}
same /usr/lib/systemd/system/tokenbrokerd.service packaging/systemd/system/tokenbrokerd.service
same /usr/lib/systemd/user/tokenbrokerd.service packaging/systemd/user/tokenbrokerd.service
same /usr/lib/systemd/system/tokenbrokerd.socket packaging/systemd/system/tokenbrokerd.socket
same /usr/lib/systemd/user/tokenbrokerd.socket packaging/systemd/user/tokenbrokerd.socket
same /usr/share/dbus-1/services/io.tokenbroker.Broker1.service packaging/dbus/io.tokenbroker.Broker1.service
same /usr/share/dbus-1/system-services/io.tokenbroker.Broker1.service packaging/dbus/system-services/io.tokenbroker.Broker1.service
same /usr/share/dbus-1/system.d/io.tokenbroker.Broker1.conf packaging/dbus/system.d/io.tokenbroker.Broker1.conf
same /usr/lib/sysusers.d/tokenbroker.conf packaging/sysusers.d/tokenbroker.conf
same /usr/lib/tmpfiles.d/tokenbroker.conf packaging/tmpfiles.d/tokenbroker.conf
for f in /usr/share/bash-completion/completions/tokenbroker /usr/share/bash-completion/completions/tokenbrokerd \
    /usr/share/zsh/vendor-completions/_tokenbroker /usr/share/zsh/vendor-completions/_tokenbrokerd \
    /usr/share/fish/vendor_completions.d/tokenbroker.fish /usr/share/fish/vendor_completions.d/tokenbrokerd.fish \
    /usr/share/doc/tokenbroker/README.md /usr/share/doc/tokenbroker/PACKAGING.md; do
    [ -s "$f" ] || fail "$f is not installed"
done
ok "completions (bash, zsh, fish) and docs are installed"
for b in tokenbrokerd tokenbroker; do
    [ -x "/usr/bin/$b" ] || fail "/usr/bin/$b is not installed"
done
ok "/usr/bin/tokenbrokerd and /usr/bin/tokenbroker are installed"

# --- user, group, folders -------------------------------------------------------------------
pw="$(getent passwd tokenbroker)" || fail "no user tokenbroker after install"
IFS=: read -r _ _ tb_uid _ _ tb_home tb_shell <<<"$pw"
[ "$tb_uid" -lt 1000 ] || fail "tokenbroker is not a system user (uid $tb_uid)"
[ "$tb_home" = /var/lib/tokenbroker ] || fail "tokenbroker's home is $tb_home"
case "$tb_shell" in */nologin | /bin/false) ;; *) fail "tokenbroker has a login shell: $tb_shell" ;; esac
ok "user tokenbroker: uid $tb_uid, home $tb_home, shell $tb_shell"
getent group tokenbroker-admin >/dev/null || fail "no group tokenbroker-admin after install"
ok "group tokenbroker-admin exists"
mode_is() { # mode_is PATH "MODE USER GROUP"
    local got
    got="$(stat -c '%a %U %G' "$1" 2>/dev/null)" || fail "$1 does not exist"
    [ "$got" = "$2" ] || fail "$1 is $got, want $2"
    ok "$1 is $got"
}
mode_is /etc/tokenbroker "775 root tokenbroker"
mode_is /etc/tokenbroker/config.d "755 root root"

# The store-key credential: made where systemd-creds can encrypt, with its drop-in.
cred=/etc/credstore.encrypted/tokenbroker.store-key
dropin=/etc/systemd/system/tokenbrokerd.service.d/store-key.conf
if [ -e "$cred" ]; then
    mode_is "$cred" "400 root root"
    grep -qx "LoadCredentialEncrypted=store-key:$cred" "$dropin" || fail "$dropin does not load $cred"
    key="$(systemd-creds decrypt --name=store-key "$cred" - 2>/dev/null)" || fail "$cred does not decrypt as store-key"
    [[ "$key" =~ ^[0-9a-f]{64}$ ]] || fail "$cred does not hold 64 hex characters"
    unset key
    ok "store-key credential $cred decrypts to a 64-hex-character key; $dropin loads it"
else
    [ ! -e "$dropin" ] || fail "$dropin exists without $cred"
    ok "no store-key credential (systemd-creds cannot encrypt here): the daemon uses its key file"
fi

# --- units ----------------------------------------------------------------------------------
verify() { # verify LABEL [--user] UNIT
    local label="$1"
    shift
    local out
    out="$(XDG_RUNTIME_DIR="$work/xdg" systemd-analyze "$@" 2>&1)" || {
        printf '%s\n' "$out" >&2
        fail "systemd-analyze $* ($label)"
    }
    # Any line about our unit (or the folders and binaries it names) is a warning we fail on.
    if printf '%s\n' "$out" | grep -i 'tokenbroker'; then
        fail "systemd-analyze $* warned about $label (above)"
    fi
    ok "systemd-analyze $* is clean ($label)"
}
mkdir -p -m 700 "$work/xdg"
verify "system unit" verify /usr/lib/systemd/system/tokenbrokerd.service
verify "user unit" --user verify /usr/lib/systemd/user/tokenbrokerd.service
verify "system socket unit" verify /usr/lib/systemd/system/tokenbrokerd.socket
verify "user socket unit" --user verify /usr/lib/systemd/user/tokenbrokerd.socket
# systemd's own score of the sandbox (0 = fully locked down, 10 = none); 1.6 when written.
exposure="$(systemd-analyze security --offline=yes --no-pager /usr/lib/systemd/system/tokenbrokerd.service 2>/dev/null |
    sed -n 's/.*Overall exposure level for tokenbrokerd.service: \([0-9.]*\).*/\1/p')"
[ -n "$exposure" ] || fail "systemd-analyze security gave no exposure level for the system unit"
awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }' || fail "systemd-analyze security: exposure $exposure > 2.0"
ok "systemd-analyze security --offline: exposure level $exposure (at most 2.0)"
# --- man pages ------------------------------------------------------------------------------
man_dir=/usr/share/man/man1
if [ ! -e "$man_dir/tokenbroker.1.gz" ] && dpkg -L tokenbroker | grep -q '^/usr/share/man/man1/tokenbroker.1.gz$'; then
    # dpkg path-exclude rules (minimal images) dropped the pages: render them from the .deb.
    dpkg-deb -x "$deb" "$work/deb"
    man_dir="$work/deb/usr/share/man/man1"
    ok "man pages excluded by dpkg's path-exclude here: checking the ones in the .deb"
fi
pages=("$man_dir"/tokenbroker*.1.gz)
[ -e "${pages[0]}" ] || fail "no man pages in $man_dir"
for want in tokenbroker.1.gz tokenbrokerd.1.gz tokenbroker-provider.1.gz tokenbroker-account-add.1.gz; do
    [ -e "$man_dir/$want" ] || fail "$man_dir/$want is missing"
done
for p in "${pages[@]}"; do
    warn="$(MANWIDTH=80 man --warnings -l "$p" 2>&1 >/dev/null)" || fail "man -l $p failed: $warn"
    [ -z "$warn" ] || fail "man --warnings -l $p: $warn"
done
MANWIDTH=80 man -l "$man_dir/tokenbrokerd.1.gz" 2>/dev/null | grep -q -- '--check-config' ||
    fail "tokenbrokerd(1) does not document --check-config"
ok "${#pages[@]} man pages render without warnings (man --warnings -l)"

# --- completions ----------------------------------------------------------------------------
comp="$(bash --norc --noprofile -c '
    source /usr/share/bash-completion/bash_completion
    _completion_loader tokenbroker 2>/dev/null || source /usr/share/bash-completion/completions/tokenbroker
    declare -F _tokenbroker >/dev/null || { echo "no _tokenbroker"; exit 1; }
    complete -p tokenbroker >/dev/null || { echo "tokenbroker has no completion"; exit 1; }
    COMP_WORDS=(tokenbroker prov); COMP_CWORD=1; COMP_LINE="tokenbroker prov"; COMP_POINT=${#COMP_LINE}
    _tokenbroker tokenbroker prov tokenbroker
    printf "%s\n" "${COMPREPLY[@]}"
' 2>&1)" || fail "bash completion: $comp"
printf '%s\n' "$comp" | grep -qx 'provider' || fail "bash completion of 'tokenbroker prov' gave: $comp"
ok "bash completion loads (_tokenbroker) and completes 'tokenbroker prov' to provider"
grep -q '^#compdef tokenbroker' /usr/share/zsh/vendor-completions/_tokenbroker || fail "_tokenbroker is no zsh completion"
grep -q '^complete -c tokenbroker ' /usr/share/fish/vendor_completions.d/tokenbroker.fish || fail "tokenbroker.fish is no fish completion"
ok "zsh and fish completions name their command"

# --- binaries -------------------------------------------------------------------------------
help="$(/usr/bin/tokenbrokerd --help 2>&1)" || fail "tokenbrokerd --help: $help"
printf '%s\n' "$help" | grep -q -- '--check-config' || fail "tokenbrokerd --help does not show --check-config"
ok "/usr/bin/tokenbrokerd --help works"
ver="$(/usr/bin/tokenbrokerd --version 2>&1)" || fail "tokenbrokerd --version: $ver"
[ "$ver" = "tokenbrokerd $upstream_version" ] || fail "tokenbrokerd --version printed '$ver', the package is $deb_version"
ok "/usr/bin/tokenbrokerd --version: $ver (package $deb_version)"
/usr/bin/tokenbroker --help >/dev/null 2>&1 || fail "tokenbroker --help"
ok "/usr/bin/tokenbroker --help works"

# --- the installed daemon, run as the system unit would run it -------------------------------
# Without systemd as PID 1 the unit cannot start, so this sets up what it would: the service
# user, the folders of RuntimeDirectory=/StateDirectory=/LogsDirectory= with their modes, the
# decrypted credential in $CREDENTIALS_DIRECTORY (when the postinst made one), UMask=0077.
sm="$work/unit"
mkdir -p "$sm"/{run,state,logs,creds}
chmod 0755 "$work" "$sm" "$sm/run"
chmod 0700 "$sm/state" "$sm/creds"
chmod 0750 "$sm/logs"
chown tokenbroker:tokenbroker "$sm/run" "$sm/state" "$sm/logs" "$sm/creds"
want_key="key file"
if [ -e "$cred" ]; then
    systemd-creds decrypt --name=store-key "$cred" "$sm/creds/store-key" 2>/dev/null || fail "decrypting $cred"
    chown tokenbroker:tokenbroker "$sm/creds/store-key"
    chmod 0400 "$sm/creds/store-key"
    want_key="credential"
fi
unit_env=(env -i PATH=/usr/bin:/bin RUNTIME_DIRECTORY="$sm/run" STATE_DIRECTORY="$sm/state"
    LOGS_DIRECTORY="$sm/logs" CREDENTIALS_DIRECTORY="$sm/creds")
as_tb=(setpriv --reuid=tokenbroker --regid=tokenbroker --clear-groups --)
check_out="$("${as_tb[@]}" "${unit_env[@]}" /usr/bin/tokenbrokerd --system --check-config 2>&1)" ||
    fail "tokenbrokerd --system --check-config as tokenbroker: $check_out"
ok "tokenbrokerd --system --check-config as tokenbroker: $check_out"
# A private system bus with the system bus's default policy and the installed policy files
# (/usr/share/dbus-1/system.d, ours among them), as the daemon's system bus.
mkdir -p "$sm/bus"
chmod 0755 "$sm/bus"
cat >"$sm/bus/system.conf" <<BUSCONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$sm/bus/socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <includedir>/usr/share/dbus-1/system.d</includedir>
</busconfig>
BUSCONF
dbus-daemon --config-file="$sm/bus/system.conf" --nofork --nopidfile --print-address=1 \
    >"$sm/bus/address" 2>"$sm/bus/log" &
bus_pid=$!
trap 'kill "$bus_pid" 2>/dev/null; wait "$bus_pid" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do
    [ -s "$sm/bus/address" ] && break
    sleep 0.1
done
bus_address="$(head -n 1 "$sm/bus/address")"
[ -n "$bus_address" ] || fail "the private system bus did not start: $(cat "$sm/bus/log")"
chmod 0666 "$sm/bus/socket"
unit_env+=(DBUS_SYSTEM_BUS_ADDRESS="$bus_address")

# Under strace, to check below that every syscall it makes passes the unit's SystemCallFilter=.
mkdir -m 0700 "$sm/trace"
(umask 0077 && exec strace -ff -qq -o "$sm/trace/t" "${as_tb[@]}" "${unit_env[@]}" \
    /usr/bin/tokenbrokerd --system) >"$sm/daemon.log" 2>&1 &
tracer_pid=$!
daemon_pid=""
trap 'kill ${daemon_pid:+"$daemon_pid"} "$tracer_pid" "$bus_pid" 2>/dev/null; wait "$tracer_pid" "$bus_pid" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 150); do
    [ -S "$sm/run/socket" ] && break
    kill -0 "$tracer_pid" 2>/dev/null || break
    sleep 0.1
done
[ -S "$sm/run/socket" ] || fail "the installed tokenbrokerd --system made no socket in 15 s: $(tail -n 5 "$sm/daemon.log")"
daemon_pid="$(pgrep -P "$tracer_pid" | head -n 1)"
[ -n "$daemon_pid" ] || fail "cannot find the daemon under strace (pid $tracer_pid)"
mode_is "$sm/run/socket" "666 tokenbroker tokenbroker"
st="$(setpriv --reuid=65534 --regid=65534 --clear-groups -- /usr/bin/tokenbroker --socket "$sm/run/socket" status 2>&1)" ||
    fail "tokenbroker status as nobody against the system daemon: $st"
ok "another local user (nobody) reaches the system daemon: $(printf '%s' "$st" | head -n 1)"
reply=""
for _ in $(seq 1 50); do
    reply="$(setpriv --reuid=65534 --regid=65534 --clear-groups -- busctl --address="$bus_address" \
        call io.tokenbroker.Broker1 /io/tokenbroker/Broker1 io.tokenbroker.Broker1 ListAccounts 2>&1)" && break
    reply="FAILED: $reply"
    sleep 0.1
done
case "$reply" in
    FAILED:*) fail "nobody's ListAccounts over the system bus: $reply (daemon: $(tail -n 3 "$sm/daemon.log"))" ;;
esac
ok "the daemon owns io.tokenbroker.Broker1 on a system bus with the installed policy; nobody calls ListAccounts: $reply"
case "$want_key" in
    credential) grep -q 'store key from the systemd credential' "$sm/daemon.log" ||
        fail "the daemon did not take its store key from \$CREDENTIALS_DIRECTORY/store-key: $(cat "$sm/daemon.log")" ;;
esac
ok "the daemon's store key comes from the $want_key"
kill "$daemon_pid"
stopped=no
for _ in $(seq 1 100); do
    if ! kill -0 "$tracer_pid" 2>/dev/null; then stopped=yes; break; fi
    sleep 0.1
done
kill -9 "$daemon_pid" "$tracer_pid" 2>/dev/null || true
wait "$tracer_pid" 2>/dev/null || true
kill "$bus_pid" 2>/dev/null || true
wait "$bus_pid" 2>/dev/null || true
trap 'rm -rf "$work"' EXIT
[ "$stopped" = yes ] || fail "the system daemon did not stop within 10 s of SIGTERM"
ok "the system daemon stopped on SIGTERM"

# SystemCallFilter=@system-service then ~@privileged @resources: the syscalls that remain, from
# systemd's own tables, against every syscall the daemon made after its execve (all threads).
expand_sets() { # every syscall in the named sets, nested sets expanded
    local g x
    for g in "$@"; do
        systemd-analyze --no-pager syscall-filter "$g" </dev/null 2>/dev/null |
            sed -n 's/^    \([-@a-z0-9_]*\)$/\1/p' | while read -r x; do
            case "$x" in @*) expand_sets "$x" ;; *) echo "$x" ;; esac
        done
    done
}
expand_sets @system-service | sort -u >"$work/allowed.all"
expand_sets @privileged @resources | sort -u >"$work/denied"
comm -23 "$work/allowed.all" "$work/denied" >"$work/allowed"
grep -qx read "$work/allowed" && grep -qx mlockall "$work/allowed" && ! grep -qx setuid "$work/allowed" ||
    fail "could not read systemd's syscall sets (systemd-analyze syscall-filter)"
for f in "$sm"/trace/t.*; do
    awk '/^execve\("\/usr\/bin\/tokenbrokerd"/ { on = 1 } on' "$f" >"$f.daemon"
    # Threads have no execve of their own: all of their file is the daemon's.
    [ -s "$f.daemon" ] || grep -q '^execve(' "$f" || cp "$f" "$f.daemon"
done
cat "$sm"/trace/t.*.daemon | sed -n 's/^\([a-z0-9_]*\)(.*/\1/p' | sort -u >"$work/used"
[ "$(grep -c . "$work/used")" -gt 20 ] || fail "strace recorded almost nothing of the daemon"
outside="$(comm -23 "$work/used" "$work/allowed" | tr '\n' ' ')"
[ -z "$outside" ] || fail "the daemon makes syscalls that the unit's SystemCallFilter= refuses: $outside"
ok "all $(grep -c . "$work/used") syscalls the daemon made (start, a socket and a D-Bus request, SIGTERM) pass the unit's SystemCallFilter="

# --- remove, purge --------------------------------------------------------------------------
mkdir -p /var/lib/tokenbroker /var/log/tokenbroker
chown tokenbroker:tokenbroker /var/lib/tokenbroker /var/log/tokenbroker
chmod 0700 /var/lib/tokenbroker
printf 'not a real store\n' >/var/lib/tokenbroker/probe
dpkg --remove tokenbroker >"$work/remove.log" 2>&1 || fail "dpkg --remove: $(cat "$work/remove.log")"
[ ! -e /usr/bin/tokenbrokerd ] || fail "dpkg --remove left /usr/bin/tokenbrokerd"
[ -e /var/lib/tokenbroker/probe ] || fail "dpkg --remove deleted the state in /var/lib/tokenbroker"
ok "dpkg --remove removes the files and keeps /var/lib/tokenbroker"
dpkg --purge tokenbroker >"$work/purge.log" 2>&1 || fail "dpkg --purge: $(cat "$work/purge.log")"
[ ! -e /var/lib/tokenbroker ] || fail "dpkg --purge left /var/lib/tokenbroker (the secret store)"
[ ! -e "$cred" ] || fail "dpkg --purge left $cred"
[ ! -e "$dropin" ] || fail "dpkg --purge left $dropin"
getent passwd tokenbroker >/dev/null || fail "dpkg --purge removed the tokenbroker user"
ok "dpkg --purge wipes the store, its key and drop-in; keeps the tokenbroker user"

# Leave the package installed, as an admin would have it.
apt-get install -y --no-install-recommends "$deb" >"$work/install2.log" 2>&1 || fail "reinstalling $deb"
ok "reinstalled; scripts/test-packaging.sh took $((SECONDS - started)) s"
