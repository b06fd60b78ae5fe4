#!/usr/bin/env bash
# bench/run.sh: pyhost's own benchmark harness.
#
# Serves bench/apps/hello.py with a budget of 2 Python processes x 4 threads
# through pyhost and, in the same run, through Apache + mod_wsgi (daemon mode)
# and nginx + uWSGI; loads each with wrk on 127.0.0.1 and writes a markdown
# table to stdout and to bench/results/<timestamp>.md. See bench/README.md.
#
# Runs as root: it installs the peers from Debian's packages when missing,
# creates the unprivileged user the Python code runs as, and starts servers
# that switch to that user. It stops only the processes it started, by pid.
#
# Knobs (environment): DURATION WARMUP STACKS ROUNDS CONNS PYHOSTD
# WRK_TIMEOUT PORT_BASE KEEP_WORKDIR ACCESS_LOG; defaults below.

set -euo pipefail

BENCH_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_DIR=$(dirname -- "$BENCH_DIR")

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
STACKS=${STACKS:-"pyhost apache-wsgi nginx-uwsgi"}
ROUNDS=${ROUNDS:-1}
CONNS=${CONNS:-"1 64"}
PYHOSTD=${PYHOSTD:-$REPO_DIR/bin/pyhostd}
WRK_TIMEOUT=${WRK_TIMEOUT:-5s}
PORT_BASE=${PORT_BASE:-18180}
KEEP_WORKDIR=${KEEP_WORKDIR:-0}

readonly KNOWN_STACKS="pyhost apache-wsgi nginx-uwsgi"
readonly BENCH_USER=pyhostbench
readonly PROCESSES=2 THREADS=4          # the worker budget of every stack
readonly PY=/usr/bin/python3            # Debian's, for every stack and the helpers
readonly TOOL=$BENCH_DIR/lib/benchtool.py
readonly WRK_SCRIPT=$BENCH_DIR/lib/report.lua
readonly STOP_TIMEOUT=15                # seconds between TERM and KILL
readonly READY_TRIES=150                # x 0.2 s: how long a stack may take to answer

# What the stacks serve and their per-test extras. Not knobs: run.sh always
# serves apps/hello.py with the configs as they are; bench/reload.sh, which
# sources this file, sets these before starting a stack (another app file,
# max_requests, uWSGI's lazy-apps and master FIFO).
APP_FILE=hello.py                       # a file in $APP_DIR
PYHOST_ARGS=()                          # extra pyhostd serve flags
ACCESS_LOG=${ACCESS_LOG:-0}             # 1: pyhost writes its access log (the peers' configs write none)
WSGI_DAEMON_OPTIONS=""                  # extra WSGIDaemonProcess options, each with a leading space
UWSGI_OPTIONS=""                        # extra uwsgi.ini lines

