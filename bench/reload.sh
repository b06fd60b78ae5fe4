#!/usr/bin/env bash
# bench/reload.sh: throughput and failed requests while a stack reloads its
# app under load, and while it recycles workers after max_requests, each
# next to the steady state measured in the same run.
#
# For each round, app (hello.py, slowimport.py) and stack (pyhost,
# Apache + mod_wsgi daemon mode, nginx + uWSGI), with run.sh's stacks,
# configs and 2 processes x 4 threads:
#   1. start the stack, warm up, then wrk -c64 for DURATION (20) s: steady;
#   2. the same again on the same server, with RELOADS reloads spread evenly
#      over the run (pyctl reload / apachectl graceful / uWSGI chain reload);
#   3. a fresh server with max_requests = MAX_REQUESTS: warm-up, DURATION s.
# wrk runs with lib/timeline.lua (responses per 50 ms), so the throughput
# during each reload is measured, not only over the whole run. The report
# goes to stdout and to bench/results/reload-<timestamp>.md. See
# bench/README.md, "Reloads and recycling".
#
# Runs as root, like run.sh, whose functions it sources (install, start,
# check, stop by pid, cleanup). Knobs (environment): those of run.sh
# (WARMUP STACKS ROUNDS PYHOSTD WRK_TIMEOUT PORT_BASE KEEP_WORKDIR), DURATION
# (default 20 s here: uWSGI's chain reload takes about 4 s, 3 must fit),
# and CONNS (one value, default 64) RELOADS APPS SCENARIOS MAX_REQUESTS PYCTL
# RETRIES DISTURBED RETRY_PAUSE.

set -euo pipefail

RELOAD_SH=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)/reload.sh

DURATION=${DURATION:-20}
CONNS=${CONNS:-64}
RELOADS=${RELOADS:-3}
APPS=${APPS:-"hello slowimport"}
SCENARIOS=${SCENARIOS-"reload max_requests"}
MAX_REQUESTS=${MAX_REQUESTS:-1000}
RETRIES=${RETRIES:-2}
DISTURBED=${DISTURBED:-10}
RETRY_PAUSE=${RETRY_PAUSE:-30}

# shellcheck source=run.sh
source "$(dirname -- "$RELOAD_SH")/run.sh"

PYCTL=${PYCTL:-$(dirname -- "$PYHOSTD")/pyctl}
readonly KNOWN_APPS="hello slowimport" KNOWN_SCENARIOS="reload max_requests"
readonly TIMELINE_SCRIPT=$BENCH_DIR/lib/timeline.lua

check_reload_knobs() {
    check_knobs
    [[ $CONNS =~ ^[0-9]+$ ]] || die "CONNS must be one connection count here (got '$CONNS')"
    uint_between "$RELOADS" 1 20 || die "RELOADS must be a whole number, 1 to 20 (got '$RELOADS')"
    uint_between "$RETRIES" 0 10 || die "RETRIES must be a whole number, 0 to 10 (got '$RETRIES')"
    uint_between "$DISTURBED" 1 100 || die "DISTURBED must be a percentage, 1 to 100 (got '$DISTURBED')"
    uint_between "$RETRY_PAUSE" 0 3600 || die "RETRY_PAUSE must be whole seconds, 0 to 3600 (got '$RETRY_PAUSE')"
    uint_between "$MAX_REQUESTS" 1 10000000 || die "MAX_REQUESTS must be a whole number, 1 to 10000000 (got '$MAX_REQUESTS')"
    local a
    [ -n "${APPS// /}" ] || die "APPS is empty; choose among: $KNOWN_APPS"
    for a in $APPS; do
        case " $KNOWN_APPS " in *" $a "*) ;; *) die "APPS: unknown app '$a'; choose among: $KNOWN_APPS" ;; esac
    done
    for a in $SCENARIOS; do
        case " $KNOWN_SCENARIOS " in
            *" $a "*) ;;
            *) die "SCENARIOS: unknown scenario '$a'; choose among: $KNOWN_SCENARIOS (steady always runs)" ;;
        esac
    done
}

