#!/usr/bin/env bash
# bench/faults.sh: what a failing worker costs under load (issue 11): the
# requests that fail and the time until the stack serves in full again,
# pyhost beside Apache + mod_wsgi (daemon mode) and nginx + uWSGI where the
# same fault can be produced.
#
# Scenarios (SCENARIOS), each on a fresh server with run.sh's stacks and
# configs (2 processes x 4 threads, apps/hello.py, as BENCH_USER):
#   kill-worker      kill -9 of one Python worker process        (every stack)
#   stopfs-kill      SIGSTOP of pyhost's fork server, then kill -9 of a worker
#   kill-forkserver  kill -9 of pyhost's fork server (its workers die with it)
#   stopfs-reload    SIGSTOP of pyhost's fork server, then pyctl reload
# For each: WARMUP s of load (discarded), then wrk -cCONNS for DURATION s
# with lib/timeline.lua (answers per 50 ms), the fault FAULT_AT s into it.
# Meanwhile the stack's worker processes are polled every 10 ms, to time
# their replacement. Report on stdout and in
# bench/results/faults-<timestamp>.md.
#
# Runs as root, like run.sh, whose functions it sources (install, start,
# check, stop by pid, cleanup). Knobs (environment): STACKS ROUNDS WARMUP
# PYHOSTD WRK_TIMEOUT PORT_BASE KEEP_WORKDIR of run.sh, and DURATION
# (default 8), CONNS (one value, default 32), FAULT_AT (default 2),
# SCENARIOS, PYCTL.

set -euo pipefail

FAULTS_SH=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)/faults.sh

DURATION=${DURATION:-8}
CONNS=${CONNS:-32}
FAULT_AT=${FAULT_AT:-2}
SCENARIOS=${SCENARIOS:-"kill-worker stopfs-kill kill-forkserver stopfs-reload"}

# shellcheck source=run.sh
source "$(dirname -- "$FAULTS_SH")/run.sh"

PYCTL=${PYCTL:-$(dirname -- "$PYHOSTD")/pyctl}
readonly KNOWN_SCENARIOS="kill-worker stopfs-kill kill-forkserver stopfs-reload"

check_fault_knobs() {
    check_knobs
    [[ $CONNS =~ ^[0-9]+$ ]] || die "CONNS must be one connection count here (got '$CONNS')"
    uint_between "$FAULT_AT" 1 600 || die "FAULT_AT must be whole seconds, 1 to 600 (got '$FAULT_AT')"
    ((FAULT_AT + 2 <= DURATION)) || die "FAULT_AT ($FAULT_AT) must leave at least 2 s of DURATION ($DURATION)"
    local s
    [ -n "${SCENARIOS// /}" ] || die "SCENARIOS is empty; choose among: $KNOWN_SCENARIOS"
    for s in $SCENARIOS; do
        case " $KNOWN_SCENARIOS " in *" $s "*) ;; *) die "SCENARIOS: unknown '$s'; choose among: $KNOWN_SCENARIOS" ;; esac
    done
}

# Which stacks a scenario applies to: the fork server is pyhost's alone.
scenario_applies() { # SCENARIO STACK
    case $1 in kill-worker) return 0 ;; esac
    [ "$2" = pyhost ]
}

# Per stack: the executable name of its Python worker processes, and a
# regex on the command line of a process that forks them without being one
# (pyhost's fork server), for benchtool.py's list_workers.
worker_exe() {
    case $1 in
        pyhost) echo '^python3' ;;
        apache-wsgi) echo '^apache2$' ;; # mod_wsgi's daemon processes: forks of Apache's parent
        nginx-uwsgi) echo '^uwsgi' ;;    # uWSGI's workers, forks of its master
    esac
}
worker_parent() { case $1 in pyhost) echo ' --fork-server( |$)' ;; esac; }

