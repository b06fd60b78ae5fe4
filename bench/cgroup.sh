#!/usr/bin/env bash
# bench/cgroup.sh: the cost of containment (issue 14). pyhostd serve of
# bench/apps/hello.py (2 processes x 4 threads, memory_max and tasks_max
# set), alternately with its cgroups and without (PYHOST_CGROUPS=0), in the
# same run: wrk -c64 throughput for DURATION s, then RELOADS pyctl reloads
# (each starts 2 new workers, in cgroups or not, and drains the old),
# timed. Prints a markdown table: one row per round and mode.
#
# Runs as root (cgroups; the app runs as BENCH_USER, default pyhostbench,
# made by bench/run.sh, else pyhost-test). It takes the machine lock
# itself, as bench/run.sh does (do not wrap it in flock):
#   LOCK_WAIT=600 bench/cgroup.sh
# Knobs: PYHOSTD PYCTL ROUNDS (3) DURATION (10) RELOADS (5) PORT (18990)
# PARTS ("cost neighbour": either or both) LOCK_WAIT (0: s to wait for the
# lock). PYHOSTD may list several builds, space-separated
# (PYHOSTD="/tmp/old/pyhostd /tmp/new/pyhostd"): the neighbour part then
# runs them in turn, ROUNDS times over (old, new, new, old, ...), each in
# a pyhostd run of its own, and labels the rows with the build's
# directory.
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
# 'cpu_max = "20%"\ncpu_weight = 1'), NB_SPINFREE=0 (skip the uncapped
# phase), NB_SCHED=1 (per phase, from /proc/PID/task/*/schedstat: the
# time B's worker threads, the proxy's and the master's waited runnable
# per B request, and the capped group's cpu.stat: periods, throttled
# periods, throttled ms), NB_PERF=DIR (perf sched record -a of 3 s during
# B's wrk in each phase, kept in DIR for perf sched latency/timehist, and
# summed up at the end: B-path waits over 2 ms and who ran meanwhile),
# NB_SPIN_SLICE=µs (sets the EEVDF slice of spincap's threads by hand
# after the start, to try a slice without a build), NB_PROXY_SLICE=µs
# (the same for the proxy's threads), NB_DAEMON_SHARES=N (the proxy moved
# by hand into a v1 cpu group TREE/daemon of cpu.shares N; with
# NB_DAEMON_MASTER=1 the master too), NB_SPIN_PROCS (4: processes of
# each spin app; the 4 curl loops then share them), NB_DELAY_MS=N (B's
# wrk paced: each of its 4 connections waits N ms between requests, so B
# does not itself saturate the CPUs; unset, B's wrk is a closed loop as
# fast as it goes).
set -euo pipefail

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
PYHOSTD=${PYHOSTD:-$REPO/bin/pyhostd}
PYHOSTD1=${PYHOSTD%% *} # the cost part's build: the first
PYCTL=${PYCTL:-$(dirname -- "$PYHOSTD1")/pyctl}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
RELOADS=${RELOADS:-5}
PORT=${PORT:-18990}
BENCH_USER=${BENCH_USER:-pyhostbench}
id -u "$BENCH_USER" >/dev/null 2>&1 || BENCH_USER=pyhost-test
id -u "$BENCH_USER" >/dev/null 2>&1 || { echo "no user $BENCH_USER" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
# One benchmark at a time on the machine (bench/run.sh's lock); the
# servers started below close fd 9, so none outlives us holding it.
exec 9>/run/lock/pyhost-bench.lock
flock -w "${LOCK_WAIT:-0}" 9 || { echo "another benchmark holds /run/lock/pyhost-bench.lock (LOCK_WAIT=N waits N s)" >&2; exit 1; }

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
    env "${env[@]}" "$PYHOSTD1" serve --listen 127.0.0.1:$PORT --user "$BENCH_USER" --python /usr/bin/python3 \
        --control-socket "$work/ctl.sock" "$work/hello.toml" >"$work/serve-$1.log" 2>&1 9>&- &
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
mkdir -p "$nb/apps.d" "$nb/code"
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
processes = ${NB_SPIN_PROCS:-4}
threads = 1
$([ $a = spincap ] && printf '%b\n' "$NB_CAP")
TOML
done
chmod 644 "$nb/apps.d"/*

status_json() { "$PYCTL_NB" --socket "$nb/run/control.sock" status --json; }

nb_start() { # $1: pyhostd; the daemon of the three apps, each answering, B warmed up
    rm -rf "$nb/run" "$nb/log" "$nb/lib"
    mkdir -p "$nb/run" "$nb/log" "$nb/lib"
    PYCTL_NB=$(dirname -- "$1")/pyctl
    [ -x "$PYCTL_NB" ] || PYCTL_NB=$PYCTL
    "$1" run --config "$nb/pyhost.toml" >"$nb/daemon.log" 2>&1 9>&- &
    pid=$!
    local i a
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
    wrk -t1 -c4 -d2s -H "Host: b.nb.bench" http://127.0.0.1:$NB_PORT/ >/dev/null # warm-up
    [ -z "${NB_SPIN_SLICE:-}" ] || set_slice "$NB_SPIN_SLICE" $(pids_of spincap)
    [ -z "${NB_PROXY_SLICE:-}" ] || set_slice "$NB_PROXY_SLICE" $(pgrep -P "$pid" -f __proxy)
    if [ -n "${NB_DAEMON_SHARES:-}" ]; then # the proxy and master moved by hand into TREE/daemon of the v1 cpu hierarchy
        local tree
        tree=$(awk -F: '$2 ~ /(^|,)cpu(,|$)/ { sub(/\/apps\/.*/, "", $3); print $3 }' /proc/"$(pids_of b | awk '{print $1}')"/cgroup)
        mkdir -p /sys/fs/cgroup/cpu"$tree"/daemon
        echo "$NB_DAEMON_SHARES" >/sys/fs/cgroup/cpu"$tree"/daemon/cpu.shares
        for p in $(pgrep -P "$pid" -f __proxy) ${NB_DAEMON_MASTER:+$pid}; do echo "$p" >/sys/fs/cgroup/cpu"$tree"/daemon/cgroup.procs; done
    fi
}

