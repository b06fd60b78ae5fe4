#!/usr/bin/env bash
# Installs what the test suite needs on a Debian/Ubuntu machine, and only
# what is missing, so running it again changes nothing. Without root or
# apt-get it checks and says what is missing instead.
set -euo pipefail

# Debian packages the tests use: the interpreter the workers run, and the
# frameworks the compatibility tests run unchanged (R5).
packages=(python3 python3-venv python3-pyflakes python3-flask python3-django python3-pyramid python3-falcon python3-bottle)
# The packaged logrotate rule runs under the real logrotate
# (integration/rotate_test.go); the .deb is checked by lintian
# (integration/deb_test.go).
packages+=(logrotate lintian)
# pyctl top's live view is driven in a real terminal (integration/ops_test.go).
packages+=(tmux)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "install-test-deps: missing Debian packages: ${missing[*]} (run as root: apt-get install ${missing[*]})" >&2
    exit 1
fi
echo "install-test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
