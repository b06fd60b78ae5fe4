#!/usr/bin/env bash
# bench/attack.sh: what slow and hostile clients do to a stack, pyhost next
# to nginx + uWSGI, each with run.sh's configs and 2 processes x 4 threads.
#
# Per scenario and stack, on a freshly started server (stacks interleaved
# within each scenario), bench/attack's attacker:
#   1. runs a normal client alone for BASELINE s (GET /hello from 127.0.0.1,
#      one request every 20 ms, over a kept-alive connection and, at the
#      same time, over a new connection per request);
#   2. opens the scenario's hostile connections from 127.0.0.2 and up and
#      keeps them going for HOLD s while the normal client goes on:
#        slowloris   SLOWLORIS_CONNS connections whose headers never end
#        slowbody    SLOWBODY_CONNS small POSTs whose body trickles in
#        slowupload  UPLOAD_CONNS 1 MiB POSTs whose body trickles in
#        noread      NOREAD_CONNS GETs of 64 MiB on a 4 KiB receive buffer, never read
#      (a slow client sends one byte every TRICKLE s);
#   3. closes them, waits SETTLE s, reads the memory again, and runs the
#      normal client for 2 s more.
# Meanwhile it samples the RSS and descriptors of the proxy (pyhost's proxy
# process; nginx) and of the whole stack from /proc every 250 ms. The
# report (stdout and bench/results/attack-<timestamp>.md) gives the normal
# client's latency and failures, and the proxy's RSS before, at peak and
# SETTLE s after, for each stack side by side. See bench/README.md.
#
# Runs as root, like run.sh, whose functions it sources (install, start,
# check, stop by pid, cleanup, the lock). All traffic stays on loopback;
# every scenario is bounded by HOLD (and the attacker by timeout(1)).
# Knobs (environment): STACKS SCENARIOS HOLD SETTLE TRICKLE BASELINE SOURCES
# SLOWLORIS_CONNS SLOWBODY_CONNS UPLOAD_CONNS NOREAD_CONNS NOFILE
# NGINX_CONNECTIONS PYHOST_FLAGS, and run.sh's PYHOSTD PORT_BASE
# KEEP_WORKDIR GO.

set -euo pipefail

ATTACK_SH=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)/attack.sh

STACKS=${STACKS:-"pyhost nginx-uwsgi"}
SCENARIOS=${SCENARIOS:-"slowloris slowbody slowupload noread"}
HOLD=${HOLD:-30}
SETTLE=${SETTLE:-60}
TRICKLE=${TRICKLE:-5}
BASELINE=${BASELINE:-3}
SOURCES=${SOURCES:-10}
SLOWLORIS_CONNS=${SLOWLORIS_CONNS:-2000}
SLOWBODY_CONNS=${SLOWBODY_CONNS:-2000}
UPLOAD_CONNS=${UPLOAD_CONNS:-50}
NOREAD_CONNS=${NOREAD_CONNS:-20}
NOFILE=${NOFILE:-65536}
NGINX_CONNECTIONS=${NGINX_CONNECTIONS:-10240}
PYHOST_FLAGS=${PYHOST_FLAGS:-}

# shellcheck source=run.sh
source "$(dirname -- "$ATTACK_SH")/run.sh"

readonly ATTACK_STACKS="pyhost nginx-uwsgi" KNOWN_SCENARIOS="slowloris slowbody slowupload noread"
readonly AFTER_PROBES=2 # seconds of the normal client after SETTLE

