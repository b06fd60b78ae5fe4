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
# Knobs: PYHOSTD PYCTL ROUNDS (3) DURATION (10) RELOADS (5) PORT (18990)
# PARTS ("cost neighbour": either or both).
#
# The neighbour part (issue 14, "prove it"): one pyhostd run (system mode)
# with three apps of two users: B (hello.py, 2 x 4, user NB_USER_B,
# default pyhostboot) and, as BENCH_USER, spincap (bench/apps/spin.py,
# 4 x 1, cpu_max = "20%") and spinfree (the same, no cpu_max). Per round:
# B's latency (wrk -t1 -c4 -dNB_SECONDS --latency) (1) with both spin
# apps idle, (2) while 4 curl loops ask spincap for /spin?s=1 and (3) the
# same against spinfree; each loop stops after NB_SECONDS+2 s or 50
# requests. Prints B's p50/p99, the ratio of each to (1), and the spin
# app's CPU share (its cgroup_cpu_seconds delta, pyctl status --json, over
# the elapsed time; 100 % is one CPU). B gets a discarded 2 s wrk warm-up
# first. Knobs: NB_SECONDS (5) NB_PORT (18991) NB_USER_A (pyhost-test)
# NB_USER_B (pyhostboot) NB_DEBUG=1 (status, wrk output, log at the end)
# NB_CAP (spincap's keys, default 'cpu_max = "20%"'; e.g.
# 'cpu_max = "20%"\ncpu_weight = 1').
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

PARTS=${PARTS:-"cost neighbour"}
NB_SECONDS=${NB_SECONDS:-5}
NB_PORT=${NB_PORT:-18991}
NB_USER_A=${NB_USER_A:-pyhost-test}
NB_CAP=${NB_CAP:-'cpu_max = "20%"'} # spincap's containment keys (printf %b: \n between keys)
NB_USER_B=${NB_USER_B:-pyhostboot}
[[ $NB_SECONDS =~ ^[0-9]+$ && $NB_SECONDS -ge 1 && $NB_SECONDS -le 60 ]] || { echo "NB_SECONDS: 1 to 60" >&2; exit 1; }

if [[ " $PARTS " == *" cost "* ]]; then
echo "| round | cgroups | hello c=64 req/s | reload (2 workers) median ms | reloads ms |"
echo "| --- | --- | --- | --- | --- |"
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then run_one on; run_one off; else run_one off; run_one on; fi
done
fi

[[ " $PARTS " == *" neighbour "* ]] || exit 0
for u in "$NB_USER_A" "$NB_USER_B"; do
    id -u "$u" >/dev/null 2>&1 || { echo "no user $u (NB_USER_A, NB_USER_B)" >&2; exit 1; }
    [ "$u" != pyhostbench ] || { echo "pyhostbench is the proxy's user, not an app's" >&2; exit 1; }
