#!/usr/bin/env bash
# bench/cgroup.sh: the cost of containment (issue 14). pyhostd serve of
# bench/apps/hello.py (2 processes x 4 threads, memory_max and tasks_max
# set), alternately with its cgroups and without (PYHOST_CGROUPS=0), in the
# same run: wrk -c64 throughput for DURATION s, then RELOADS pyctl reloads
# (each starts 2 new workers, in cgroups or not, and drains the old),
# timed. Prints a markdown table: one row per round and mode.
#
# Runs as root (cgroups; the app runs as BENCH_USER, default pyhostbench,
# made by bench/run.sh, else pyhost-test). Take the machine lock:
#   flock /run/lock/pyhost-bench.lock bench/cgroup.sh
# Knobs: PYHOSTD PYCTL ROUNDS (3) DURATION (10) RELOADS (5) PORT (18990).
set -euo pipefail

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
PYHOSTD=${PYHOSTD:-$REPO/bin/pyhostd}
PYCTL=${PYCTL:-$(dirname -- "$PYHOSTD")/pyctl}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
RELOADS=${RELOADS:-5}
PORT=${PORT:-18990}
BENCH_USER=${BENCH_USER:-pyhostbench}
id -u "$BENCH_USER" >/dev/null 2>&1 || BENCH_USER=pyhost-test
id -u "$BENCH_USER" >/dev/null 2>&1 || { echo "no user $BENCH_USER" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }

work=$(mktemp -d /tmp/pyhost-cgbench-XXXXXX)
chmod 755 "$work"
cp "$REPO/bench/apps/hello.py" "$work/"
cat >"$work/hello.toml" <<TOML
script = "hello.py"
processes = 2
threads = 4
memory_max = "1GiB"
tasks_max = 200
TOML
chmod 644 "$work"/*
pid=
cleanup() { [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

run_one() { # $1: on|off
    local env=() rps ms=() t0 t1 i
    [ "$1" = off ] && env=(PYHOST_CGROUPS=0)
    env "${env[@]}" "$PYHOSTD" serve --listen 127.0.0.1:$PORT --user "$BENCH_USER" --python /usr/bin/python3 \
        --control-socket "$work/ctl.sock" "$work/hello.toml" >"$work/serve-$1.log" 2>&1 &
    pid=$!
    for i in $(seq 1 100); do curl -fs -o /dev/null http://127.0.0.1:$PORT/ && break; sleep 0.1; done
    wrk -t2 -c64 -d2s http://127.0.0.1:$PORT/ >/dev/null # warm-up
    rps=$(wrk -t2 -c64 -d"${DURATION}"s http://127.0.0.1:$PORT/ | awk '/Requests\/sec/ {print $2}')
    for i in $(seq 1 "$RELOADS"); do
        t0=$(date +%s%N)
        "$PYCTL" --socket "$work/ctl.sock" reload hello >/dev/null
        t1=$(date +%s%N)
        ms+=($(( (t1 - t0) / 1000000 )))
    done
    kill -TERM "$pid"; wait "$pid" || true; pid=
    printf '| %s | %s | %s | %s | %s |\n' "$round" "$1" "$rps" "$(printf '%s\n' "${ms[@]}" | median)" "${ms[*]}"
}

echo "| round | cgroups | hello c=64 req/s | reload (2 workers) median ms | reloads ms |"
echo "| --- | --- | --- | --- | --- |"
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then run_one on; run_one off; else run_one off; run_one on; fi
done
