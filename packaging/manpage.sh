#!/bin/sh
# Writes a man page for one of pyhost's commands on stdout, made from its
# --help and each subcommand's, so the page never disagrees with the
# binary: manpage.sh BINARY SECTION VERSION DATE "one-line summary".
# Used by build-deb.sh and install.sh; the docs in docs/ say the rest.
set -eu
bin=$1 section=$2 version=$3 date=$4 summary=$5
name=$(basename "$bin")
upper=$(printf '%s' "$name" | tr '[:lower:]' '[:upper:]')

# roff: a backslash, a minus sign and a leading dot or quote must be
# escaped; everything else is shown as the help prints it.
text() {
    sed -e 's/\\/\\e/g' -e 's/-/\\-/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"
}

# The subcommands cobra lists, but not help, which only repeats this.
commands() {
    "$bin" --help | sed -n '/^Available Commands:/,/^$/p' | sed '1d;/^$/d' |
        awk '{print $1}' | grep -v '^help$'
}

cat <<HEAD
.TH $upper $section "$date" "pyhost $version" "pyhost"
.SH NAME
$name \\- $summary
.SH SYNOPSIS
.B $name
.I COMMAND
.RI [ OPTIONS ]
.SH DESCRIPTION
.nf
HEAD
"$bin" --help | text
echo ".fi"
echo ".SH COMMANDS"
for c in $(commands); do
    echo ".SS \"$name $c\""
    echo ".nf"
    "$bin" "$c" --help | text
    echo ".fi"
done
cat <<TAIL
.SH FILES
.TP
.I /etc/pyhost/pyhost.toml
the admin config: who may host apps, on which domains
.TP
.I /run/pyhost/control.sock
the control socket pyctl talks to
.TP
.I /var/log/pyhost/
the access log and each app's log, USER/APP.log
.SH SEE ALSO
.BR pyhostd (8),
.BR pyctl (1);
the admin guide, the app guide and the config reference in
.IR /usr/share/doc/pyhost/ .
TAIL