wants_scenario() { case " $SCENARIOS " in *" $1 "*) return 0 ;; esac; return 1; }

# ------------------------------------------------------------------ stacks

# Per stack: the executable name of its Python worker processes (children of
# a top-level process, running as BENCH_USER), for benchtool.py events.
worker_exe() {
    case $1 in
        pyhost) echo '^python3' ;;
        apache-wsgi) echo '^apache2$' ;;  # mod_wsgi's daemon processes: forks of Apache's parent
        nginx-uwsgi) echo '^uwsgi' ;;     # uWSGI's workers, forks of its master
    esac
}

# Per stack: a regex on the command line of a process that forks the
# workers without being one (pyhost's fork server), or nothing.
worker_parent() {
    case $1 in
        pyhost) echo ' --fork-server( |$)' ;;
    esac
}

# Set run.sh's APP_FILE and per-stack extras for an app and a mode (base:
# steady and reload; max_requests), then start the stack.
start_configured() { # STACK DIR PORT APP MODE
    local stack=$1 dir=$2 port=$3 app=$4 mode=$5
    APP_FILE=$app.py
    PYHOST_ARGS=()
    WSGI_DAEMON_OPTIONS=""
    # A chain reload re-imports the app only with lazy-apps (each worker
    # loads it after the fork, not the master once); the FIFO takes the "c".
    # The master creates the FIFO after switching to BENCH_USER: in a
    # folder of that user's.
    UWSGI_OPTIONS="lazy-apps = true
master-fifo = $dir/fifo/uwsgi.fifo"
    if [ "$stack" = nginx-uwsgi ]; then
        if ! { mkdir -p -- "$dir/fifo" && chown -- "$BENCH_USER:" "$dir/fifo"; }; then
            STACK_ERROR="cannot create $dir/fifo for $BENCH_USER"
            return 1
        fi
    fi
    if [ "$mode" = max_requests ]; then
        PYHOST_ARGS=(--max-requests "$MAX_REQUESTS")
        WSGI_DAEMON_OPTIONS=" maximum-requests=$MAX_REQUESTS"
        # uWSGI ignores max-requests until a worker has lived
        # min-worker-lifetime (60 s by default): 1 s, like pyhost's check.
        UWSGI_OPTIONS+="
max-requests = $MAX_REQUESTS
min-worker-lifetime = 1"
    fi
    "start_$stack" "$dir" "$port"
}

# The shell command that starts one reload, into TRIGGER; DONE_ARGS: where
# the stack logs that a reload is done, when its processes do not tell.
reload_trigger() { # STACK DIR
    local sock i
    DONE_ARGS=()
    case $1 in
        pyhost)
            sock=""
            for ((i = 0; i < 50; i++)); do
                sock=$(sed -n 's/^pyhost: control socket \([^ ]*\) .*/\1/p' "$2/pyhostd.log" | tail -n 1)
                [ -z "$sock" ] || break
                sleep 0.1
            done
            [ -n "$sock" ] || { STACK_ERROR="pyhostd printed no control socket path"; return 1; }
            TRIGGER="$(printf '%q' "$PYCTL") --socket $(printf '%q' "$sock") reload"
            ;;
        apache-wsgi) TRIGGER="/usr/sbin/apache2 -f $(printf '%q' "$2/apache2.conf") -k graceful" ;;
        nginx-uwsgi)
            TRIGGER="printf c > $(printf '%q' "$2/fifo/uwsgi.fifo")"
            # The chain goes on to the next worker only once the new one
            # accepts, and says so; a "c" while a chain runs is ignored.
            DONE_ARGS=(--done-log "$2/uwsgi.log" --done-pattern 'chain reloading complete')
            ;;
    esac
}