check_attack_knobs() {
    check_knobs
    local s
    for s in $STACKS; do
        case " $ATTACK_STACKS " in
            *" $s "*) ;;
            *) die "STACKS: attack.sh runs $ATTACK_STACKS (got '$s')" ;;
        esac
    done
    [ -n "${SCENARIOS// /}" ] || die "SCENARIOS is empty; choose among: $KNOWN_SCENARIOS"
    for s in $SCENARIOS; do
        case " $KNOWN_SCENARIOS " in
            *" $s "*) ;;
            *) die "SCENARIOS: unknown scenario '$s'; choose among: $KNOWN_SCENARIOS" ;;
        esac
    done
    uint_between "$HOLD" 1 600 || die "HOLD must be whole seconds, 1 to 600 (got '$HOLD')"
    uint_between "$SETTLE" 0 600 || die "SETTLE must be whole seconds, 0 to 600 (got '$SETTLE')"
    uint_between "$TRICKLE" 1 60 || die "TRICKLE must be whole seconds, 1 to 60 (got '$TRICKLE')"
    uint_between "$BASELINE" 0 60 || die "BASELINE must be whole seconds, 0 to 60 (got '$BASELINE')"
    uint_between "$SOURCES" 1 250 || die "SOURCES must be 1 to 250 addresses (got '$SOURCES')"
    uint_between "$SLOWLORIS_CONNS" 1 20000 || die "SLOWLORIS_CONNS must be 1 to 20000 (got '$SLOWLORIS_CONNS')"
    uint_between "$SLOWBODY_CONNS" 1 20000 || die "SLOWBODY_CONNS must be 1 to 20000 (got '$SLOWBODY_CONNS')"
    uint_between "$UPLOAD_CONNS" 1 20000 || die "UPLOAD_CONNS must be 1 to 20000 (got '$UPLOAD_CONNS')"
    uint_between "$NOREAD_CONNS" 1 20000 || die "NOREAD_CONNS must be 1 to 20000 (got '$NOREAD_CONNS')"
    uint_between "$NOFILE" 1024 1048576 || die "NOFILE must be 1024 to 1048576 (got '$NOFILE')"
    uint_between "$NGINX_CONNECTIONS" 512 1048576 || die "NGINX_CONNECTIONS must be 512 to 1048576 (got '$NGINX_CONNECTIONS')"
}

scenario_conns() { # SCENARIO -> its hostile connection count
    case $1 in
        slowloris) echo "$SLOWLORIS_CONNS" ;;
        slowbody) echo "$SLOWBODY_CONNS" ;;
        slowupload) echo "$UPLOAD_CONNS" ;;
        noread) echo "$NOREAD_CONNS" ;;
    esac
}

# The attacker's -mem groups for the running stack: "proxy" (what takes
# the clients' connections), "python" (the app's processes), "stack" (all).
# ROOTS are in start order: pyhost's master; uWSGI's master, then nginx.
mem_groups() { # STACK -> MEM_ARGS
    local -a r
    lines_into r root_pids
    case $1 in
        pyhost) MEM_ARGS=(-mem "proxy=${r[0]}~ __proxy( |\$)" -mem "python=${r[0]}~pyhost_worker" -mem "stack=${r[0]}") ;;
        nginx-uwsgi) MEM_ARGS=(-mem "proxy=${r[1]}" -mem "python=${r[0]}" -mem "stack=${r[0]},${r[1]}") ;;
    esac
}