# The fault tool: runs wrk, produces the fault on time, times the
# replacement; then turns wrk's output and its own into one record. It
# imports benchtool.py for the process and wrk parsing it shares with
# run.sh and reload.sh.
write_tool() { # PATH
    cat >"$1" <<'PYEOF'
import argparse, json, os, pwd, re, signal, subprocess, sys, time

sys.path.insert(0, os.environ["BENCH_LIB"])
import benchtool as bt  # noqa: E402

POLL_S = 0.01


def fork_server(roots):
    for root in roots:
        for kid in bt.children_of(root):
            try:
                with open(f"/proc/{kid}/cmdline", "rb") as f:
                    if re.search(rb"\x00--fork-server(\x00|$)", f.read()):
                        return kid
            except OSError:
                pass
    return None


def run(a):
    uid = pwd.getpwnam(a.user).pw_uid
    exe_re = re.compile(a.worker_exe)
    parent_re = re.compile(a.worker_parent) if a.worker_parent else None
    roots = [int(p) for p in a.roots.split()]
    workers = lambda: {p for p, _ in bt.list_workers(roots, uid, exe_re, parent_re)}
    out = {"scenario": a.scenario, "stack": a.stack}
    wrk_out = open(a.wrk_out, "w", encoding="utf-8")
    t0 = time.monotonic()
    wrk = subprocess.Popen(a.wrk, stdin=subprocess.DEVNULL, stdout=wrk_out, stderr=subprocess.STDOUT)
    reload_proc = None
    gone = None  # the worker pids the fault took away
    try:
        while time.monotonic() - t0 < a.fault_at:
            time.sleep(POLL_S)
        before = workers()
        out["workers_before"] = sorted(before)
        fs = fork_server(roots) if a.scenario != "kill-worker" else None
        if a.scenario != "kill-worker" and fs is None:
            raise SystemExit("no fork server found under %s" % roots)
        out["fault_mono"] = time.monotonic()
        if a.scenario == "kill-worker":
            victim = min(before)
            os.kill(victim, signal.SIGKILL)
            gone = {victim}
        elif a.scenario == "stopfs-kill":
            os.kill(fs, signal.SIGSTOP)
            victim = min(before)
            os.kill(victim, signal.SIGKILL)
            gone = {victim}
        elif a.scenario == "kill-forkserver":
            os.kill(fs, signal.SIGKILL)
            gone = set(before)
        elif a.scenario == "stopfs-reload":
            os.kill(fs, signal.SIGSTOP)
            reload_proc = subprocess.Popen([a.pyctl, "--socket", a.socket, "reload"], stdin=subprocess.DEVNULL,
                                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            gone = set(before)
        while wrk.poll() is None:
            now = time.monotonic()
            rel = now - out["fault_mono"]
            if "respawn_s" not in out:
                w = workers()
                if len(w) >= a.min and not (w & gone):
                    out["respawn_s"] = rel
                    out["workers_after"] = sorted(w)
            if reload_proc is not None and "reload_s" not in out and reload_proc.poll() is not None:
                out["reload_s"] = rel
                out["reload_rc"] = reload_proc.returncode
                out["reload_out"] = reload_proc.stdout.read().decode("utf-8", "replace")[-2000:]
            time.sleep(POLL_S)
    finally:
        for p in (wrk, reload_proc):
            if p is not None and p.poll() is None:
                p.terminate()
                p.wait()
        wrk_out.close()
    out["wrk_rc"] = wrk.returncode
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(out, f)


def record(a):
    with open(a.events, encoding="utf-8") as f:
        ev = json.load(f)
    rec = dict(ev, round=a.round, status="ok")
    try:
        rec.update(bt.parse_wrk(a.wrk))
        bucket_s, ok, bad = bt.parse_timeline(a.wrk)
    except (OSError, ValueError, KeyError) as e:
        rec.update(status="failed", reason=f"no result: {e}")
    else:
        socket_errors = rec["err_connect"] + rec["err_read"] + rec["err_write"] + rec["err_timeout"]
        rec["failed"] = rec["http_errors"] + socket_errors
        rec["ok_rps"] = (rec["requests"] - rec["http_errors"]) / rec["duration_s"] if rec["duration_s"] else 0.0
        fault = ev.get("fault_mono")
        if fault is not None:
            # Each 50 ms bucket with error answers, by its end, from the fault.
            rel = [(b + 1) * bucket_s - fault for b in sorted(bad)]
            if rel:
                rec["first_error_s"], rec["last_error_s"] = round(rel[0], 3), round(rel[-1], 3)
            # Full service: the workers are back and no error answer is to come.
            ends = [v for v in (rec.get("respawn_s"), rec.get("last_error_s"), rec.get("reload_s")) if v is not None]
            if "respawn_s" in rec:
                rec["full_s"] = round(max(ends), 3)
    with open(a.out, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")
    if rec["status"] != "ok":
        print(f"    FAILED: {rec['reason']}", file=sys.stderr)
        return
    ms = lambda k: f"{rec[k] * 1000:.0f} ms" if k in rec else "-"
    print(f"    {rec['requests']} requests, {rec['failed']} failed ({rec['http_errors']} error answers, "
          f"{rec['failed'] - rec['http_errors']} socket errors); errors until {ms('last_error_s')}, "
          f"workers back after {ms('respawn_s')}, full service after {ms('full_s')}"
          + (f"; pyctl reload {ms('reload_s')} (exit {rec.get('reload_rc')})" if "reload_rc" in rec else ""),
          file=sys.stderr)


def report(a):
    with open(a.meta, encoding="utf-8") as f:
        meta = json.load(f)
    recs = [json.loads(l) for l in open(a.records, encoding="utf-8") if l.strip()]
    print(f"# Faults under load (bench/faults.sh, {meta['date']})\n")
    print(f"Command: `{meta['command']}`\n")
    print(f"Machine: {meta['cpu']}, {meta['cpus']} CPUs; each stack 2 processes x 4 threads, "
          f"`wrk -c{meta['conns']}` on /hello for {meta['duration']} s, the fault {meta['fault_at']} s in.\n")
    ms = lambda r, k: f"{r[k] * 1000:.0f}" if k in r else "-"
    for scen in meta["scenarios"]:
        rows = [r for r in recs if r["scenario"] == scen]
        if not rows:
            continue
        print(f"## {scen}\n")
        print("| stack | round | requests | failed | error answers | socket errors | last error after (ms) "
              "| workers back after (ms) | full service after (ms) | req/s (2xx) |" +
              (" pyctl reload (ms, exit) |" if scen == "stopfs-reload" else ""))
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if scen == "stopfs-reload" else ""))
        for r in rows:
            if r["status"] != "ok":
                print(f"| {r['stack']} | {r['round']} | failed: {r['reason']} |")
                continue
            line = (f"| {r['stack']} | {r['round']} | {r['requests']} | **{r['failed']}** | {r['http_errors']} | "
                    f"{r['failed'] - r['http_errors']} | {ms(r, 'last_error_s')} | {ms(r, 'respawn_s')} | "
                    f"{ms(r, 'full_s')} | {r['ok_rps']:.0f} |")
            if scen == "stopfs-reload":
                line += f" {ms(r, 'reload_s')}, {r.get('reload_rc', '-')} |"
            print(line)
        print()


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run")
    for k in ("scenario", "stack", "user", "worker-exe", "worker-parent", "roots", "wrk-out", "out", "pyctl", "socket"):
        p.add_argument("--" + k, default="")
    p.add_argument("--fault-at", type=float, required=True)
    p.add_argument("--min", type=int, required=True)
    p.add_argument("wrk", nargs=argparse.REMAINDER)
    p = sub.add_parser("record")
    for k in ("events", "wrk", "out"):
        p.add_argument("--" + k, required=True)
    p.add_argument("--round", type=int, required=True)
    p = sub.add_parser("report")
    p.add_argument("--meta", required=True)
    p.add_argument("--records", required=True)
    a = ap.parse_args()
    if a.cmd == "run":
        if a.wrk[:1] == ["--"]:
            a.wrk = a.wrk[1:]
        run(a)
    elif a.cmd == "record":
        record(a)
    else:
        report(a)


main()
PYEOF
}