# One measured run: wrk -cCONNS -dDURATION with the timeline script, run by
# benchtool.py events, which also triggers the reloads (RELOADS of them at
# DURATION x k/(RELOADS+1), when SCENARIO is reload) and watches the workers.
measure_run() { # ROUND APP STACK SCENARIO PORT DIR RAW
    local round=$1 app=$2 stack=$3 scen=$4 port=$5 dir=$6 raw=$7 k at_ms rc
    local out=$raw/$scen
    local -a mine at=() logarg=()
    mapfile -t mine < <(root_pids)
    if [ "$scen" = reload ]; then
        for ((k = 1; k <= RELOADS; k++)); do
            at_ms=$((DURATION * 1000 * k / (RELOADS + 1)))
            at+=(--reload-at "$((at_ms / 1000)).$(printf '%03d' $((at_ms % 1000)))")
        done
    fi
    "$PY" "$TOOL" cpusnap "$out.cpu0" "$$" "${mine[@]}" || warn "no CPU snapshot before the test"
    if "$PY" "$TOOL" events --out "$out.events.json" --wrk-out "$out.wrk.txt" \
        --duration "$DURATION" --port "$port" --user "$BENCH_USER" \
        --worker-exe "$(worker_exe "$stack")" --worker-parent "$(worker_parent "$stack")" --min "$PROCESSES" --roots "${mine[*]}" \
        "${at[@]}" --trigger "$TRIGGER" --trigger-log "$out.trigger.log" "${DONE_ARGS[@]}" -- \
        wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency --timeout "$WRK_TIMEOUT" \
        -s "$TIMELINE_SCRIPT" "http://127.0.0.1:$port/hello"; then rc=0; else rc=$?; fi
    "$PY" "$TOOL" cpusnap "$out.cpu1" "$$" "${mine[@]}" || warn "no CPU snapshot after the test"
    if [ "$stack" = pyhost ]; then logarg=(--pyhost-log "$dir/pyhostd.log"); fi
    [ "$rc" -eq 0 ] || { warn "wrk or the event watcher failed (status $rc; see $out.wrk.txt)"; FAILED=1; }
    "$PY" "$TOOL" reload-record --out "$ATTEMPT_RECORDS" --round "$round" --stack "$stack" --app "$app" \
        --scenario "$scen" --wrk "$out.wrk.txt" --events "$out.events.json" \
        --cpu "$out.cpu0" "$out.cpu1" "${logarg[@]}" || die "could not write a record to $ATTEMPT_RECORDS"
}

# Start one server of a stack (base or max_requests) and check it like
# run.sh does; on failure record the scenarios it was for as failed.
start_checked() { # ROUND APP STACK MODE DIR PORT SCENARIO...
    local round=$1 app=$2 stack=$3 mode=$4 dir=$5 port=$6 s
    local -a rootpids
    shift 6
    STACK_ERROR=""
    mkdir -p -- "$dir"
    if port_busy "$port"; then
        STACK_ERROR="port $port is already in use by another program (set PORT_BASE to move the bench ports)"
    elif ! start_configured "$stack" "$dir" "$port" "$app" "$mode"; then
        :
    elif ! smoke_test "$port" "$dir"; then
        :
    else
        mapfile -t rootpids < <(root_pids)
        if ! "$PY" "$TOOL" check-user "$BENCH_USER" "$PROCESSES" "${rootpids[@]}" 2>"$dir/check-user.err"; then
            STACK_ERROR=$(cat "$dir/check-user.err")
        elif ! reload_trigger "$stack" "$dir"; then
            :
        fi
    fi
    [ -n "$STACK_ERROR" ] || return 0
    warn "$stack ($mode) failed: $STACK_ERROR"
    show_logs "$dir"
    for s in "$@"; do
        "$PY" "$TOOL" reload-record --out "$ATTEMPT_RECORDS" --round "$round" --stack "$stack" --app "$app" \
            --scenario "$s" --fail "$STACK_ERROR"
    done
    FAILED=1
    stop_roots
    return 1
}

warm() { # PORT RAW
    [ "$WARMUP" -gt 0 ] || return 0
    log "  ${WARMUP}s warm-up (discarded)"
    wrk_cmd "$1" "$CONNS" "$WARMUP"
    "${WRK_CMD[@]}" >"$2" 2>&1 || warn "warm-up wrk exited with status $? (see $2)"
}

