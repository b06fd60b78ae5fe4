#!/bin/sh
# Builds pyhost_VERSION_ARCH.deb from this checkout: what `make deb` runs.
# Needs Go and dpkg-dev (dpkg-deb, dpkg-shlibdeps), not root and not
# debhelper: the tree is staged here and packed with dpkg-deb
# --root-owner-group. docs/admin-guide.md says what the package does.
#
#   OUT          directory the .deb is written to (default bin)
#   DEB_VERSION  the package version (default: from git, see below)
#   DEB_MAINTAINER  the Maintainer field
#   GO           the go command
set -eu
cd "$(dirname "$0")/.."
out=${OUT:-bin}
go=${GO:-go}
maintainer=${DEB_MAINTAINER:-pyhost maintainers <pyhost@example.org>}
umask 022
export LC_ALL=C

# The version: a tag vX.Y.Z gives X.Y.Z (X.Y.Z+gitN.HASH past it);
# without tags 0.0~gitDATE.HASH, which sorts before any 0.0 release.
# "+dirty" marks a build from uncommitted changes.
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
stamp=$(git log -1 --format=%ct 2>/dev/null || date +%s)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$stamp}
if [ -z "${DEB_VERSION:-}" ]; then
    desc=$(git describe --tags --match 'v[0-9]*' 2>/dev/null || true)
    case "$desc" in
    v*-*-g*) DEB_VERSION=$(echo "$desc" | sed -E 's/^v(.*)-([0-9]+)-g([0-9a-f]+)$/\1+git\2.\3/') ;;
    v*) DEB_VERSION=${desc#v} ;;
    *) DEB_VERSION=0.0~git$(date -u -d "@$stamp" +%Y%m%d).$commit ;;
    esac
    if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
        DEB_VERSION=$DEB_VERSION+dirty
    fi
fi
case "$($go env GOARCH)" in
amd64) arch=amd64 ;;
arm64) arch=arm64 ;;
386) arch=i386 ;;
arm) arch=armhf ;;
*) echo "build-deb: no Debian architecture for GOARCH $($go env GOARCH)" >&2; exit 1 ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root/DEBIAN"

# PIE, stripped, full RELRO, no build paths: what lintian's hardening
# checks want (linked by the C linker, so that -z now applies). cgo stays on, so users come from NSS (LDAP,
# sssd), as `id` sees them.
# pyhost-sandbox, the sandbox's trampoline, is run by pyhostd only: in
# /usr/lib/pyhost (Debian policy 9.1.1), not on PATH, where pyhostd
# looks for it (package sandbox, Candidates).
echo "build-deb: building pyhostd, pyctl and pyhost-sandbox $DEB_VERSION"
install -d "$root/usr/bin" "$root/usr/lib/pyhost"
build() {
    CGO_CFLAGS="${CGO_CFLAGS:--O2 -g} -D_FORTIFY_SOURCE=2" $go build -trimpath -buildmode=pie \
        -ldflags "-s -w -X main.version=$DEB_VERSION -linkmode=external -extldflags=-Wl,-z,relro,-z,now" "$@"
}
build -o "$root/usr/bin/" ./cmd/pyhostd ./cmd/pyctl
build -o "$root/usr/lib/pyhost/" ./cmd/pyhost-sandbox
# The C linker's version notes, as dh_strip drops them.
strip --remove-section=.comment "$root/usr/bin/pyhostd" "$root/usr/bin/pyctl" "$root/usr/lib/pyhost/pyhost-sandbox"

# Files, with the paths of a package rather than of `make install`.
install -d "$root/etc/pyhost/apps.d" "$root/etc/logrotate.d" "$root/lib/systemd/system" \
    "$root/usr/share/doc/pyhost" "$root/usr/share/man/man1" "$root/usr/share/man/man8" \
    "$root/usr/share/bash-completion/completions"