# The control socket pyhostd printed, for pyctl reload.
control_socket() { # DIR
    local i sock=""
    for ((i = 0; i < 50; i++)); do
        sock=$(sed -n 's/^pyhost: control socket \([^ ]*\) .*/\1/p' "$1/pyhostd.log" | tail -n 1)
        [ -z "$sock" ] || break
        sleep 0.1
    done
    printf '%s' "$sock"
}

# One scenario on one stack: a fresh server, warm-up, the measured run with
# the fault, the record.
fault_run() { # ROUND SCENARIO STACK
    local round=$1 scen=$2 stack=$3 port dir raw sock="" rc
    local -a roots
    port=$(stack_port "$stack")
    dir=$WORK/r$round-$scen-$stack
    raw=$RAW_DIR/r$round-$scen-$stack
    mkdir -p -- "$dir" "$raw"
    log "round $round/$ROUNDS, $scen: $stack"
    STACK_ERROR=""
    if port_busy "$port"; then
        STACK_ERROR="port $port is already in use by another program (set PORT_BASE to move the bench ports)"
    elif ! "start_$stack" "$dir" "$port"; then
        :
    elif ! smoke_test "$port" "$dir"; then
        :
    elif [ "$stack" = pyhost ] && [ "$scen" = stopfs-reload ]; then
        sock=$(control_socket "$dir")
        [ -n "$sock" ] || STACK_ERROR="pyhostd printed no control socket path"
    fi
    if [ -n "$STACK_ERROR" ]; then
        warn "$stack failed: $STACK_ERROR"
        show_logs "$dir"
        printf '{"scenario":"%s","stack":"%s","round":%d,"status":"failed","reason":"%s"}\n' \
            "$scen" "$stack" "$round" "${STACK_ERROR//\"/\'}" >>"$RECORDS"
        FAILED=1
        stop_roots
        return 0
    fi
    if [ "$WARMUP" -gt 0 ]; then
        wrk -t1 -c"$CONNS" -d"${WARMUP}s" --timeout "$WRK_TIMEOUT" "http://127.0.0.1:$port/hello" >"$raw/warmup.txt" 2>&1 ||
            warn "warm-up wrk exited with status $? (see $raw/warmup.txt)"
    fi
    mapfile -t roots < <(root_pids)
    if BENCH_LIB=$BENCH_DIR/lib "$PY" "$FTOOL" run --scenario "$scen" --stack "$stack" --user "$BENCH_USER" \
        --worker-exe "$(worker_exe "$stack")" --worker-parent "$(worker_parent "$stack")" \
        --roots "${roots[*]}" --min "$PROCESSES" --fault-at "$FAULT_AT" \
        --pyctl "$PYCTL" --socket "$sock" --wrk-out "$raw/wrk.txt" --out "$raw/events.json" -- \
        wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency --timeout "$WRK_TIMEOUT" \
        -s "$BENCH_DIR/lib/timeline.lua" "http://127.0.0.1:$port/hello"; then rc=0; else rc=$?; fi
    if [ "$rc" -ne 0 ]; then
        warn "the measured run failed (status $rc; see $raw/)"
        FAILED=1
    fi
    if [ -s "$raw/events.json" ]; then
        BENCH_LIB=$BENCH_DIR/lib "$PY" "$FTOOL" record --events "$raw/events.json" --wrk "$raw/wrk.txt" \
            --round "$round" --out "$RECORDS" || FAILED=1
    fi
    log "  stopping $stack"
    stop_roots
    log "  stopped ($STOP_STATUS)"
}

