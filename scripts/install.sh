#!/usr/bin/env bash
# Installs pyhost as a systemd service on Debian or Ubuntu: what
# `make install` runs, as root, after `make build`.
#
# It creates the unprivileged user the proxy runs as ("pyhost"), the
# directories, an example /etc/pyhost/pyhost.toml (never overwriting an
# existing one), the unit and the logrotate config. DESTDIR installs into
# a staging root instead (packaging, tests); then no user is created and
# systemd is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${DESTDIR:-}
bin=${BINDIR:-/usr/local/bin}

[ -x bin/pyhostd ] && [ -x bin/pyctl ] || { echo "install: run make build first" >&2; exit 1; }
if [ -z "$dest" ] && [ "$(id -u)" -ne 0 ]; then
    echo "install: run as root (or set DESTDIR to stage the files)" >&2
    exit 1
fi

install -d -m 0755 "$dest$bin" "$dest/etc/pyhost" "$dest/etc/systemd/system" "$dest/etc/logrotate.d" \
    "$dest/usr/local/share/doc/pyhost"
install -d -m 0755 "$dest/etc/pyhost/apps.d"
install -m 0755 bin/pyhostd bin/pyctl "$dest$bin/"
install -m 0644 systemd/pyhost.service "$dest/etc/systemd/system/pyhost.service"
install -m 0644 systemd/pyhost.logrotate "$dest/etc/logrotate.d/pyhost"
install -m 0644 docs/*.md "$dest/usr/local/share/doc/pyhost/"
if [ ! -e "$dest/etc/pyhost/pyhost.toml" ]; then
    install -m 0644 systemd/pyhost.toml.example "$dest/etc/pyhost/pyhost.toml"
    echo "install: wrote an example /etc/pyhost/pyhost.toml; list your users there"
fi

if [ -z "$dest" ]; then
    if ! id -u pyhost >/dev/null 2>&1; then
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin pyhost
        echo "install: created the system user pyhost (the proxy runs as it)"
    fi
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
        echo "install: done. Next: edit /etc/pyhost/pyhost.toml, then"
        echo "  pyhostd check && systemctl enable --now pyhost"
    else
        echo "install: done (systemd is not running here; start pyhostd run yourself)"
    fi
fi
