#!/usr/bin/env bash
# Removes what scripts/install.sh (make install) installed, as root: it
# stops pyhost first (the unit, or a pyhostd run by hand: the one whose
# pid /run/pyhost/pyhostd.pid names), then removes the binaries (and
# BINDIR/../lib/pyhost with pyhost-sandbox), the
# unit, the logrotate rule, the docs and the man pages.
#
# It keeps /etc/pyhost (your config and apps.d), the pyhost user,
# /var/lib/pyhost (the claims ledger) and /var/log/pyhost, as dpkg -r
# does. PURGE=1 (make uninstall PURGE=1) removes them too, as dpkg -P.
# BINDIR and DESTDIR as for install.sh.
set -euo pipefail
dest=${DESTDIR:-}
bin=${BINDIR:-/usr/local/bin}
lib=$(dirname "$bin")/lib/pyhost
purge=${PURGE:-}

if [ -z "$dest" ] && [ "$(id -u)" -ne 0 ]; then
    echo "uninstall: run as root (or set DESTDIR)" >&2
    exit 1
fi
if [ -z "$dest" ] && [ "$(dpkg-query -W -f='${db:Status-Status}' pyhost 2>/dev/null)" = installed ]; then
    echo "uninstall: pyhost was installed from its package: dpkg -r pyhost (or dpkg -P pyhost) removes it" >&2
    exit 1
fi

if [ -z "$dest" ]; then
    if [ -d /run/systemd/system ] && [ -e /etc/systemd/system/pyhost.service ]; then
        systemctl disable --now pyhost.service || true
    fi
    # A pyhostd of this install still running (without systemd): SIGTERM,
    # then as long as the unit's TimeoutStopSec, then SIGKILL.
    pid=$(cat /run/pyhost/pyhostd.pid 2>/dev/null || true)
    running() { [[ "$pid" =~ ^[0-9]+$ ]] && [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$bin/pyhostd"* ]]; }
    if running; then
        echo "uninstall: stopping pyhostd (pid $pid)"
        kill -TERM "$pid" || true
        for _ in $(seq 450); do
            running || break
            sleep 0.1
        done
        if running; then
            echo "uninstall: pyhostd (pid $pid) did not stop within 45 s; killing it" >&2
            kill -KILL "$pid" || true
        fi
    fi
fi

rm -f "$dest$bin/pyhostd" "$dest$bin/pyctl" "$dest/etc/systemd/system/pyhost.service" "$dest/etc/logrotate.d/pyhost" \
    "$dest/usr/local/share/man/man8/pyhostd.8" "$dest/usr/local/share/man/man1/pyctl.1"
rm -f "$dest$lib/pyhost-sandbox"
rmdir "$dest$lib" 2>/dev/null || true
rm -rf "$dest/usr/local/share/doc/pyhost"
if [ -z "$dest" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi

if [ "$purge" = 1 ]; then
    rm -rf "$dest/etc/pyhost" "$dest/var/lib/pyhost" "$dest/var/log/pyhost" "$dest/run/pyhost"
    if [ -z "$dest" ]; then
        if getent passwd pyhost >/dev/null; then userdel pyhost; fi
        if getent group pyhost >/dev/null; then groupdel pyhost; fi
    fi
    echo "uninstall: done; removed the config, the claims ledger, the logs and the pyhost user too"
else
    echo "uninstall: done; kept /etc/pyhost, /var/lib/pyhost, /var/log/pyhost and the pyhost user (make uninstall PURGE=1 removes them)"
fi
