#!/usr/bin/env bash
# bench/profile.sh: where pyhost's time goes for one body test (issue 10):
# pyhost alone, run.sh's stack (2 processes x 4 threads, apps/body.py, as
# BENCH_USER), loaded as run.sh loads it, while `perf record -g` samples
# the proxy, one worker and the whole machine for PERF_SECONDS each, one
# after the other. Prints each profile's top symbols (self time) and
# writes everything to bench/results/profile-<timestamp>/ (perf.data
# files, full reports, the load's output).
#
#   bench/profile.sh                       # get1m (GET /big, 1 MiB, c=16)
#   TEST=file100m PERF_SECONDS=5 bench/profile.sh
#   TEST=h2 bench/profile.sh               # hello over HTTP/2 + TLS, as https.sh
#
# Knobs: TEST (get1m, file100m, post64k; or https.sh's h2 and h1 as h2,
# h1tls: hello over TLS, loaded as https.sh loads it, with its
# H2_CLIENTS, H2_STREAMS, HELLO_CONNS), PROFILE_CONNS (default: the
# test's, as run.sh), WORKER_SCHED (h2 and h1tls: https.sh's, batch puts
# pyhost's Python processes under SCHED_BATCH),
# PERF_SECONDS (default 5), TOP (symbols shown per profile, default 25),
# and run.sh's PYHOSTD, PORT_BASE, KEEP_WORKDIR, GO, LOCK_WAIT. Runs as
# root (perf, the bench user); takes the bench lock; every load is bounded.

set -euo pipefail

PROFILE_SH=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)/profile.sh
TEST=${TEST:-get1m}
PERF_SECONDS=${PERF_SECONDS:-5}
TOP=${TOP:-25}

case $TEST in
    h2 | h1tls)
        # shellcheck source=https.sh
        source "$(dirname -- "$PROFILE_SH")/https.sh" ;; # sources run.sh
    *)
        # shellcheck source=run.sh
        source "$(dirname -- "$PROFILE_SH")/run.sh" ;;
esac

