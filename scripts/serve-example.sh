#!/usr/bin/env bash
# Serves examples/hello through pyhost: what `make serve` runs.
#
# As an ordinary user it serves as that user. As root it serves as an
# unprivileged user (SERVE_USER, default "nobody"), because pyhost never
# runs app code as root; if that user cannot read this checkout (a clone
# under /root, say), the example is copied to a private temporary
# directory it can read.
set -euo pipefail
cd "$(dirname "$0")/.."
listen=${1:-127.0.0.1:8000}
app=examples/hello/wsgi.py
args=(serve --listen "$listen" --processes 2 --threads 4)

if [ "$(id -u)" -eq 0 ]; then
    user=${SERVE_USER:-nobody}
    args+=(--user "$user")
    # An absolute path: the user must be able to enter every directory
    # above the app, not just read the file from here.
    if ! runuser -u "$user" -- test -r "$PWD/$app"; then
        tmp=$(mktemp -d /tmp/pyhost-example.XXXXXX)
        trap 'rm -rf "$tmp"' EXIT
        cp examples/hello/wsgi.py "$tmp/"
        chmod 755 "$tmp"
        chmod 644 "$tmp/wsgi.py"
        app=$tmp/wsgi.py
    fi
fi
# Not exec: the trap must still remove the copy after Ctrl-C.
bin/pyhostd "${args[@]}" "$app"
