#!/usr/bin/env bash
# bench/boot.sh: what a daemon of many idle apps costs at boot (issue 16,
# D8), and how long the first request to one of them takes.
#
# For each count N in COUNTS (default "100 1000"), it writes a system-mode
# config (pyhostd run) with N apps of one user, each a hello-world WSGI
# app with idle_timeout = "10m" and 1 process, starts the daemon, and
# measures:
#   - boot: seconds from exec to the daemon's "serving:" line;
#   - the daemon's process tree (the master and every descendant: proxy,
#     fork servers, workers): process count and RSS summed, sampled every
#     second for SETTLE (10) s after "serving:"; the peak and the last
#     sample are reported;
#   - first request: curl's time_total for the first request to each of
#     SAMPLES (10) apps spread over the N, one after another (a cold start
#     when the app was idle: worker, and fork server, started for it);
#     median and max.
# The daemon is stopped (SIGTERM to the pid it started) before the next N.
#
# Runs as root (system mode runs apps as another user); creates the user
# pyhostboot (with a home) when missing. Hold the bench lock:
#
#   flock /run/lock/pyhost-bench.lock bench/boot.sh
#   PYHOSTD=/tmp/wt/bin/pyhostd LABEL=before flock /run/lock/pyhost-bench.lock bench/boot.sh
#
# Knobs (environment): PYHOSTD (default bin/pyhostd next to this
# folder), COUNTS, SETTLE, SAMPLES, PORT (default 18480), LABEL (a name
# for the binary in the report), KEEP_WORKDIR=1. The report (markdown)
# goes to stdout; progress to stderr.

set -euo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
PYHOSTD=${PYHOSTD:-$HERE/../bin/pyhostd}
COUNTS=${COUNTS:-"100 1000"}
SETTLE=${SETTLE:-10}
SAMPLES=${SAMPLES:-10}
PORT=${PORT:-18480}
LABEL=${LABEL:-$(basename -- "$PYHOSTD")}
KEEP_WORKDIR=${KEEP_WORKDIR:-}
readonly APP_USER=pyhostboot PROXY_USER=pyhostbench

die() { echo "boot.sh: $*" >&2; exit 1; }
say() { echo "boot.sh: $*" >&2; }

[ "$(id -u)" = 0 ] || die "run as root (system mode runs the apps as $APP_USER)"
[ -x "$PYHOSTD" ] || die "no pyhostd at $PYHOSTD (make build, or set PYHOSTD)"
command -v curl >/dev/null || die "curl is needed"
[[ $SETTLE =~ ^[0-9]+$ && $SAMPLES =~ ^[0-9]+$ && $SAMPLES -ge 1 ]] || die "SETTLE and SAMPLES are whole numbers"
for n in $COUNTS; do [[ $n =~ ^[0-9]+$ && $n -ge 1 && $n -le 5000 ]] || die "COUNTS: 1 to 5000 apps each (got '$n')"; done

id -u "$APP_USER" >/dev/null 2>&1 || useradd --create-home --shell /usr/sbin/nologin "$APP_USER"
id -u "$PROXY_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$PROXY_USER"
HOME_DIR=$(getent passwd "$APP_USER" | cut -d: -f6)
APPS_DIR=$HOME_DIR/.config/pyhost/apps

# Many apps: a pipe, a socket and a log per app in the master.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d /tmp/pyhost-boot-XXXXXX)
chmod 755 "$WORK"
DAEMON_PID=
cleanup() {
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
    fi
    rm -rf "$APPS_DIR" "$HOME_DIR"/bootapp
    [ -n "$KEEP_WORKDIR" ] || rm -rf "$WORK"
}
trap cleanup EXIT

# tree_stats PID: "PROCESSES RSS_KIB" summed over PID and its descendants.
tree_stats() {
    ps -e -o pid=,ppid=,rss= | awk -v root="$1" '
        { parent[$1] = $2; rss[$1] = $3 }
        END {
            n = 0; sum = 0
            for (p in parent) {
                for (q = p; q > 1; q = parent[q]) {
                    if (q == root) { n++; sum += rss[p]; break }
                    if (!(q in parent)) break
                }
            }
            print n, sum
        }'
}