faults_main() {
    check_fault_knobs
    [ "$(id -u)" -eq 0 ] ||
        die "run as root (it installs packages, creates user $BENCH_USER and starts servers that switch to it)"
    [ "$(uname -s)" = Linux ] || die "Linux only (it reads /proc)"
    sanitize_env
    [ -x "$PY" ] || die "$PY not found: every stack runs Debian's python3; install with apt-get install python3"

    # One run at a time, shared with run.sh and reload.sh: the same ports.
    exec 9>/run/lock/pyhost-bench.lock || die "cannot open /run/lock/pyhost-bench.lock"
    # LOCK_WAIT=N waits up to N s for another run to end (0: not at all).
    flock -w "${LOCK_WAIT:-0}" 9 || die "another bench script is running (it holds /run/lock/pyhost-bench.lock)"

    install_packages
    find_tools
    if wants pyhost; then
        [ -x "$PYCTL" ] || die "pyctl not found at $PYCTL; build it with 'make build' (or set PYCTL=/path/to/pyctl)"
    fi
    ensure_user
    note_packaged_services

    trap cleanup EXIT
    trap 'on_signal INT' INT
    trap 'on_signal TERM' TERM

    local stamp results_dir
    stamp=faults-$(date +%Y%m%d-%H%M%S)
    results_dir=$BENCH_DIR/results
    mkdir -p -- "$results_dir" || die "cannot create $results_dir"
    RAW_DIR=$results_dir/$stamp
    RECORDS=$results_dir/$stamp.jsonl
    mkdir -p -- "$RAW_DIR"
    : >"$RECORDS"

    WORK=$(mktemp -d /tmp/pyhost-bench.XXXXXX) || die "mktemp failed"
    chmod 0755 -- "$WORK"
    APP_DIR=$WORK/apps
    mkdir -p -- "$APP_DIR"
    install -m 0644 -- "$BENCH_DIR/apps/hello.py" "$APP_DIR/"
    FTOOL=$WORK/faulttool.py
    write_tool "$FTOOL"

    local command="DURATION=$DURATION WARMUP=$WARMUP ROUNDS=$ROUNDS FAULT_AT=$FAULT_AT"
    command+=" SCENARIOS=\"$SCENARIOS\" STACKS=\"$STACKS\""
    [ "$CONNS" = 32 ] || command+=" CONNS=$CONNS"
    [ "$WRK_TIMEOUT" = 5s ] || command+=" WRK_TIMEOUT=$WRK_TIMEOUT"
    [ "$PORT_BASE" = 18180 ] || command+=" PORT_BASE=$PORT_BASE"
    command+=" bench/faults.sh"
    "$PY" - "$RAW_DIR/meta.json" "$command" "$CONNS" "$DURATION" "$FAULT_AT" "$SCENARIOS" <<'PYEOF' ||
import datetime, json, os, sys
out, command, conns, duration, fault_at, scenarios = sys.argv[1:]
cpu = "?"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
json.dump({"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "command": command, "conns": int(conns), "duration": int(duration), "fault_at": int(fault_at),
           "scenarios": scenarios.split(), "cpu": cpu, "cpus": os.cpu_count()}, open(out, "w"))
PYEOF
        die "could not describe the run"

    FAILED=0
    local round scen s
    for ((round = 1; round <= ROUNDS; round++)); do
        for scen in $SCENARIOS; do
            for s in $STACKS; do
                scenario_applies "$scen" "$s" || continue
                fault_run "$round" "$scen" "$s"
            done
        done
    done

    local report=$results_dir/$stamp.md
    BENCH_LIB=$BENCH_DIR/lib "$PY" "$FTOOL" report --meta "$RAW_DIR/meta.json" --records "$RECORDS" >"$report" ||
        die "could not render the report from $RECORDS"
    cat -- "$report"
    log "results: $report (records: $RECORDS; wrk outputs, events and logs: $RAW_DIR/)"
    if [ "$FAILED" -ne 0 ]; then
        warn "some stacks or runs failed; see the table and the logs above"
        return 1
    fi
}

faults_main "$@"