# One scenario against one stack, on a server of its own.
attack_stack() { # SCENARIO STACK
    local scen=$1 stack=$2 port dir raw rc bound
    local -a rootpids
    port=$(stack_port "$stack")
    dir=$WORK/$scen-$stack
    raw=$RAW_DIR/$scen-$stack
    mkdir -p -- "$dir" "$raw"
    STACK_ERROR=""
    log "$scen: $stack on 127.0.0.1:$port"
    if port_busy "$port"; then
        STACK_ERROR="port $port is already in use by another program (set PORT_BASE to move the bench ports)"
    elif ! "start_$stack" "$dir" "$port"; then
        :
    elif ! smoke_test "$port" "$dir"; then
        :
    else
        lines_into rootpids root_pids
        if ! "$PY" "$TOOL" check-user "$BENCH_USER" "$PROCESSES" "${rootpids[@]}" 2>"$dir/check-user.err"; then
            STACK_ERROR=$(cat "$dir/check-user.err")
        fi
    fi
    if [ -n "$STACK_ERROR" ]; then
        warn "$stack failed: $STACK_ERROR"
        show_logs "$dir"
        FAILED=1
        stop_roots
        return 0
    fi
    mem_groups "$stack"
    bound=$((BASELINE + 2 * HOLD + SETTLE + AFTER_PROBES + 60))
    if timeout --foreground --kill-after=5 "$bound" "$ATTACK_BIN" attack \
        -target "127.0.0.1:$port" -stack "$stack" -scenario "$scen" \
        -conns "$(scenario_conns "$scen")" -sources "$SOURCES" \
        -baseline "${BASELINE}s" -hold "${HOLD}s" -trickle "${TRICKLE}s" -settle "${SETTLE}s" \
        -after "${AFTER_PROBES}s" "${MEM_ARGS[@]}" -out "$raw/result.json" 2>&1 | tee "$raw/attack.log" >&2; then
        rc=0
    else
        rc=$?
    fi
    if [ "$rc" -ne 0 ] || [ ! -s "$raw/result.json" ]; then
        warn "the attacker exited with status $rc (see $raw/attack.log)"
        FAILED=1
    else
        RESULTS+=("$raw/result.json")
    fi
    any_root_alive || { warn "$stack is no longer running after $scen"; show_logs "$dir"; }
    log "  stopping $stack"
    stop_roots
    log "  stopped ($STOP_STATUS)"
}