now() { date +%s.%N; }

# write_apps N: one hello app (shared code) and N app files.
write_apps() {
    local n=$1 i
    rm -rf "$APPS_DIR" "$HOME_DIR"/bootapp
    mkdir -p "$APPS_DIR" "$HOME_DIR/bootapp"
    cat >"$HOME_DIR/bootapp/wsgi.py" <<'PY'
def application(environ, start_response):
    body = b"hello\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
PY
    for ((i = 0; i < n; i++)); do
        printf 'domains = ["app%d.boot.bench"]\nscript = "wsgi.py"\ndirectory = "~/bootapp"\nprocesses = 1\nthreads = 2\nidle_timeout = "10m"\n' "$i" >"$APPS_DIR/app$i.toml"
    done
    chown -R "$APP_USER:" "$HOME_DIR/.config" "$HOME_DIR/bootapp"
}

write_admin() {
    local dir=$1
    mkdir -p "$dir/run" "$dir/log" "$dir/lib" "$dir/apps.d"
    cat >"$dir/pyhost.toml" <<EOF
[proxy]
listen = ["127.0.0.1:$PORT"]
user = "$PROXY_USER"

[daemon]
state_dir = "$dir/run"
log_dir = "$dir/log"
data_dir = "$dir/lib"

[apps]
admin_dir = "$dir/apps.d"

[users.$APP_USER]
domains = ["*.boot.bench"]
EOF
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "| binary | apps | boot (s) | processes at peak | peak RSS (MiB) | processes after ${SETTLE} s | RSS after ${SETTLE} s (MiB) | first request, median (ms) | first request, max (ms) |"
echo "|---|---|---|---|---|---|---|---|---|"
for n in $COUNTS; do
    dir=$WORK/n$n
    write_admin "$dir"
    write_apps "$n"
    say "$LABEL: $n apps: starting"
    log=$dir/daemon.log
    t0=$(now)
    "$PYHOSTD" run --config "$dir/pyhost.toml" >"$log" 2>&1 &
    DAEMON_PID=$!
    # Wait for "serving:" (every app counted as started), at most 20 min.
    for ((i = 0; i < 12000; i++)); do
        grep -q 'serving:' "$log" && break
        kill -0 "$DAEMON_PID" 2>/dev/null || { tail -20 "$log" >&2; die "pyhostd exited before serving"; }
        sleep 0.1
    done
    grep -q 'serving:' "$log" || die "pyhostd did not serve within 20 minutes"
    boot=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
    peak_n=0 peak_rss=0 last_n=0 last_rss=0
    for ((s = 0; s <= SETTLE; s++)); do
        read -r last_n last_rss < <(tree_stats "$DAEMON_PID")
        if ((last_rss > peak_rss)); then peak_rss=$last_rss peak_n=$last_n; fi
        ((s == SETTLE)) || sleep 1
    done
    say "$LABEL: $n apps: serving after ${boot}s; peak $peak_n processes, $((peak_rss / 1024)) MiB"
    times=()
    step=$((n / SAMPLES > 0 ? n / SAMPLES : 1))
    for ((k = 0, i = 0; k < SAMPLES && i < n; k++, i += step)); do
        out=$(curl -s -o /dev/null --max-time 60 -H "Host: app$i.boot.bench" -w '%{http_code} %{time_total}' "http://127.0.0.1:$PORT/")
        [ "${out%% *}" = 200 ] || die "first request to app$i: $out"
        times+=("$(awk -v t="${out#* }" 'BEGIN { printf "%.1f", t * 1000 }')")
    done
    med=$(printf '%s\n' "${times[@]}" | median)
    mx=$(printf '%s\n' "${times[@]}" | sort -g | tail -1)
    echo "| $LABEL | $n | $boot | $peak_n | $((peak_rss / 1024)) | $last_n | $((last_rss / 1024)) | $med | $mx |"
    kill -TERM "$DAEMON_PID"
    wait "$DAEMON_PID" 2>/dev/null || true
    DAEMON_PID=
done