set_slice() { # $1: µs; pids...: every thread's EEVDF slice (sched_setattr sched_runtime; Linux 6.12+)
    /usr/bin/python3 - "$@" <<'PY'
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
ns = int(sys.argv[1]) * 1000
for pid in sys.argv[2:]:
    for tid in os.listdir("/proc/%s/task" % pid):
        attr = ctypes.create_string_buffer(struct.pack("IIQiIQQQ", 48, 0, 0, 0, 0, ns, 0, 0), 48)
        if libc.syscall(314, int(tid), attr, 0) != 0:  # SYS_sched_setattr, x86-64
            sys.exit("sched_setattr %s: %s" % (tid, os.strerror(ctypes.get_errno())))
PY
}

nb_stop() {
    [ -z "${NB_DEBUG:-}" ] || { status_json; curl -si -H "Host: b.nb.bench" http://127.0.0.1:$NB_PORT/; cat "$nb/wrk.log"; tail -5 "$nb/daemon.log"; } >&2
    kill -TERM "$pid"; wait "$pid" || true; pid=
}

cpu_of() { # $1: app name; its cgroup_cpu_seconds
    status_json | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
apps = d if isinstance(d, list) else d.get("apps", [])
print(next(a["cgroup_cpu_seconds"] for a in apps if a["name"] == sys.argv[1]))' "$1"
}

pids_of() { # $1: app name; its workers' pids
    status_json | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
apps = d if isinstance(d, list) else d.get("apps", [])
print(" ".join(str(w["pid"]) for a in apps if a["name"] == sys.argv[1] for w in a["workers"]))' "$1"
}

sched_sum() { # pids: "run_ns wait_ns" summed over their threads (/proc/PID/task/*/schedstat)
    local p f a b c r=0 w=0
    for p in "$@"; do
        for f in /proc/"$p"/task/*/schedstat; do
            read -r a b c 2>/dev/null <"$f" || continue
            r=$((r + a)); w=$((w + b))
        done
    done
    echo "$r $w"
}

throttle_of() { # $1: a pid; "nr_periods nr_throttled throttled_ns" of its v1 cpu group
    local dir
    [ -n "$1" ] && [ -r /proc/"$1"/cgroup ] || { echo "0 0 0"; return; }
    dir=$(awk -F: '$2 ~ /(^|,)cpu(,|$)/ { print $3 }' /proc/"$1"/cgroup)
    [ -d /sys/fs/cgroup/cpu"$dir" ] && dir=/sys/fs/cgroup/cpu$dir || dir=/sys/fs/cgroup/cpu,cpuacct$dir
    awk '$1 == "nr_periods" { p = $2 } $1 == "nr_throttled" { t = $2 } $1 == "throttled_time" { n = $2 } END { printf "%d %d %.0f\n", p, t, n }' "$dir/cpu.stat" 2>/dev/null || echo "0 0 0"
}

wrk_b() { # B's latency: prints "p50_ms p99_ms req/s"
    local pace=()
    if [ -n "${NB_DELAY_MS:-}" ]; then # each connection waits this long between its requests
        printf 'function delay() return %d end\n' "$NB_DELAY_MS" >"$nb/delay.lua"
        pace=(-s "$nb/delay.lua")
    fi
    wrk -t1 -c4 -d"${NB_SECONDS}"s --latency --timeout 5s "${pace[@]}" -H "Host: b.nb.bench" http://127.0.0.1:$NB_PORT/ | tee -a "$nb/wrk.log" | awk '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) } /Requests\/sec/ { r = $2 }
        /Non-2xx|Socket errors/ { bad = 1 }
        END { if (bad) { print "B: errors under wrk" > "/dev/stderr"; exit 1 } printf "%.2f %.2f %.0f\n", p50, p99, r }'
}

measure_b() { # $1: phase name; B's wrk, with NB_SCHED's and NB_PERF's figures around it; sets m50 m99 mrps
    local bp px sp s0 s1 p0 p1 x0 x1 t0 t1 perf= app
    if [ -n "${NB_SCHED:-}" ]; then
        bp=$(pids_of b); px=$(pgrep -P "$pid" -f __proxy | tr '\n' ' '); sp=$(pids_of spincap | awk '{print $1}')
        read -r -a s0 < <(sched_sum $bp); read -r -a p0 < <(sched_sum $px); read -r -a x0 < <(sched_sum "$pid"); read -r -a t0 < <(throttle_of "$sp")
    fi
    if [ -n "${NB_PERF:-}" ]; then
        mkdir -p "$NB_PERF"
        { # who is who, by thread id, for the analysis
            for app in b spincap spinfree; do echo "$app $(for p in $(pids_of $app); do ls /proc/"$p"/task; done | tr '\n' ' ')"; done
            echo "proxy $(for p in $(pgrep -P "$pid" -f __proxy); do ls /proc/"$p"/task; done | tr '\n' ' ')"
            echo "master $(ls /proc/"$pid"/task | tr '\n' ' ')"
        } >"$NB_PERF/r$round-$label-$1.tids"
        ( sleep 1; exec perf sched record -a -o "$NB_PERF/r$round-$label-$1.data" -- sleep 3 ) >/dev/null 2>&1 9>&- &
        perf=$!
    fi
    read -r m50 m99 mrps < <(wrk_b)
    [ -z "$perf" ] || wait "$perf" || true
    if [ -n "${NB_SCHED:-}" ]; then
        read -r -a s1 < <(sched_sum $bp); read -r -a p1 < <(sched_sum $px); read -r -a x1 < <(sched_sum "$pid"); read -r -a t1 < <(throttle_of "$sp")
        awk -v r="$round" -v b="$label" -v ph="$1" -v n="$(( mrps * NB_SECONDS ))" \
            -v br="$(( s1[0] - s0[0] ))" -v bw="$(( s1[1] - s0[1] ))" -v pr="$(( p1[0] - p0[0] ))" -v pw="$(( p1[1] - p0[1] ))" \
            -v xw="$(( x1[1] - x0[1] ))" -v tp="$(( t1[0] - t0[0] ))" -v tt="$(( t1[1] - t0[1] ))" -v tn="$(( t1[2] - t0[2] ))" 'BEGIN {
            printf "| %s | %s | %s | %.1f | %.1f | %.1f | %.1f | %.2f | %d | %d | %.0f |\n", r, b, ph, br / n / 1000, bw / n / 1000, pr / n / 1000, pw / n / 1000, xw / n / 1000, tp, tt, tn / 1e6 }' >>"$nb/sched.md"
    fi
}

spin_loops() { # $1: app; 4 loops of /spin?s=1, each bounded in time and count
    local end=$(( $(date +%s) + NB_SECONDS + 2 )) j
    loops=()
    for j in 1 2 3 4; do
        ( for k in $(seq 1 50); do
              [ "$(date +%s)" -lt "$end" ] || break
              curl -s -o /dev/null --max-time 12 -H "Host: $1.nb.bench" "http://127.0.0.1:$NB_PORT/spin?s=1" || true
          done ) 9>&- &
        loops+=($!)
    done
}

nb_round() { # $1: pyhostd; one round of the three phases in a daemon of its own
    label=$(basename -- "$(dirname -- "$1")")
    nb_start "$1"
    measure_b idle
    local i50=$m50 i99=$m99 a phases=spincap
    echo "| $round | $label | idle | $i50 | $i99 | $mrps | 1 | 1 | - |"
    [ "${NB_SPINFREE:-1}" = 0 ] || phases="spincap spinfree"
    for a in $phases; do
        c0=$(cpu_of $a); t0=$(date +%s%N)
        spin_loops $a
        sleep 1 # let the 4 spins take their CPU before B is measured
        measure_b $a
        c1=$(cpu_of $a); t1=$(date +%s%N)
        wait "${loops[@]}" 2>/dev/null || true
        share=$(awk -v a="$c0" -v b="$c1" -v e="$(( (t1 - t0) / 1000000 ))" 'BEGIN { printf "%.0f", (b - a) * 100000 / e }')
        printf '| %s | %s | %s | %s | %s | %s | %.2f | %.2f | %s |\n' "$round" "$label" "$a" "$m50" "$m99" "$mrps" \
            "$(awk -v x="$m50" -v y="$i50" 'BEGIN { print x / y }')" "$(awk -v x="$m99" -v y="$i99" 'BEGIN { print x / y }')" "$share"
    done
    nb_stop
}

read -r -a builds <<<"$PYHOSTD"
echo
echo "| round | build | neighbour | B p50 ms | B p99 ms | B req/s | p50 / idle | p99 / idle | neighbour CPU % of one CPU |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
: >"$nb/sched.md"
for round in $(seq 1 "$ROUNDS"); do
    order=("${builds[@]}")
    if [ $((round % 2)) = 0 ]; then # old, new; new, old; ...
        order=()
        for ((k = ${#builds[@]} - 1; k >= 0; k--)); do order+=("${builds[k]}"); done
    fi
    for b in "${order[@]}"; do nb_round "$b"; done
done
if [ -n "${NB_PERF:-}" ]; then
    echo
    echo "From each phase's perf sched record: the waits over 2 ms of B's worker threads, the proxy and wrk (from a wakeup, or from being switched out runnable, to running again), how many began with a preemption, how long the capped spinner ran on that CPU meanwhile, and the spinner's runs of 3 ms and more:"
    echo
    echo "| record | B-path waits > 2 ms | their ms | after a preemption | spinner ran, ms | spinner runs >= 3 ms |"
    echo "| --- | --- | --- | --- | --- | --- |"
    for f in "$NB_PERF"/*.data; do
        perf script -i "$f" -F comm,pid,cpu,time,event,trace 2>/dev/null | /usr/bin/python3 -c '
import collections, re, sys
role = {}
for line in open(sys.argv[1]):
    f = line.split()
    for t in f[1:]:
        role[int(t)] = f[0]
path = ("b", "proxy", "wrk")
ev = re.compile(r"^\s*(.*?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:(\w+):\s+(.*)$")
cur, ran, waiting, waits, runs = {}, collections.defaultdict(list), {}, [], []
def who(pid, comm):
    return role.get(pid, "wrk" if comm == "wrk" else "other")
for line in sys.stdin:
    m = ev.match(line)
    if not m:
        continue
    comm, pid, cpu, t, name, rest = m.group(1), int(m.group(2)), int(m.group(3)), float(m.group(4)), m.group(5), m.group(6)
    if name in ("sched_wakeup", "sched_wakeup_new"):
        d = dict(re.findall(r"(\w+)=(\S+)", rest))
        waiting[int(d["pid"])] = (t, int(d.get("target_cpu", cpu)), False)
    elif name == "sched_switch":
        left, right = rest.split("==>")
        pp = int(re.search(r"prev_pid=(\d+)", left).group(1))
        np_ = int(re.search(r"next_pid=(\d+)", right).group(1))
        nc = re.search(r"next_comm=(.*?) next_pid", right).group(1)
        if cpu in cur:
            p0, c0, since = cur[cpu]
            ran[cpu].append((since, t, who(p0, c0)))
            if who(p0, c0) == "spincap":
                runs.append(t - since)
        cur[cpu] = (np_, nc, t)
        if np_ in waiting:
            tw, tc, pre = waiting.pop(np_)
            if who(np_, nc) in path and t - tw > 0.002:
                waits.append((tw, t, tc, pre))
        if re.search(r"prev_state=R", left):
            waiting[pp] = (t, cpu, True)
spin = sum(min(e, b) - max(s, a) for a, b, c, _ in waits for s, e, r in ran[c] if r == "spincap" and e > a and s < b)
print("%d | %.0f | %d | %.0f | %d" % (len(waits), sum(b - a for a, b, _, _ in waits) * 1000, sum(1 for w in waits if w[3]), spin * 1000, sum(1 for x in runs if x >= 0.003)))
' "${f%.data}.tids" | sed "s#^#| $(basename "$f" .data) | #; s#\$# |#"
    done
fi
if [ -n "${NB_SCHED:-}" ]; then
    echo
    echo "Per B request (wrk's count), µs: run and runnable wait of B's worker threads and of the proxy's, wait of the master's; the capped group's cpu.stat over B's wrk:"
    echo
    echo "| round | build | neighbour | B run | B wait | proxy run | proxy wait | master wait | periods | throttled | throttled ms |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    cat "$nb/sched.md"
fi