# One server of a stack (MODE base: steady, then reload; max_requests: its
# own server), its records into ATTEMPT_RECORDS.
run_instance() { # ROUND APP STACK MODE DIR RAW
    local round=$1 app=$2 stack=$3 mode=$4 dir=$5 raw=$6 port scen
    local -a scens=(steady)
    port=$(stack_port "$stack")
    mkdir -p -- "$raw"
    if [ "$mode" = max_requests ]; then
        scens=(max_requests)
    elif wants_scenario reload; then
        scens+=(reload)
    fi
    start_checked "$round" "$app" "$stack" "$mode" "$dir" "$port" "${scens[@]}" || return 0
    warm "$port" "$raw/warmup-$mode.txt"
    for scen in "${scens[@]}"; do
        if ! any_root_alive; then
            warn "$stack is no longer running; skipping $scen"
            show_logs "$dir"
            "$PY" "$TOOL" reload-record --out "$ATTEMPT_RECORDS" --round "$round" --stack "$stack" \
                --app "$app" --scenario "$scen" --fail "the stack exited during the run"
            FAILED=1
            continue
        fi
        case $scen in
            reload) log "  reload: ${DURATION}s at c=$CONNS, $RELOADS reloads" ;;
            *) log "  $scen: ${DURATION}s at c=$CONNS" ;;
        esac
        measure_run "$round" "$app" "$stack" "$scen" "$port" "$dir" "$raw"
    done
    if [ "$mode" = base ] && ! smoke_test "$port" "$dir"; then
        warn "$stack no longer answers correctly after the reloads: $STACK_ERROR"
        FAILED=1
    fi
    log "  stopping $stack"
    stop_roots
    log "  stopped ($STOP_STATUS)"
}

# run_instance, again (up to RETRIES times) while another program took
# DISTURBED % or more of the CPUs during one of its runs: this machine's
# figures are only worth comparing undisturbed. A disturbed attempt's
# records go to <stamp>.disturbed.jsonl; the last attempt counts whatever
# it is (its "other CPU %" says so).
run_instance_retried() { # ROUND APP STACK MODE
    local round=$1 app=$2 stack=$3 mode=$4 try name what worst
    for ((try = 1; ; try++)); do
        name=r$round-$app-$stack
        what=$stack
        if [ "$mode" = max_requests ]; then
            name+=-maxreq
            what+=" with max_requests = $MAX_REQUESTS"
        fi
        if [ "$try" -gt 1 ]; then
            name+=-try$try
            what+=" (attempt $try)"
        fi
        ATTEMPT_RECORDS=$WORK/attempt.jsonl
        : >"$ATTEMPT_RECORDS"
        log "round $round/$ROUNDS, $app.py: $what"
        run_instance "$round" "$app" "$stack" "$mode" "$WORK/$name" "$RAW_DIR/$name"
        worst=$("$PY" "$TOOL" max-foreign "$ATTEMPT_RECORDS")
        if [ "$worst" -ge "$DISTURBED" ] && [ "$try" -le "$RETRIES" ]; then
            warn "other programs took up to $worst% of the CPUs during $stack's runs: running them again"
            cat -- "$ATTEMPT_RECORDS" >>"$DISTURBED_RECORDS"
            sleep "$RETRY_PAUSE"
            continue
        fi
        cat -- "$ATTEMPT_RECORDS" >>"$RECORDS"
        return 0
    done
}

bench_reload_stack() { # ROUND APP STACK
    run_instance_retried "$1" "$2" "$3" base
    if wants_scenario max_requests; then run_instance_retried "$1" "$2" "$3" max_requests; fi
}