done
[ "$NB_USER_A" != "$NB_USER_B" ] || { echo "NB_USER_A and NB_USER_B must differ" >&2; exit 1; }
nb=$work/nb
mkdir -p "$nb/run" "$nb/log" "$nb/lib" "$nb/apps.d" "$nb/code"
cp "$REPO/bench/apps/hello.py" "$REPO/bench/apps/spin.py" "$nb/code/"
chmod 755 "$nb" "$nb/code"; chmod 644 "$nb/code"/*
cat >"$nb/pyhost.toml" <<TOML
[proxy]
listen = ["127.0.0.1:$NB_PORT"]
user = "pyhostbench"

[daemon]
state_dir = "$nb/run"
log_dir = "$nb/log"
data_dir = "$nb/lib"

[apps]
admin_dir = "$nb/apps.d"

[users.$NB_USER_B]
domains = ["b.nb.bench"]

[users.$NB_USER_A]
domains = ["*.nb.bench"]
TOML
cat >"$nb/apps.d/b.toml" <<TOML
user = "$NB_USER_B"
domains = ["b.nb.bench"]
directory = "$nb/code"
script = "hello.py"
processes = 2
threads = 4
TOML
for a in spincap spinfree; do
    cat >"$nb/apps.d/$a.toml" <<TOML
user = "$NB_USER_A"
domains = ["$a.nb.bench"]
directory = "$nb/code"
script = "spin.py"
processes = 4
threads = 1
$([ $a = spincap ] && printf '%b\n' "$NB_CAP")
TOML
done
chmod 644 "$nb/apps.d"/*

"$PYHOSTD" run --config "$nb/pyhost.toml" >"$nb/daemon.log" 2>&1 &
pid=$!
for i in $(seq 1 300); do
    grep -q 'serving:' "$nb/daemon.log" && break
    kill -0 "$pid" 2>/dev/null || { tail -20 "$nb/daemon.log" >&2; exit 1; }
    sleep 0.1
done
for a in b spincap spinfree; do # start each app's workers before measuring
    for i in $(seq 1 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Host: $a.nb.bench" http://127.0.0.1:$NB_PORT/)" = 200 ] && break
        sleep 0.1
    done
    [ "$(curl -s --max-time 5 -H "Host: $a.nb.bench" http://127.0.0.1:$NB_PORT/)" = Hello! ] ||
        { echo "app $a does not answer Hello!" >&2; tail -20 "$nb/daemon.log" >&2; exit 1; }
done

cpu_of() { # $1: app name; its cgroup_cpu_seconds
    "$PYCTL" --socket "$nb/run/control.sock" status --json | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
apps = d if isinstance(d, list) else d.get("apps", [])
print(next(a["cgroup_cpu_seconds"] for a in apps if a["name"] == sys.argv[1]))' "$1"
}

wrk_b() { # B's latency: prints "p50_ms p99_ms req/s"
    wrk -t1 -c4 -d"${NB_SECONDS}"s --latency --timeout 5s -H "Host: b.nb.bench" http://127.0.0.1:$NB_PORT/ | tee -a "$nb/wrk.log" | awk '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) } /Requests\/sec/ { r = $2 }
        /Non-2xx|Socket errors/ { bad = 1 }
        END { if (bad) { print "B: errors under wrk" > "/dev/stderr"; exit 1 } printf "%.2f %.2f %.0f\n", p50, p99, r }'
}

spin_loops() { # $1: app; 4 loops of /spin?s=1, each bounded in time and count
    local end=$(( $(date +%s) + NB_SECONDS + 2 )) j
    loops=()
    for j in 1 2 3 4; do
        ( for k in $(seq 1 50); do
              [ "$(date +%s)" -lt "$end" ] || break
              curl -s -o /dev/null --max-time 12 -H "Host: $1.nb.bench" "http://127.0.0.1:$NB_PORT/spin?s=1" || true
          done ) &
        loops+=($!)
    done
}

wrk -t1 -c4 -d2s -H "Host: b.nb.bench" http://127.0.0.1:$NB_PORT/ >/dev/null # warm-up
echo
echo "| round | neighbour | B p50 ms | B p99 ms | B req/s | p50 / idle | p99 / idle | neighbour CPU % of one CPU |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for round in $(seq 1 "$ROUNDS"); do
    read -r i50 i99 irps < <(wrk_b)
    echo "| $round | idle | $i50 | $i99 | $irps | 1 | 1 | - |"
    for a in spincap spinfree; do
        c0=$(cpu_of $a); t0=$(date +%s%N)
        spin_loops $a
        sleep 1 # let the 4 spins take their CPU before B is measured
        read -r l50 l99 lrps < <(wrk_b)
        c1=$(cpu_of $a); t1=$(date +%s%N)
        wait "${loops[@]}" 2>/dev/null || true
        share=$(awk -v a="$c0" -v b="$c1" -v e="$(( (t1 - t0) / 1000000 ))" 'BEGIN { printf "%.0f", (b - a) * 100000 / e }')
        printf '| %s | %s | %s | %s | %s | %.2f | %.2f | %s |\n' "$round" "$a" "$l50" "$l99" "$lrps" \
            "$(awk -v x="$l50" -v y="$i50" 'BEGIN { print x / y }')" "$(awk -v x="$l99" -v y="$i99" 'BEGIN { print x / y }')" "$share"
    done
done
[ -z "${NB_DEBUG:-}" ] || { "$PYCTL" --socket "$nb/run/control.sock" status --json; curl -si -H "Host: b.nb.bench" http://127.0.0.1:$NB_PORT/; cat "$nb/wrk.log"; tail -5 "$nb/daemon.log"; } >&2
kill -TERM "$pid"; wait "$pid" || true; pid=