# ------------------------------------------------------------------ output

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
warn() { printf '[bench %(%H:%M:%S)T] warning: %s\n' -1 "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------ checks

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
uint_between() { is_uint "$1" && ((10#$1 >= $2 && 10#$1 <= $3)); } # VALUE MIN MAX

check_knobs() {
    uint_between "$DURATION" 1 3600 || die "DURATION must be whole seconds, 1 to 3600 (got '$DURATION')"
    uint_between "$WARMUP" 0 600 || die "WARMUP must be whole seconds, 0 to 600 (got '$WARMUP')"
    uint_between "$ROUNDS" 1 100 || die "ROUNDS must be a whole number, 1 to 100 (got '$ROUNDS')"
    uint_between "$PORT_BASE" 1024 65000 || die "PORT_BASE must be a port number, 1024 to 65000 (got '$PORT_BASE')"
    [[ $WRK_TIMEOUT =~ ^[0-9]+(ms|s|m)?$ ]] || die "WRK_TIMEOUT must look like 5s or 500ms (got '$WRK_TIMEOUT')"
    [[ $ACCESS_LOG =~ ^[01]$ ]] || die "ACCESS_LOG must be 0 or 1 (got '$ACCESS_LOG')"
    local c s
    [ -n "${CONNS// /}" ] || die "CONNS is empty"
    for c in $CONNS; do
        uint_between "$c" 1 10000 || die "CONNS: '$c' is not a connection count, 1 to 10000"
    done
    [ -n "${STACKS// /}" ] || die "STACKS is empty; choose among: $KNOWN_STACKS"
    for s in $STACKS; do
        case " $KNOWN_STACKS " in
            *" $s "*) ;;
            *) die "STACKS: unknown stack '$s'; choose among: $KNOWN_STACKS" ;;
        esac
    done
}

wants() { case " $STACKS " in *" $1 "*) return 0 ;; esac; return 1; }

# A clean environment for every server: no pyenv, virtualenv or PYTHON*
# setting of the calling shell may reach them (Debian's python3 for all).
sanitize_env() {
    local v
    for v in $(compgen -e); do
        case $v in
            PYTHON* | PYENV* | VIRTUAL_ENV* | CONDA* | LD_PRELOAD | LD_LIBRARY_PATH | UWSGI_*) unset "$v" ;;
        esac
    done
    export PATH=/usr/sbin:/usr/bin:/sbin:/bin
    export LC_ALL=C.UTF-8 LANG=C.UTF-8
    umask 022
}

# ------------------------------------------------------------------ setup

pkg_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

# Debian packages would start their own apache2/nginx on port 80. After
# installing them here, stop those services again (only then: a server the
# admin runs on purpose is left alone). The harness itself uses high ports.
stop_packaged_service() { # SERVICE BINARY PIDFILE
    local svc=$1 bin=$2 pidfile=$3 pid exe i
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        if systemctl is-active --quiet "$svc"; then
            log "stopping the $svc service that its package just started (systemctl stop $svc)"
            systemctl stop "$svc" || warn "systemctl stop $svc failed; it may still listen on port 80"
        fi
        return 0
    fi
    [ -r "$pidfile" ] || return 0
    pid=$(tr -dc '0-9' <"$pidfile")
    if [ -z "$pid" ] || [ "$pid" -le 1 ]; then return 0; fi
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
    [ "$exe" = "$bin" ] || return 0
    log "stopping the $svc service that its package just started (pid $pid from $pidfile)"
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < STOP_TIMEOUT * 5; i++)); do
        [ -e "/proc/$pid" ] || return 0
        sleep 0.2
    done
    warn "$svc (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

install_packages() {
    local -a want=(wrk curl) missing=()
    local p
    if wants apache-wsgi; then want+=(apache2 libapache2-mod-wsgi-py3); fi
    if wants nginx-uwsgi; then want+=(nginx uwsgi-core uwsgi-plugin-python3); fi
    for p in "${want[@]}"; do
        pkg_installed "$p" || missing+=("$p")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        log "packages present: ${want[*]}"
        return 0
    fi
    command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get: install them by hand"
    log "installing from Debian's packages: ${missing[*]} (apt-get update first)"
    apt-get update -q >&2 || die "apt-get update failed (network? dpkg lock held by another apt?)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
        die "apt-get install ${missing[*]} failed; see the messages above"
    for p in "${missing[@]}"; do
        case $p in
            apache2) stop_packaged_service apache2 /usr/sbin/apache2 /run/apache2/apache2.pid ;;
            nginx) stop_packaged_service nginx /usr/sbin/nginx /run/nginx.pid ;;
        esac
    done
}