reload_main() {
    check_reload_knobs
    [ "$(id -u)" -eq 0 ] ||
        die "run as root (it installs packages, creates user $BENCH_USER and starts servers that switch to it)"
    [ "$(uname -s)" = Linux ] || die "Linux only (it reads /proc)"
    sanitize_env
    [ -x "$PY" ] || die "$PY not found: every stack runs Debian's python3; install with apt-get install python3"

    # One run at a time, shared with run.sh: they use the same ports.
    exec 9>/run/lock/pyhost-bench.lock || die "cannot open /run/lock/pyhost-bench.lock"
    # LOCK_WAIT=N waits up to N s for another run to end (0: not at all).
    flock -w "${LOCK_WAIT:-0}" 9 || die "another bench/run.sh or bench/reload.sh is running (it holds /run/lock/pyhost-bench.lock)"

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
    stamp=reload-$(date +%Y%m%d-%H%M%S)
    results_dir=$BENCH_DIR/results
    mkdir -p -- "$results_dir" || die "cannot create $results_dir"
    RAW_DIR=$results_dir/$stamp
    RECORDS=$results_dir/$stamp.jsonl
    DISTURBED_RECORDS=$results_dir/$stamp.disturbed.jsonl
    mkdir -p -- "$RAW_DIR"
    : >"$RECORDS"

    WORK=$(mktemp -d /tmp/pyhost-bench.XXXXXX) || die "mktemp failed"
    chmod 0755 -- "$WORK"
    APP_DIR=$WORK/apps
    mkdir -p -- "$APP_DIR"
    install -m 0644 -- "$BENCH_DIR/apps/hello.py" "$BENCH_DIR/apps/slowimport.py" "$APP_DIR/"

    local -a portargs=()
    local s
    for s in $STACKS; do portargs+=(--port "$s=$(stack_port "$s")"); done
    local command="DURATION=$DURATION WARMUP=$WARMUP ROUNDS=$ROUNDS RELOADS=$RELOADS"
    command+=" MAX_REQUESTS=$MAX_REQUESTS APPS=\"$APPS\" SCENARIOS=\"$SCENARIOS\" STACKS=\"$STACKS\""
    [ "$CONNS" = 64 ] || command+=" CONNS=$CONNS"
    [ "$WRK_TIMEOUT" = 5s ] || command+=" WRK_TIMEOUT=$WRK_TIMEOUT"
    [ "$PORT_BASE" = 18180 ] || command+=" PORT_BASE=$PORT_BASE"
    command+=" bench/reload.sh"
    "$PY" "$TOOL" meta --stacks "$STACKS" --conns "$CONNS" --rounds "$ROUNDS" \
        --duration "$DURATION" --warmup "$WARMUP" --wrk-timeout "$WRK_TIMEOUT" \
        --app-user "$BENCH_USER" --command "$command" "${portargs[@]}" \
        --pyhostd "$PYHOSTD" --uwsgi "${UWSGI_BIN:-/usr/bin/uwsgi}" \
        --extra "apps=$APPS" --extra "scenarios=$SCENARIOS" --extra "reloads=$RELOADS" \
        --extra "max_requests=$MAX_REQUESTS" >"$RAW_DIR/meta.json" ||
        die "could not describe the machine (benchtool.py meta)"

    local n_stacks n_apps per
    n_stacks=$(wc -w <<<"$STACKS")
    n_apps=$(wc -w <<<"$APPS")
    per=$((WARMUP + DURATION + 5))
    if wants_scenario reload; then per=$((per + DURATION)); fi
    if wants_scenario max_requests; then per=$((per + WARMUP + DURATION + 5)); fi
    log "$ROUNDS round(s) x $n_apps app(s) x $n_stacks stack(s): about $((ROUNDS * n_apps * n_stacks * per)) s"

    FAILED=0
    local round app
    for ((round = 1; round <= ROUNDS; round++)); do
        for app in $APPS; do
            for s in $STACKS; do
                bench_reload_stack "$round" "$app" "$s"
            done
        done
    done

    local report=$results_dir/$stamp.md
    "$PY" "$TOOL" reload-report --meta "$RAW_DIR/meta.json" --records "$RECORDS" >"$report" ||
        die "could not render the report from $RECORDS"
    cat -- "$report"
    log "results: $report (records: $RECORDS; wrk outputs, events and logs: $RAW_DIR/)"
    if [ "$FAILED" -ne 0 ]; then
        warn "some stacks or tests failed; see the table and the logs above"
        return 1
    fi
}

reload_main "$@"