profile_main() {
    local tls=0
    case $TEST in h2 | h1tls) tls=1 ;; esac
    STACKS=pyhost TESTS="hello"
    [ "$tls" = 1 ] || TESTS="hello $TEST"
    check_knobs
    uint_between "$PERF_SECONDS" 1 60 || die "PERF_SECONDS must be whole seconds, 1 to 60 (got '$PERF_SECONDS')"
    uint_between "$TOP" 1 500 || die "TOP must be 1 to 500 (got '$TOP')"
    case $TEST in get1m | file100m | post64k | h2 | h1tls) ;; *) die "TEST must be get1m, file100m, post64k, h2 or h1tls (got '$TEST')" ;; esac
    [ "$tls" = 1 ] || [ -z "${WORKER_SCHED:-}" ] || die "WORKER_SCHED applies to TEST=h2 and h1tls only"
    [[ ${WORKER_SCHED:-} =~ ^(|batch)$ ]] || die "WORKER_SCHED must be empty or batch (got '${WORKER_SCHED:-}')"
    [ "$(id -u)" -eq 0 ] || die "run as root (perf, and servers that switch to $BENCH_USER)"
    command -v perf >/dev/null || die "perf not found (apt-get install linux-perf)"
    sanitize_env
    exec 9>/run/lock/pyhost-bench.lock || die "cannot open /run/lock/pyhost-bench.lock"
    flock -w "${LOCK_WAIT:-0}" 9 || die "another bench script is running (it holds /run/lock/pyhost-bench.lock)"
    install_packages
    [ "$tls" = 0 ] || install_https_tools
    find_tools
    ensure_user
    trap cleanup EXIT
    trap 'on_signal INT' INT
    trap 'on_signal TERM' TERM

    local out
    out=$BENCH_DIR/results/profile-$(date +%Y%m%d-%H%M%S)
    mkdir -p -- "$out"
    WORK=$(mktemp -d /tmp/pyhost-bench.XXXXXX) || die "mktemp failed"
    chmod 0755 -- "$WORK"
    APP_DIR=$WORK/apps
    mkdir -p -- "$APP_DIR"
    install -m 0644 -- "$BENCH_DIR/apps/hello.py" "$APP_DIR/"
    local conns port=$((PORT_BASE + 1)) dir=$WORK/pyhost
    if [ "$tls" = 1 ]; then
        APP_FILE=hello.py
        make_cert
        port=$((TLS_PORT_BASE + 1))
        case $TEST in h2) conns=$H2_CLIENTS ;; h1tls) conns=$HELLO_CONNS ;; esac
    else
        APP_FILE=body.py
        prepare_body_tests
        build_attack
        set_test "$TEST"
        conns=${PROFILE_CONNS:-$(test_conns "$TEST")}
    fi

    mkdir -p -- "$dir"
    ! port_busy "$port" || die "port $port is in use"
    log "starting pyhost on 127.0.0.1:$port ($PYHOSTD)"
    if [ "$tls" = 1 ]; then
        start_tls_pyhost "$dir" "$port" || die "pyhost did not start: $(tail -5 "$dir/pyhostd.log")"
        if [ -n "$WORKER_SCHED" ]; then
            local -a rootpids
            STACK_ERROR=""
            lines_into rootpids root_pids
            sched_workers "${rootpids[@]}"
            [ -z "$STACK_ERROR" ] || die "$STACK_ERROR"
        fi
    else
        start_pyhost "$dir" "$port" || die "pyhost did not start: $(tail -5 "$dir/pyhostd.log")"
    fi

    # The proxy and a worker of this stack's tree: other pyhost processes
    # may run as the bench user on a shared machine.
    local proxy="" worker="" line pid cmd
    local -a tree=()
    lines_into tree "$PY" "$TOOL" tree "${ROOTS[0]%%:*}" 2>/dev/null || tree=()
    for line in "${tree[@]}"; do
        pid=${line%% *}
        cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
        case $cmd in
            *__proxy*) [ -n "$proxy" ] || proxy=$pid ;;
            *"pyhost_worker.py --app"*) [ -n "$worker" ] || worker=$pid ;;
        esac
    done
    { [ -n "$proxy" ] && [ -n "$worker" ]; } || die "cannot find the proxy ($proxy) or a worker ($worker)"
    log "proxy pid $proxy, worker pid $worker"

    local total=$((3 * PERF_SECONDS + 4)) path=${WRK_PATH:-/hello}
    log "$TEST: $path at c=$conns for ${total}s"
    local -a client
    if [ "$tls" = 1 ]; then
        local t=$TEST
        [ "$t" = h1tls ] && t=h1
        load_cmd "$t" "$port" "$total"
        client=("${LOAD_CMD[@]}")
    elif [ "$WRK_CLIENT" = go ]; then
        client=("$ATTACK_BIN" load -c "$conns" -d "${total}s" -timeout 60s "-url=http://127.0.0.1:$port$path")
    else
        client=(wrk -t1 -c"$conns" -d"${total}s" --timeout 60s -s "$WRK_LUA" "http://127.0.0.1:$port$path")
    fi
    timeout $((total + 30)) "${client[@]}" >"$out/load.txt" 2>&1 &
    local load=$!
    sleep 2 # the load's start, not a synchronization: perf samples whatever runs
    perf record -g -o "$out/proxy.data" -p "$proxy" -- sleep "$PERF_SECONDS" >/dev/null 2>&1 || warn "perf on the proxy failed"
    perf record -g -o "$out/worker.data" -p "$worker" -- sleep "$PERF_SECONDS" >/dev/null 2>&1 || warn "perf on the worker failed"
    perf record -g -a -o "$out/system.data" -- sleep "$PERF_SECONDS" >/dev/null 2>&1 || warn "perf on the system failed"
    wait "$load" || warn "the load client exited with status $?"
    stop_roots

    local p
    for p in proxy worker system; do
        [ -s "$out/$p.data" ] || continue
        perf report -i "$out/$p.data" --no-children --sort comm,dso,symbol --stdio >"$out/$p.report" 2>/dev/null || true
        perf report -i "$out/$p.data" --no-children --sort comm,dso,symbol --stdio -g none --percent-limit 0.5 2>/dev/null |
            grep -v '^#' | grep -v '^$' | head -n "$TOP" >"$out/$p.top" || true
        printf '\n## %s (%s s, self time, top %s)\n\n```\n' "$p" "$PERF_SECONDS" "$TOP"
        cat -- "$out/$p.top"
        printf '```\n'
    done
    printf '\n## load\n\n```\n'
    cat -- "$out/load.txt"
    printf '```\n'
    log "profiles: $out/"
}

profile_main "$@"