install -m 0644 systemd/pyhost.toml.example "$root/etc/pyhost/pyhost.toml"
sed 's|/usr/local/bin/|/usr/bin/|g' systemd/pyhost.logrotate >"$root/etc/logrotate.d/pyhost"
sed -e 's|/usr/local/bin/|/usr/bin/|g' \
    -e 's|^Documentation=.*|Documentation=man:pyhostd(8) man:pyctl(1) file:///usr/share/doc/pyhost/|' \
    -e 's|Installed by scripts/install.sh|Installed by the pyhost package|' \
    systemd/pyhost.service >"$root/lib/systemd/system/pyhost.service"
chmod 0644 "$root/etc/logrotate.d/pyhost" "$root/lib/systemd/system/pyhost.service"

# Docs: compressed when over 4 KiB (Debian policy 12.3), so a link from
# one guide to another may need the .gz added.
for f in README.md docs/*.md; do
    install -m 0644 "$f" "$root/usr/share/doc/pyhost/"
done
install -m 0644 packaging/debian/copyright "$root/usr/share/doc/pyhost/copyright"
date=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
cat >"$root/usr/share/doc/pyhost/changelog" <<EOF
pyhost ($DEB_VERSION) unstable; urgency=medium

  * Built with "make deb" from commit $commit of the pyhost repository;
    its history is the repository's git log.

 -- $maintainer  $date
EOF
for f in "$root"/usr/share/doc/pyhost/*; do
    case "$f" in
    */copyright) ;;
    */changelog) gzip -9n "$f" ;;
    *) [ "$(stat -c %s "$f")" -le 4096 ] || gzip -9n "$f" ;;
    esac
done
# Man pages and completion from the binaries' own help.
day=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)
packaging/manpage.sh "$root/usr/bin/pyhostd" 8 "$DEB_VERSION" "$day" "host Python WSGI apps with supervised workers" \
    >"$root/usr/share/man/man8/pyhostd.8"
packaging/manpage.sh "$root/usr/bin/pyctl" 1 "$DEB_VERSION" "$day" "control the pyhost daemon" \
    >"$root/usr/share/man/man1/pyctl.1"
gzip -9n "$root/usr/share/man/man8/pyhostd.8" "$root/usr/share/man/man1/pyctl.1"
"$root/usr/bin/pyctl" completion bash >"$root/usr/share/bash-completion/completions/pyctl"
"$root/usr/bin/pyhostd" completion bash >"$root/usr/share/bash-completion/completions/pyhostd"
chmod 0644 "$root"/usr/share/man/*/*.gz "$root"/usr/share/bash-completion/completions/*

# Control files. The libc the binaries need, as dpkg-shlibdeps reads it
# (it wants a debian/control to sit next to).
mkdir -p "$work/src/debian"
printf 'Source: pyhost\n\nPackage: pyhost\nArchitecture: any\n' >"$work/src/debian/control"
shlibs=$(cd "$work/src" && dpkg-shlibdeps -O "$root/usr/bin/pyhostd" "$root/usr/bin/pyctl" "$root/usr/lib/pyhost/pyhost-sandbox" 2>/dev/null |
    sed -n 's/^shlibs:Depends=//p')
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: pyhost
Version: $DEB_VERSION
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Depends: ${shlibs:+$shlibs, }adduser, python3
Recommends: logrotate
Section: httpd
Priority: optional
Description: Python WSGI app hosting for the users of a shared server
 pyhost hosts the Python WSGI web apps of a server's Unix users, as
 Apache's mod_wsgi does in daemon mode, without Apache. A Go proxy
 running as an unprivileged user takes HTTP and routes each request by
 virtual host to a supervised group of Python workers that run as the
 app's owner; the supervisor restarts crashed workers and rolls new code
 in without dropping a request. Users deploy with pyctl.
EOF
printf '/etc/pyhost/pyhost.toml\n/etc/logrotate.d/pyhost\n' >"$root/DEBIAN/conffiles"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | sort | xargs md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"

mkdir -p "$out"
deb=$out/pyhost_${DEB_VERSION}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