# A packaged apache2/nginx that was already running before this run is the
# admin's business: leave it alone, but say so, since it shares the machine.
note_packaged_services() {
    local svc pidfile pid
    for svc in apache2:/run/apache2/apache2.pid nginx:/run/nginx.pid; do
        pidfile=${svc#*:}
        svc=${svc%%:*}
        [ -r "$pidfile" ] || continue
        pid=$(tr -dc '0-9' <"$pidfile")
        [ -n "$pid" ] || continue
        [ "$(readlink "/proc/$pid/exe" 2>/dev/null || true)" = "/usr/sbin/$svc" ] || continue
        log "note: the system's $svc service runs (pid $pid); left alone, it does not use the bench ports"
    done
}

find_tools() {
    command -v wrk >/dev/null || die "wrk not found; install with apt-get install wrk"
    command -v curl >/dev/null || die "curl not found; install with apt-get install curl"
    local t
    for t in setsid timeout mktemp dpkg-query useradd; do
        command -v "$t" >/dev/null || die "$t not found (a standard Debian tool); this harness needs it"
    done
    [ -x "$PY" ] || die "$PY not found; install with apt-get install python3"
    UWSGI_BIN=""
    if wants apache-wsgi; then
        [ -x /usr/sbin/apache2 ] || die "/usr/sbin/apache2 not found; install with apt-get install apache2"
        [ -r /usr/lib/apache2/modules/mod_wsgi.so ] ||
            die "mod_wsgi not found; install with apt-get install libapache2-mod-wsgi-py3"
    fi
    if wants nginx-uwsgi; then
        [ -x /usr/sbin/nginx ] || die "/usr/sbin/nginx not found; install with apt-get install nginx"
        local u
        for u in /usr/bin/uwsgi /usr/bin/uwsgi-core; do
            if [ -x "$u" ]; then UWSGI_BIN=$u; break; fi
        done
        [ -n "$UWSGI_BIN" ] || die "uwsgi not found; install with apt-get install uwsgi-core uwsgi-plugin-python3"
    fi
    if wants pyhost; then
        [ -x "$PYHOSTD" ] ||
            die "pyhostd not found at $PYHOSTD; build it with 'make build' (or set PYHOSTD=/path/to/pyhostd)"
        "$PYHOSTD" serve --help >/dev/null 2>&1 ||
            die "'$PYHOSTD serve --help' failed: that pyhostd has no working serve command"
    fi
}

ensure_user() {
    if id -u "$BENCH_USER" >/dev/null 2>&1; then
        return 0
    fi
    log "creating system user $BENCH_USER (no login shell, no home)"
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin --comment "pyhost benchmark apps" "$BENCH_USER" ||
        die "useradd $BENCH_USER failed"
}

# ------------------------------------------------------------------ processes
#
# Every server is started with setsid, so it leads its own session and
# process group: a Ctrl-C on the terminal reaches the harness (whose trap then
# stops the stack in order), not the servers. Each top-level process is
# recorded as PID:STARTTIME so that a recycled pid is never signalled.

ROOTS=()     # PID:STARTTIME of the running stack's top-level processes

starttime_of() { # PID -> start time (clock ticks since boot); fails if gone or a zombie
    local line
    local -a f t
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
    line=${line##*) }   # the command name may contain spaces and ')'
    read -r -a f <<<"$line"
    if [ "${f[0]}" = Z ]; then
        # A zombie main thread whose other threads still run (a uWSGI worker
        # stuck after max-requests does that) is not gone: it holds its
        # sockets and files until they exit.
        t=(/proc/"$1"/task/*)
        [ "${#t[@]}" -gt 1 ] || return 1
    fi
    printf '%s\n' "${f[19]}"
}

is_alive() { # PID STARTTIME
    local now
    now=$(starttime_of "$1") || return 1
    [ "$now" = "$2" ]
}

root_pids() { local r; for r in "${ROOTS[@]}"; do printf '%s\n' "${r%%:*}"; done; }

any_root_alive() {
    local r
    for r in "${ROOTS[@]}"; do
        is_alive "${r%%:*}" "${r#*:}" && return 0
    done
    return 1
}

spawn() { # DIR LOGFILE COMMAND... -> SPAWNED_PID, appended to ROOTS
    local dir=$1 logf=$2 st
    shift 2
    # 9>&-: a server must not inherit (and outlive us holding) the run lock.
    (cd -- "$dir" && exec setsid "$@") </dev/null >>"$logf" 2>&1 9>&- &
    SPAWNED_PID=$!
    st=$(starttime_of "$SPAWNED_PID") || st=gone
    ROOTS+=("$SPAWNED_PID:$st")
}

# Stop the current stack: snapshot its whole process tree, SIGTERM the
# top-level processes (front first, the reverse of their start order), wait
# up to STOP_TIMEOUT s for every process of the snapshot to exit, then
# SIGKILL the survivors by pid.
stop_roots() {
    STOP_STATUS=""
    [ "${#ROOTS[@]}" -gt 0 ] || return 0
    local -a procs=() pids
    local i r pid st left deadline
    mapfile -t pids < <(root_pids)
    # "PID STARTTIME" of the roots and of everything under them right now.
    for r in "${ROOTS[@]}"; do procs+=("${r%%:*} ${r#*:}"); done
    mapfile -t -O "${#procs[@]}" procs < <("$PY" "$TOOL" tree "${pids[@]}" 2>/dev/null || true)
    for ((i = ${#ROOTS[@]} - 1; i >= 0; i--)); do
        r=${ROOTS[i]}
        if is_alive "${r%%:*}" "${r#*:}"; then kill -TERM "${r%%:*}" 2>/dev/null || true; fi
    done
    deadline=$((SECONDS + STOP_TIMEOUT))
    while :; do
        left=0
        for r in "${procs[@]}"; do
            read -r pid st <<<"$r"
            if is_alive "$pid" "$st"; then left=$((left + 1)); fi
        done
        [ "$left" -gt 0 ] || break
        if [ "$SECONDS" -ge "$deadline" ]; then
            for r in "${procs[@]}"; do
                read -r pid st <<<"$r"
                if is_alive "$pid" "$st"; then
                    warn "pid $pid ($(cat "/proc/$pid/comm" 2>/dev/null || echo '?')) still runs ${STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
                    kill -KILL "$pid" 2>/dev/null || true
                fi
            done
            sleep 0.2
            break
        fi
        sleep 0.2
    done
    STOP_STATUS=""
    for pid in "${pids[@]}"; do
        if wait "$pid" 2>/dev/null; then st=0; else st=$?; fi
        STOP_STATUS+="${STOP_STATUS:+, }pid $pid exit $st"
    done
    ROOTS=()
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_http() { # PORT
    local i
    for ((i = 0; i < READY_TRIES; i++)); do
        if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$1/hello" 2>/dev/null; then
            return 0
        fi
        any_root_alive || { STACK_ERROR="exited before serving"; return 1; }
        sleep 0.2
    done
    STACK_ERROR="no answer on http://127.0.0.1:$1/hello after $((READY_TRIES / 5)) s"
    return 1
}

wait_socket() { # PATH
    local i
    for ((i = 0; i < READY_TRIES; i++)); do
        [ -S "$1" ] && return 0
        any_root_alive || { STACK_ERROR="exited before creating $1"; return 1; }
        sleep 0.2
    done
    STACK_ERROR="$1 did not appear after $((READY_TRIES / 5)) s"
    return 1
}

# / and /hello must answer exactly 200, text/plain, Content-Length 6, Hello!
smoke_test() { # PORT DIR
    local port=$1 dir=$2 path code body
    for path in /hello /; do
        code=$(curl -sS --max-time 5 -D "$dir/smoke.headers" -o "$dir/smoke.body" \
            -w '%{http_code}' "http://127.0.0.1:$port$path" 2>"$dir/smoke.err") ||
            { STACK_ERROR="GET $path failed: $(head -c 200 "$dir/smoke.err")"; return 1; }
        body=$(cat "$dir/smoke.body")
        [ "$code" = 200 ] || { STACK_ERROR="GET $path answered $code, not 200"; return 1; }
        [ "$body" = "Hello!" ] || { STACK_ERROR="GET $path answered '${body:0:40}', not 'Hello!'"; return 1; }
        grep -qi '^content-type: text/plain' "$dir/smoke.headers" ||
            { STACK_ERROR="GET $path: no Content-Type text/plain"; return 1; }
        grep -qi '^content-length: 6' "$dir/smoke.headers" ||
            { STACK_ERROR="GET $path: no Content-Length: 6"; return 1; }
    done
}

# ------------------------------------------------------------------ stacks
#
# start_<stack> DIR PORT: start every server of the stack (recording each
# top-level pid through spawn), and return once it answers; on failure set
# STACK_ERROR and return 1. Called in an `if`, so set -e is off inside: every
# step checks its own status. DIR is the stack's fresh work directory.

render() { # TEMPLATE OUT KEY=VALUE...
    "$PY" "$TOOL" render "$BENCH_DIR/conf/$1" "${@:2}" 2>"$WORK/render.err" ||
        { STACK_ERROR="rendering $1: $(cat "$WORK/render.err")"; return 1; }
}

start_pyhost() {
    local dir=$1 port=$2
    local -a access=()
    [ "$ACCESS_LOG" = 1 ] && access=(--access-log "$dir/access.log")
    spawn "$dir" "$dir/pyhostd.log" "$PYHOSTD" serve --listen "127.0.0.1:$port" \
        --processes "$PROCESSES" --threads "$THREADS" --python "$PY" \
        --user "$BENCH_USER" "${PYHOST_ARGS[@]}" "${access[@]}" "$APP_DIR/$APP_FILE"
    wait_http "$port" || return 1
    grep -q "http://127.0.0.1:$port" "$dir/pyhostd.log" ||
        warn "pyhostd serves, but did not print http://127.0.0.1:$port"
}

start_apache-wsgi() {
    local dir=$1 port=$2
    render apache-wsgi.conf.in "$dir/apache2.conf" STACK_DIR="$dir" PORT="$port" \
        APP_DIR="$APP_DIR" APP_FILE="$APP_FILE" APP_USER="$BENCH_USER" PROCESSES="$PROCESSES" \
        THREADS="$THREADS" DAEMON_OPTIONS="$WSGI_DAEMON_OPTIONS" || return 1
    /usr/sbin/apache2 -t -f "$dir/apache2.conf" >>"$dir/apache2.log" 2>&1 ||
        { STACK_ERROR="apache2 -t rejected $dir/apache2.conf"; return 1; }
    spawn "$dir" "$dir/apache2.log" /usr/sbin/apache2 -f "$dir/apache2.conf" -DFOREGROUND
    wait_http "$port"
}

start_nginx-uwsgi() {
    local dir=$1 port=$2
    render uwsgi.ini.in "$dir/uwsgi.ini" STACK_DIR="$dir" APP_DIR="$APP_DIR" APP_FILE="$APP_FILE" \
        APP_USER="$BENCH_USER" PROCESSES="$PROCESSES" THREADS="$THREADS" \
        EXTRA_OPTIONS="$UWSGI_OPTIONS" || return 1
    render nginx.conf.in "$dir/nginx.conf" STACK_DIR="$dir" PORT="$port" || return 1
    mkdir -p -- "$dir/tmp" || { STACK_ERROR="cannot create $dir/tmp"; return 1; }
    spawn "$dir" "$dir/uwsgi.log" "$UWSGI_BIN" --ini "$dir/uwsgi.ini"
    wait_socket "$dir/uwsgi.sock" || return 1
    /usr/sbin/nginx -t -q -p "$dir/" -e "$dir/nginx-error.log" -c "$dir/nginx.conf" >>"$dir/nginx.log" 2>&1 ||
        { STACK_ERROR="nginx -t rejected $dir/nginx.conf"; return 1; }
    spawn "$dir" "$dir/nginx.log" /usr/sbin/nginx -p "$dir/" -e "$dir/nginx-error.log" -c "$dir/nginx.conf"
    wait_http "$port"
}

stack_port() { # STACK -> its port: PORT_BASE + its place in KNOWN_STACKS
    local i=1 s
    for s in $KNOWN_STACKS; do
        if [ "$s" = "$1" ]; then echo $((PORT_BASE + i)); return 0; fi
        i=$((i + 1))
    done
    return 1
}

show_logs() { # DIR
    local f
    for f in "$1"/*.log; do
        [ -s "$f" ] || continue
        printf -- '--- last lines of %s:\n' "$f" >&2
        tail -n 15 -- "$f" >&2
    done
}

record() { # ROUND STACK CONNS [record options...]
    "$PY" "$TOOL" record --out "$RECORDS" --round "$1" --stack "$2" --conns "$3" "${@:4}" ||
        die "could not write a record to $RECORDS"
}

# wrk's command line into WRK_CMD. -d bounds the load; timeout(1) only guards
# against a wedged wrk (--foreground: a Ctrl-C on the terminal reaches wrk).
wrk_cmd() { # PORT CONNS SECONDS
    WRK_CMD=(timeout --foreground --kill-after=5 $(($3 + 30))
        wrk -t1 -c"$2" -d"$3s" --latency --timeout "$WRK_TIMEOUT"
        -s "$WRK_SCRIPT" "http://127.0.0.1:$1/hello")
}

warm_up() { # PORT CONNS OUTFILE
    wrk_cmd "$1" "$2" "$WARMUP"
    "${WRK_CMD[@]}" >"$3" 2>&1
}

# The measured run: wrk in the background while the listener's accept queue
# is sampled at 1/4, 1/2 and 3/4 of the test (into ACCEPTQ); CPU snapshots
# of every process just before and after (OUTFILE.cpu0, OUTFILE.cpu1) tell
# how much other programs used meanwhile. Returns wrk's exit status.
measure() { # PORT CONNS OUTFILE
    local port=$1 conns=$2 out=$3 start_us k wait_us rc
    local -a mine
    mapfile -t mine < <(root_pids)
    wrk_cmd "$port" "$conns" "$DURATION"
    "$PY" "$TOOL" cpusnap "$out.cpu0" "$$" "${mine[@]}" || warn "no CPU snapshot before the test"
    start_us=${EPOCHREALTIME/./}
    (exec "${WRK_CMD[@]}" >"$out" 2>&1) &
    WRK_PID=$!
    ACCEPTQ=""
    for k in 1 2 3; do
        # Sleep up to start + k/4 of the test, whatever the samples cost.
        wait_us=$((start_us + DURATION * 250000 * k - ${EPOCHREALTIME/./}))
        if [ "$wait_us" -gt 0 ]; then sleep "$(printf '%d.%06d' $((wait_us / 1000000)) $((wait_us % 1000000)))"; fi
        ACCEPTQ+="${ACCEPTQ:+ }$("$PY" "$TOOL" acceptq "$port" 2>/dev/null || echo 0)"
    done
    if wait "$WRK_PID"; then rc=0; else rc=$?; fi
    WRK_PID=""
    "$PY" "$TOOL" cpusnap "$out.cpu1" "$$" "${mine[@]}" || warn "no CPU snapshot after the test"
    return "$rc"
}

# One stack in one round: start, smoke test, warm-up + measure per CONNS, stop.
bench_stack() { # ROUND STACK
    local round=$1 stack=$2 port dir conns rc raw
    local -a rootpids
    port=$(stack_port "$stack")
    dir=$WORK/r$round-$stack
    raw=$RAW_DIR/r$round-$stack
    mkdir -p -- "$dir" "$raw"
    STACK_ERROR=""
    log "round $round/$ROUNDS: $stack on 127.0.0.1:$port"
    if port_busy "$port"; then
        STACK_ERROR="port $port is already in use by another program (set PORT_BASE to move the bench ports)"
    elif ! "start_$stack" "$dir" "$port"; then
        : # STACK_ERROR says why
    elif ! smoke_test "$port" "$dir"; then
        :
    else
        mapfile -t rootpids < <(root_pids)
        if ! "$PY" "$TOOL" check-user "$BENCH_USER" "$PROCESSES" "${rootpids[@]}" 2>"$dir/check-user.err"; then
            STACK_ERROR=$(cat "$dir/check-user.err")
        fi
    fi
    if [ -n "$STACK_ERROR" ]; then
        warn "$stack failed: $STACK_ERROR"
        show_logs "$dir"
        for conns in $CONNS; do record "$round" "$stack" "$conns" --fail "$STACK_ERROR"; done
        FAILED=1
        stop_roots
        [ -z "$STOP_STATUS" ] || log "  stopped ($STOP_STATUS)"
        return 0
    fi
    for conns in $CONNS; do
        if ! any_root_alive; then
            warn "$stack is no longer running; skipping c=$conns"
            show_logs "$dir"
            record "$round" "$stack" "$conns" --fail "the stack exited during the run"
            FAILED=1
            continue
        fi
        if [ "$WARMUP" -gt 0 ]; then
            log "  c=$conns: ${WARMUP}s warm-up (discarded)"
            warm_up "$port" "$conns" "$raw/warmup-c$conns.txt" ||
                warn "warm-up wrk exited with status $? (see $raw/warmup-c$conns.txt)"
        fi
        log "  c=$conns: ${DURATION}s measured"
        if measure "$port" "$conns" "$raw/wrk-c$conns.txt"; then rc=0; else rc=$?; fi
        [ "$rc" -eq 0 ] || { warn "wrk exited with status $rc (see $raw/wrk-c$conns.txt)"; FAILED=1; }
        mapfile -t rootpids < <(root_pids)
        record "$round" "$stack" "$conns" --wrk "$raw/wrk-c$conns.txt" --wrk-rc "$rc" \
            --acceptq "$ACCEPTQ" --cpu "$raw/wrk-c$conns.txt.cpu0" "$raw/wrk-c$conns.txt.cpu1" \
            "${rootpids[@]}"
        case " $ACCEPTQ " in
            *" 0 "*) ;;
            *) warn "$stack left clients unaccepted during the whole test (accept queue samples: $ACCEPTQ)" ;;
        esac
    done
    log "  stopping $stack"
    stop_roots
    log "  stopped ($STOP_STATUS)"
}

# ------------------------------------------------------------------ cleanup

WORK=""
RAW_DIR=""
WRK_PID=""
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    # A background wrk (see measure) ignores the terminal's SIGINT; timeout(1)
    # passes this TERM on to it.
    if [ -n "$WRK_PID" ] && kill -0 "$WRK_PID" 2>/dev/null; then
        kill -TERM "$WRK_PID" 2>/dev/null
        wait "$WRK_PID" 2>/dev/null
    fi
    if [ "${#ROOTS[@]}" -gt 0 ]; then
        log "cleaning up: stopping the processes this run started"
        stop_roots
    fi
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ -n "$RAW_DIR" ] && [ -d "$RAW_DIR" ]; then
            # Keep the servers' logs (and rendered configs) next to the results.
            (cd -- "$WORK" && find . -type f \( -name '*.log' -o -name '*.conf' -o -name '*.ini' \) -size -10M \
                -exec cp --parents -- {} "$RAW_DIR/" \;) 2>/dev/null
        fi
        if [ "$KEEP_WORKDIR" = 1 ]; then
            log "work directory kept: $WORK"
        else
            case $WORK in /tmp/pyhost-bench.*) rm -rf -- "$WORK" ;; esac
        fi
    fi
    exit "$rc"
}

on_signal() { # INT|TERM
    warn "interrupted by SIG$1; cleaning up"
    case $1 in INT) exit 130 ;; *) exit 143 ;; esac
}

# ------------------------------------------------------------------ main

main() {
    check_knobs
    [ "$(id -u)" -eq 0 ] ||
        die "run as root (it installs packages, creates user $BENCH_USER and starts servers that switch to it): sudo make bench"
    [ "$(uname -s)" = Linux ] || die "Linux only (it reads /proc)"
    sanitize_env
    [ -x "$PY" ] || die "$PY not found: every stack runs Debian's python3; install with apt-get install python3"

    # One run at a time: two would fight over the ports and the CPUs.
    exec 9>/run/lock/pyhost-bench.lock || die "cannot open /run/lock/pyhost-bench.lock"
    flock -n 9 || die "another bench/run.sh is running (it holds /run/lock/pyhost-bench.lock)"

    install_packages
    find_tools
    ensure_user
    note_packaged_services

    trap cleanup EXIT
    trap 'on_signal INT' INT
    trap 'on_signal TERM' TERM

    local stamp results_dir
    stamp=$(date +%Y%m%d-%H%M%S)
    results_dir=$BENCH_DIR/results
    mkdir -p -- "$results_dir" || die "cannot create $results_dir"
    RAW_DIR=$results_dir/$stamp
    RECORDS=$results_dir/$stamp.jsonl
    mkdir -p -- "$RAW_DIR"
    : >"$RECORDS"

    # The apps and configs live where the unprivileged user can read them.
    WORK=$(mktemp -d /tmp/pyhost-bench.XXXXXX) || die "mktemp failed"
    chmod 0755 -- "$WORK"
    APP_DIR=$WORK/apps
    mkdir -p -- "$APP_DIR"
    install -m 0644 -- "$BENCH_DIR/apps/hello.py" "$APP_DIR/hello.py"

    local -a portargs=()
    local s
    for s in $STACKS; do portargs+=(--port "$s=$(stack_port "$s")"); done
    local command="DURATION=$DURATION WARMUP=$WARMUP ROUNDS=$ROUNDS CONNS=\"$CONNS\" STACKS=\"$STACKS\" ACCESS_LOG=$ACCESS_LOG"
    [ "$WRK_TIMEOUT" = 5s ] || command+=" WRK_TIMEOUT=$WRK_TIMEOUT"
    [ "$PORT_BASE" = 18180 ] || command+=" PORT_BASE=$PORT_BASE"
    command+=" bench/run.sh"
    "$PY" "$TOOL" meta --stacks "$STACKS" --conns "$CONNS" --rounds "$ROUNDS" \
        --duration "$DURATION" --warmup "$WARMUP" --wrk-timeout "$WRK_TIMEOUT" \
        --app-user "$BENCH_USER" --command "$command" "${portargs[@]}" \
        --pyhostd "$PYHOSTD" --uwsgi "${UWSGI_BIN:-/usr/bin/uwsgi}" >"$RAW_DIR/meta.json" ||
        die "could not describe the machine (benchtool.py meta)"

    local n_stacks n_conns
    n_stacks=$(wc -w <<<"$STACKS")
    n_conns=$(wc -w <<<"$CONNS")
    log "$ROUNDS round(s) x $n_stacks stack(s) x $n_conns test(s) of ${DURATION}s (+${WARMUP}s warm-up):" \
        "about $((ROUNDS * n_stacks * (n_conns * (DURATION + WARMUP) + 5))) s"

    FAILED=0
    local round
    for ((round = 1; round <= ROUNDS; round++)); do
        for s in $STACKS; do
            bench_stack "$round" "$s"
        done
    done

    local report=$results_dir/$stamp.md
    "$PY" "$TOOL" report --meta "$RAW_DIR/meta.json" --records "$RECORDS" >"$report" ||
        die "could not render the report from $RECORDS"
    cat -- "$report"
    log "results: $report (records: $RECORDS; wrk outputs and logs: $RAW_DIR/)"
    if [ "$FAILED" -ne 0 ]; then
        warn "some stacks or tests failed; see the table and the logs above"
        return 1
    fi
}

# bench/reload.sh sources this file for its functions; only a direct run
# runs the throughput benchmark.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
