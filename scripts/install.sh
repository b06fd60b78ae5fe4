#!/usr/bin/env bash
# Installs pyhost as a systemd service on Debian or Ubuntu: what
# `make install` runs, as root, after `make build`.
#
# It creates the unprivileged user the proxy runs as ("pyhost"), the
# directories, an example /etc/pyhost/pyhost.toml (never overwriting an
# existing one), the unit, the logrotate config and man pages. DESTDIR
# installs into a staging root instead (tests); then no user is created
# and systemd is left alone. BINDIR (default /usr/local/bin) is where the
# binaries go, and what the unit and the logrotate rule run; the
# sandbox's trampoline pyhost-sandbox, which no user runs, goes in
# BINDIR/../lib/pyhost (/usr/local/lib/pyhost), where pyhostd looks for
# it.
# scripts/uninstall.sh (make uninstall) undoes it. On Debian, the .deb
# (make deb) is the better way: dpkg upgrades and purges it.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${DESTDIR:-}
bin=${BINDIR:-/usr/local/bin}
lib=$(dirname "$bin")/lib/pyhost

[ -x bin/pyhostd ] && [ -x bin/pyctl ] || { echo "install: run make build first" >&2; exit 1; }
if [ -z "$dest" ] && [ "$(id -u)" -ne 0 ]; then
    echo "install: run as root (or set DESTDIR to stage the files)" >&2
    exit 1
fi
if [ -z "$dest" ] && [ "$(dpkg-query -W -f='${db:Status-Status}' pyhost 2>/dev/null)" = installed ]; then
    # Two units and two rules for one daemon: the package's would lose.
    echo "install: the pyhost package is installed; upgrade it instead, or remove it first (dpkg -r pyhost)" >&2
    exit 1
fi

install -d -m 0755 "$dest$bin" "$dest/etc/pyhost" "$dest/etc/systemd/system" "$dest/etc/logrotate.d" \
    "$dest/usr/local/share/doc/pyhost" "$dest/usr/local/share/man/man1" "$dest/usr/local/share/man/man8"
install -d -m 0755 "$dest/etc/pyhost/apps.d"
install -m 0755 bin/pyhostd bin/pyctl "$dest$bin/"
# A bin/ built before pyhost-sandbox existed lacks it: pyhostd then
# starts sandboxed apps through itself, slower (docs/admin-guide.md).
if [ -x bin/pyhost-sandbox ]; then
    install -d -m 0755 "$dest$lib"
    install -m 0755 bin/pyhost-sandbox "$dest$lib/"
else
    echo "install: bin/pyhost-sandbox is missing (make build builds it); sandboxed apps will start through pyhostd sandbox-exec, slower" >&2
fi
# The unit and the rule run the binaries where they are installed.
sed "s|/usr/local/bin/|$bin/|g" systemd/pyhost.service >"$dest/etc/systemd/system/pyhost.service"
sed "s|/usr/local/bin/|$bin/|g" systemd/pyhost.logrotate >"$dest/etc/logrotate.d/pyhost"
chmod 0644 "$dest/etc/systemd/system/pyhost.service" "$dest/etc/logrotate.d/pyhost"
install -m 0644 docs/*.md "$dest/usr/local/share/doc/pyhost/"
version=$(bin/pyhostd --version | awk '{print $NF}')
packaging/manpage.sh bin/pyhostd 8 "$version" "$(date -u +%Y-%m-%d)" "host Python WSGI apps with supervised workers" \
    >"$dest/usr/local/share/man/man8/pyhostd.8"
packaging/manpage.sh bin/pyctl 1 "$version" "$(date -u +%Y-%m-%d)" "control the pyhost daemon" \
    >"$dest/usr/local/share/man/man1/pyctl.1"
chmod 0644 "$dest/usr/local/share/man/man8/pyhostd.8" "$dest/usr/local/share/man/man1/pyctl.1"
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