attack_main() {
    check_attack_knobs
    [ "$(id -u)" -eq 0 ] ||
        die "run as root (it installs packages, creates user $BENCH_USER and starts servers that switch to it)"
    [ "$(uname -s)" = Linux ] || die "Linux only (it reads /proc)"
    sanitize_env

    # The attacker holds thousands of sockets, and so do the servers, which
    # inherit this limit (pyhost's systemd unit sets LimitNOFILE=65536). A
    # container may forbid raising the hard limit: then up to it, if that
    # leaves room for the largest scenario.
    local hard need=0 s
    hard=$(ulimit -Hn)
    if [ "$hard" != unlimited ] && [ "$hard" -lt "$NOFILE" ]; then
        if ! ulimit -Hn "$NOFILE" 2>/dev/null; then
            warn "cannot raise the hard descriptor limit from $hard to $NOFILE here; using $hard"
            NOFILE=$hard
        fi
    fi
    ulimit -Sn "$NOFILE" || die "cannot raise the descriptor limit to $NOFILE"
    for s in $SCENARIOS; do need=$((need > $(scenario_conns "$s") ? need : $(scenario_conns "$s"))); done
    [ "$NOFILE" -ge $((need + 1024)) ] ||
        die "a descriptor limit of $NOFILE leaves no room for $need hostile connections (and the rest)"

    exec 9>/run/lock/pyhost-bench.lock || die "cannot open /run/lock/pyhost-bench.lock"
    # LOCK_WAIT=N waits up to N s for another run to end (0: not at all).
    flock -w "${LOCK_WAIT:-0}" 9 || die "another bench/run.sh, reload.sh or attack.sh is running (it holds /run/lock/pyhost-bench.lock)"

    install_packages
    find_tools
    ensure_user
    note_packaged_services

    trap cleanup EXIT
    trap 'on_signal INT' INT
    trap 'on_signal TERM' TERM

    local stamp results_dir
    stamp=attack-$(date +%Y%m%d-%H%M%S)
    results_dir=$BENCH_DIR/results
    mkdir -p -- "$results_dir" || die "cannot create $results_dir"
    RAW_DIR=$results_dir/$stamp
    mkdir -p -- "$RAW_DIR"

    WORK=$(mktemp -d /tmp/pyhost-bench.XXXXXX) || die "mktemp failed"
    chmod 0755 -- "$WORK"
    APP_DIR=$WORK/apps
    mkdir -p -- "$APP_DIR"
    install -m 0644 -- "$BENCH_DIR/apps/hello.py" "$BENCH_DIR/apps/body.py" "$APP_DIR/"
    APP_FILE=body.py
    read -r -a PYHOST_ARGS <<<"$PYHOST_FLAGS"
    # nginx as an admin would set it up for thousands of clients; the rest
    # of its config (buffering, timeouts) is nginx's defaults, as in run.sh.
    NGINX_WORKER_CONNECTIONS=$NGINX_CONNECTIONS
    build_attack

    local -a portargs=()
    local s
    for s in $STACKS; do portargs+=(--port "$s=$(stack_port "$s")"); done
    local command="HOLD=$HOLD SETTLE=$SETTLE TRICKLE=$TRICKLE SOURCES=$SOURCES"
    command+=" SCENARIOS=\"$SCENARIOS\" STACKS=\"$STACKS\""
    [ "$SLOWLORIS_CONNS" = 2000 ] || command+=" SLOWLORIS_CONNS=$SLOWLORIS_CONNS"
    [ "$SLOWBODY_CONNS" = 2000 ] || command+=" SLOWBODY_CONNS=$SLOWBODY_CONNS"
    [ "$UPLOAD_CONNS" = 50 ] || command+=" UPLOAD_CONNS=$UPLOAD_CONNS"
    [ "$NOREAD_CONNS" = 20 ] || command+=" NOREAD_CONNS=$NOREAD_CONNS"
    [ "$BASELINE" = 3 ] || command+=" BASELINE=$BASELINE"
    [ "$NOFILE" = 65536 ] || command+=" NOFILE=$NOFILE"
    [ "$NGINX_CONNECTIONS" = 10240 ] || command+=" NGINX_CONNECTIONS=$NGINX_CONNECTIONS"
    [ -z "$PYHOST_FLAGS" ] || command+=" PYHOST_FLAGS=\"$PYHOST_FLAGS\""
    [ "$PORT_BASE" = 18180 ] || command+=" PORT_BASE=$PORT_BASE"
    command+=" bench/attack.sh"
    "$PY" "$TOOL" meta --stacks "$STACKS" --conns 1 --rounds 1 \
        --duration "$HOLD" --warmup 0 --wrk-timeout "$WRK_TIMEOUT" \
        --app-user "$BENCH_USER" --command "$command" "${portargs[@]}" \
        --pyhostd "$PYHOSTD" --uwsgi "${UWSGI_BIN:-/usr/bin/uwsgi}" \
        --extra "scenarios=$SCENARIOS" --extra "nofile=$NOFILE" \
        --extra "nginx_worker_connections=$NGINX_CONNECTIONS" >"$RAW_DIR/meta.json" ||
        die "could not describe the machine (benchtool.py meta)"

    local n_stacks n_scen
    n_stacks=$(wc -w <<<"$STACKS")
    n_scen=$(wc -w <<<"$SCENARIOS")
    log "$n_scen scenario(s) x $n_stacks stack(s), each about $((BASELINE + HOLD + SETTLE + AFTER_PROBES + 5)) s:" \
        "about $((n_scen * n_stacks * (BASELINE + HOLD + SETTLE + AFTER_PROBES + 5))) s"

    FAILED=0
    RESULTS=()
    local scen
    for scen in $SCENARIOS; do
        for s in $STACKS; do
            attack_stack "$scen" "$s"
        done
    done

    local report=$results_dir/$stamp.md
    "$ATTACK_BIN" report -meta "$RAW_DIR/meta.json" "${RESULTS[@]}" >"$report" ||
        die "could not render the report"
    cat -- "$report"
    log "results: $report (per run: $RAW_DIR/<scenario>-<stack>/result.json, attack.log; servers' logs)"
    if [ "$FAILED" -ne 0 ]; then
        warn "some stacks or scenarios failed; see the table and the logs above"
        return 1
    fi
}

attack_main "$@"
