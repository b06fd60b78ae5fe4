#!/usr/bin/env bash
# bench/run.sh: pyhost's own benchmark harness.
#
# Serves bench/apps/hello.py (or, with body tests, bench/apps/body.py) with a
# budget of 2 Python processes x 4 threads through pyhost and, in the same
# run, through Apache + mod_wsgi (daemon mode), nginx + uWSGI and, when asked,
# gunicorn alone; loads each with wrk on 127.0.0.1 and writes a markdown
# report to stdout and to bench/results/<timestamp>.md. See bench/README.md.
#
# Runs as root: it installs the peers from Debian's packages when missing,
# creates the unprivileged user the Python code runs as, and starts servers
# that switch to that user. It stops only the processes it started, by pid.
#
# Knobs (environment): DURATION WARMUP STACKS ROUNDS CONNS TESTS PYHOSTD
# WRK_TIMEOUT PORT_BASE KEEP_WORKDIR ACCESS_LOG IDLE_SETTLE BIG_CLIENT GO;
# defaults below.

set -euo pipefail

BENCH_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_DIR=$(dirname -- "$BENCH_DIR")

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
STACKS=${STACKS:-"pyhost apache-wsgi nginx-uwsgi"}
ROUNDS=${ROUNDS:-1}
CONNS=${CONNS:-"1 64"}                   # the hello test's connection counts
TESTS=${TESTS:-hello}
IDLE_SETTLE=${IDLE_SETTLE:-3}           # idle seconds before the memory reading after the tests
BIG_CLIENT=${BIG_CLIENT:-go}            # the client of get1m and file100m: go (bench/attack load) or wrk
# sudo resets PATH, and sanitize_env sets its own: find Go before (as the Makefile does).
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
PYHOSTD=${PYHOSTD:-$REPO_DIR/bin/pyhostd}
WRK_TIMEOUT=${WRK_TIMEOUT:-5s}
PORT_BASE=${PORT_BASE:-18180}
KEEP_WORKDIR=${KEEP_WORKDIR:-0}

readonly KNOWN_STACKS="pyhost apache-wsgi nginx-uwsgi gunicorn"
readonly KNOWN_TESTS="hello post64k get1m file100m"
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
NGINX_HTTP_OPTIONS=""                   # extra lines for nginx.conf's http block (body tests)
NGINX_WORKER_CONNECTIONS=""             # replaces nginx.conf's worker_connections (attack.sh)

# The test being run (set_test); the defaults are the hello test's, which
# is all bench/reload.sh runs.
WRK_PATH=/hello                         # the URL path wrk loads
WRK_LUA=""                              # wrk's script (empty: lib/report.lua)
WRK_TEST_TIMEOUT=""                     # wrk's --timeout (empty: WRK_TIMEOUT)
WRK_CLIENT=wrk                          # wrk, or go: bench/attack load in its place
ATTACK_BIN=""                           # bench/attack, built into the work folder when needed

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
    [[ $BIG_CLIENT =~ ^(go|wrk)$ ]] || die "BIG_CLIENT must be go or wrk (got '$BIG_CLIENT')"
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
    uint_between "$IDLE_SETTLE" 0 600 || die "IDLE_SETTLE must be whole seconds, 0 to 600 (got '$IDLE_SETTLE')"
    [ -n "${TESTS// /}" ] || die "TESTS is empty; choose among: $KNOWN_TESTS"
    for s in $TESTS; do
        case " $KNOWN_TESTS " in
            *" $s "*) ;;
            *) die "TESTS: unknown test '$s'; choose among: $KNOWN_TESTS" ;;
        esac
    done
}

wants() { case " $STACKS " in *" $1 "*) return 0 ;; esac; return 1; }

# True when TESTS has a test besides hello: then the stacks serve body.py.
body_tests() { local t; for t in $TESTS; do [ "$t" = hello ] || return 0; done; return 1; }
wants_test() { case " $TESTS " in *" $1 "*) return 0 ;; esac; return 1; }

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
    if wants gunicorn; then want+=(gunicorn); fi
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
    if wants gunicorn; then
        [ -x /usr/bin/gunicorn ] || die "/usr/bin/gunicorn not found; install with apt-get install gunicorn"
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

# The output lines of a command into the array NAME (no output: empty).
# Through a command substitution, which bash waits for there and then,
# rather than mapfile < <(...): on a busy machine whose pids wrap every few
# minutes, a run once hung for good in bash 5.2's wait for a later curl,
# and a process substitution is the child bash reaps at some later point.
lines_into() { # NAME COMMAND...
    local lines_into_out
    lines_into_out=$("${@:2}") || return
    if [ -z "$lines_into_out" ]; then
        eval "$1=()"
    else
        mapfile -t "$1" <<<"$lines_into_out"
    fi
}

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
    local -a more
    lines_into pids root_pids
    # "PID STARTTIME" of the roots and of everything under them right now.
    for r in "${ROOTS[@]}"; do procs+=("${r%%:*} ${r#*:}"); done
    lines_into more "$PY" "$TOOL" tree "${pids[@]}" 2>/dev/null || more=()
    procs+=("${more[@]}")
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

# pyhostd serve prints a line per request on its terminal (since
# b5c9e09; here its log file): the proxy then writes an access log that
# serve follows and copies, a write per request in two processes, where
# the peers log nothing. --quiet turns both off; an older pyhostd has no
# such flag, and no such line.
quiet_flag() {
    local help
    QUIET=()
    help=$("$PYHOSTD" serve --help 2>&1) || true
    [[ $help != *--quiet* ]] || QUIET=(--quiet)
}

start_pyhost() {
    local dir=$1 port=$2
    local -a access=() QUIET
    [ "$ACCESS_LOG" = 1 ] && access=(--access-log "$dir/access.log")
    quiet_flag
    spawn "$dir" "$dir/pyhostd.log" "$PYHOSTD" serve --listen "127.0.0.1:$port" \
        --processes "$PROCESSES" --threads "$THREADS" --python "$PY" \
        --user "$BENCH_USER" "${QUIET[@]}" "${PYHOST_ARGS[@]}" "${access[@]}" "$APP_DIR/$APP_FILE"
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
    nginx_extras "$dir/nginx.conf" || return 1
    mkdir -p -- "$dir/tmp" || { STACK_ERROR="cannot create $dir/tmp"; return 1; }
    spawn "$dir" "$dir/uwsgi.log" "$UWSGI_BIN" --ini "$dir/uwsgi.ini"
    wait_socket "$dir/uwsgi.sock" || return 1
    /usr/sbin/nginx -t -q -p "$dir/" -e "$dir/nginx-error.log" -c "$dir/nginx.conf" >>"$dir/nginx.log" 2>&1 ||
        { STACK_ERROR="nginx -t rejected $dir/nginx.conf"; return 1; }
    spawn "$dir" "$dir/nginx.log" /usr/sbin/nginx -p "$dir/" -e "$dir/nginx-error.log" -c "$dir/nginx.conf"
    wait_http "$port"
}

# NGINX_HTTP_OPTIONS and NGINX_WORKER_CONNECTIONS into the rendered
# nginx.conf. (They belong in conf/nginx.conf.in as placeholders; put here
# so that the template, which reload.sh shares, stays as it is.)
nginx_extras() { # CONF
    local conf=$1
    if [ -n "$NGINX_WORKER_CONNECTIONS" ]; then
        grep -q '^    worker_connections [0-9]*;$' "$conf" ||
            { STACK_ERROR="no worker_connections line in $conf to replace"; return 1; }
        sed -i "s/^    worker_connections [0-9]*;\$/    worker_connections $NGINX_WORKER_CONNECTIONS;/" "$conf" ||
            { STACK_ERROR="cannot edit $conf"; return 1; }
    fi
    if [ -n "$NGINX_HTTP_OPTIONS" ]; then
        grep -q '^http {$' "$conf" || { STACK_ERROR="no 'http {' line in $conf"; return 1; }
        if ! { printf '%s\n' "$NGINX_HTTP_OPTIONS" | sed 's/^/    /' >"$conf.extra" &&
            sed -i "/^http {\$/r $conf.extra" "$conf" && rm -f -- "$conf.extra"; }; then
            STACK_ERROR="cannot edit $conf"
            return 1
        fi
    fi
}

# gunicorn alone (gthread), HTTP straight from the client: the peer with
# one hop less. Run as root with --user, as the team's peer harness
# (/work/shared/bench/peers) runs it: the arbiter stays root, the workers
# run as BENCH_USER.
start_gunicorn() {
    local dir=$1 port=$2
    spawn "$dir" "$dir/gunicorn.log" /usr/bin/gunicorn --worker-class gthread \
        --workers "$PROCESSES" --threads "$THREADS" --bind "127.0.0.1:$port" \
        --user "$BENCH_USER" --group "$BENCH_USER" --chdir "$APP_DIR" \
        --graceful-timeout 10 --log-level warning "${APP_FILE%.py}:application"
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
# For the test set by set_test: its path, script, timeout and client
# (bench/attack load prints wrk's report.lua line, so both record alike).
wrk_cmd() { # PORT CONNS SECONDS
    local timeout=${WRK_TEST_TIMEOUT:-$WRK_TIMEOUT}
    if [ "$WRK_CLIENT" = go ]; then
        [[ $timeout =~ [0-9]$ ]] && timeout+=s   # wrk takes bare seconds, Go wants a unit
        WRK_CMD=(timeout --foreground --kill-after=5 $(($3 + 30))
            "$ATTACK_BIN" load -c "$2" -d "$3s" -timeout "$timeout" "-url=http://127.0.0.1:$1$WRK_PATH")
        return 0
    fi
    WRK_CMD=(timeout --foreground --kill-after=5 $(($3 + 30))
        wrk -t1 -c"$2" -d"$3s" --latency --timeout "$timeout"
        -s "${WRK_LUA:-$WRK_SCRIPT}" "http://127.0.0.1:$1$WRK_PATH")
}

# ------------------------------------------------------------------ tests
#
# hello     GET /hello, at each of CONNS
# post64k   POST /echo with a 65536-byte body, c=16
# get1m     GET /big (one 1 MiB bytes object), c=16
# file100m  GET /file (100 MiB through wsgi.file_wrapper), c=4; figures in MB/s
#
# The body tests are the team's peer-harness tests (post64k, big1m) plus the
# file download of issue 10.

readonly FILE_SIZE=$((100 * 1024 * 1024))   # body.py's file100m.bin
readonly FILE_WRK_TIMEOUT=60s                 # a 100 MiB answer slower than this is a timeout

test_conns() { # TEST -> its connection counts
    case $1 in
        hello) echo "$CONNS" ;;
        post64k | get1m) echo 16 ;;
        file100m) echo 4 ;;
    esac
}

set_test() { # TEST: WRK_PATH, WRK_LUA, WRK_TEST_TIMEOUT and WRK_CLIENT for it
    WRK_LUA=""
    WRK_TEST_TIMEOUT=""
    WRK_CLIENT=wrk
    case $1 in
        hello) WRK_PATH=/hello ;;
        post64k) WRK_PATH=/echo WRK_LUA=$WORK/post64k.lua ;;
        get1m) WRK_PATH=/big WRK_CLIENT=$BIG_CLIENT ;;
        file100m) WRK_PATH=/file WRK_TEST_TIMEOUT=$FILE_WRK_TIMEOUT WRK_CLIENT=$BIG_CLIENT ;;
    esac
}

# bench/attack into the work folder (the load client of get1m and
# file100m, and attack.sh's attacker).
build_attack() {
    [ -x "$GO" ] || die "go not found (at $GO): it builds bench/attack; set GO=/path/to/go, or BIG_CLIENT=wrk"
    log "building bench/attack"
    (cd -- "$REPO_DIR" && "$GO" build -o "$WORK/attack" ./bench/attack) >&2 ||
        die "could not build bench/attack"
    ATTACK_BIN=$WORK/attack
}

# What body tests need in the work folder: the app (next to hello.py, which
# it serves / and /hello from), its 100 MiB file, and wrk's POST script
# (lib/report.lua's done() after the body).
prepare_body_tests() {
    install -m 0644 -- "$BENCH_DIR/apps/body.py" "$APP_DIR/body.py"
    if wants_test file100m; then
        { head -c "$FILE_SIZE" /dev/zero >"$APP_DIR/file100m.bin" && chmod 0644 -- "$APP_DIR/file100m.bin"; } ||
            die "cannot write $APP_DIR/file100m.bin"
    fi
    {
        printf '%s\n' '-- POST a 64 KiB body (65536 bytes) on every request (bench/run.sh post64k).' \
            'wrk.method = "POST"' 'wrk.body = string.rep("a", 65536)' \
            'wrk.headers["Content-Type"] = "application/octet-stream"'
        cat -- "$WRK_SCRIPT"
    } >"$WORK/post64k.lua" || die "cannot write $WORK/post64k.lua"
}

# body.py's answers, checked once per stack before the load: a stack that
# truncates or mangles a body must not be timed.
body_smoke_test() { # PORT DIR
    local port=$1 dir=$2 t out want
    for t in $TESTS; do
        case $t in
            post64k)
                out=$(head -c 65536 /dev/zero | tr '\0' a | curl -sS --max-time 10 -X POST \
                    -H 'Content-Type: application/octet-stream' --data-binary @- \
                    -w ' %{http_code}' "http://127.0.0.1:$port/echo" 2>"$dir/smoke.err") ||
                    { STACK_ERROR="POST /echo failed: $(head -c 200 "$dir/smoke.err")"; return 1; }
                want="65536 200"
                ;;
            get1m | file100m)
                local path=/big size=1048576
                [ "$t" = file100m ] && path=/file size=$FILE_SIZE
                out=$(curl -sS --max-time 60 -o /dev/null -w '%{size_download} %{http_code}' \
                    "http://127.0.0.1:$port$path" 2>"$dir/smoke.err") ||
                    { STACK_ERROR="GET $path failed: $(head -c 200 "$dir/smoke.err")"; return 1; }
                want="$size 200"
                ;;
            *) continue ;;
        esac
        [ "$out" = "$want" ] || { STACK_ERROR="$t: answered '$out' (body, status), not '$want'"; return 1; }
    done
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
    lines_into mine root_pids
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

# A record for TEST into RECORDS: benchtool.py record's, with the test's
# name and the stack's memory just before it (MEMBEFORE, a memsnap file).
record_test() { # ROUND STACK TEST CONNS MEMBEFORE [record options...]
    local one=$WORK/record.jsonl
    : >"$one"
    "$PY" "$TOOL" record --out "$one" --round "$1" --stack "$2" --conns "$4" "${@:6}" ||
        die "could not write a record to $one"
    bodytool tag "$one" "$RECORDS" "$3" "$5" "$BENCH_USER" || die "could not write a record to $RECORDS"
}

# The memory of the running stack, by role, into a file; with a WHEN, also
# a line of MEMORY (the start and idle readings of the report).
memsnap() { # ROUND STACK OUTFILE [WHEN]
    local -a rootpids
    lines_into rootpids root_pids
    bodytool memsnap "$3" "$BENCH_USER" "${rootpids[@]}" || warn "no memory reading ($3)"
    if [ -n "${4:-}" ]; then
        bodytool memline "$3" "$MEMORY" "$1" "$2" "$4" || warn "could not write to $MEMORY"
    fi
}

# One stack in one round: start, smoke test, then per test and connection
# count a warm-up and a measured run, the memory after IDLE_SETTLE idle
# seconds, stop.
bench_stack() { # ROUND STACK
    local round=$1 stack=$2 port dir test conns rc raw out
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
    elif ! body_smoke_test "$port" "$dir"; then
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
        for test in $TESTS; do
            for conns in $(test_conns "$test"); do
                record_test "$round" "$stack" "$test" "$conns" "" --fail "$STACK_ERROR"
            done
        done
        FAILED=1
        stop_roots
        [ -z "$STOP_STATUS" ] || log "  stopped ($STOP_STATUS)"
        return 0
    fi
    memsnap "$round" "$stack" "$raw/mem-start.json" start
    for test in $TESTS; do
        set_test "$test"
        for conns in $(test_conns "$test"); do
            if ! any_root_alive; then
                warn "$stack is no longer running; skipping $test c=$conns"
                show_logs "$dir"
                record_test "$round" "$stack" "$test" "$conns" "" --fail "the stack exited during the run"
                FAILED=1
                continue
            fi
            out=$raw/$test-c$conns
            memsnap "$round" "$stack" "$out.mem0.json"
            if [ "$WARMUP" -gt 0 ]; then
                log "  $test c=$conns: ${WARMUP}s warm-up (discarded)"
                warm_up "$port" "$conns" "$out.warmup.txt" ||
                    warn "warm-up wrk exited with status $? (see $out.warmup.txt)"
            fi
            log "  $test c=$conns: ${DURATION}s measured"
            if measure "$port" "$conns" "$out.txt"; then rc=0; else rc=$?; fi
            [ "$rc" -eq 0 ] || { warn "wrk exited with status $rc (see $out.txt)"; FAILED=1; }
            lines_into rootpids root_pids
            record_test "$round" "$stack" "$test" "$conns" "$out.mem0.json" --wrk "$out.txt" --wrk-rc "$rc" \
                --acceptq "$ACCEPTQ" --cpu "$out.txt.cpu0" "$out.txt.cpu1" "${rootpids[@]}"
            case " $ACCEPTQ " in
                *" 0 "*) ;;
                *) warn "$stack left clients unaccepted during the whole test (accept queue samples: $ACCEPTQ)" ;;
            esac
        done
    done
    set_test hello
    if any_root_alive; then
        [ "$IDLE_SETTLE" -eq 0 ] || sleep "$IDLE_SETTLE"
        memsnap "$round" "$stack" "$raw/mem-idle.json" idle
    fi
    log "  stopping $stack"
    stop_roots
    log "  stopped ($STOP_STATUS)"
}

# ------------------------------------------------------------------ body tests' helper
#
# bodytool SUBCOMMAND ARGS: the records, memory readings and report of the
# tests beyond hello, in Python (Debian's, standard library), on top of
# lib/benchtool.py's functions:
#   memsnap OUT USER ROOT_PID...     memory of the trees, by role, as JSON
#   memline SNAP MEMORY ROUND STACK WHEN   append a reading to MEMORY
#   tag IN OUT TEST MEMBEFORE USER   copy benchtool records from IN to OUT,
#                                    with the test, the memory before, roles
#   only IN TEST                     print the records of one test
#   report META RECORDS MEMORY       the markdown of the body tests, ratios
#                                    and idle memory
# Roles: "Python" is every process running as the bench user except
# pyhost's proxy (pyhostd __proxy); "front" is the rest: the HTTP fronts
# (pyhost's proxy, nginx, Apache's own processes) and supervisors that run
# no app code (pyhostd's master, gunicorn's arbiter).
bodytool() {
    "$PY" - "$TOOL" "$@" <<'PYTHON'
import json, os, statistics, sys
sys.path.insert(0, os.path.dirname(sys.argv[1]))
import benchtool as bt  # noqa: E402

TESTS = {  # name: (what wrk asks, the unit of the ratio)
    "hello": ("`GET /hello`, at each of CONNS", "req/s"),
    "post64k": ("`POST /echo` with a 65536-byte body, c=16", "req/s"),
    "get1m": ("`GET /big`, one 1 MiB bytes object with Content-Length, c=16", "req/s"),
    "file100m": ("`GET /file`, 100 MiB through `wsgi.file_wrapper` with Content-Length, c=4 "
                 "(a request times out after 60 s)", "MB/s"),
}


def argv_of(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode("utf-8", "replace").split("\0")
    except OSError:
        return []


def add_roles(mem, user):
    sums = {"front": 0, "python": 0}
    for p in mem.get("procs", []):
        if "role" not in p:
            proxy = argv_of(p["pid"])[1:2] == ["__proxy"]
            p["role"] = "python" if p["user"] == user and not proxy else "front"
        sums[p["role"]] += p["rss_kb"]
    mem["front_rss_kb"], mem["python_rss_kb"] = sums["front"], sums["python"]
    return mem


def load(path):
    if not path or not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def append(path, rec):
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")


def mem_cell(m):
    return f"{bt.mib(m['front']):.1f} / {bt.mib(m['python']):.1f} / {bt.mib(m['total']):.1f} ({m['nprocs']})"


def mean_mem(mems):
    return {"front": statistics.mean(m["front_rss_kb"] for m in mems),
            "python": statistics.mean(m["python_rss_kb"] for m in mems),
            "total": statistics.mean(m["rss_kb"] for m in mems),
            "pss": statistics.mean(m["pss_kb"] for m in mems),
            "nprocs": max(m["nprocs"] for m in mems)}


def signed(kb):
    return f"{bt.mib(kb):+.1f}"


def report(meta_path, records_path, memory_path):
    with open(meta_path, encoding="utf-8") as f:
        meta = json.load(f)
    records, memory = load(records_path), load(memory_path)
    stacks, rounds = meta["stacks"], int(meta["rounds"])
    tests = meta["extra"].get("tests", "hello").split()
    conns = {t: ([int(c) for c in meta["conns"]] if t == "hello" else
                 [int(meta["extra"][f"conns_{t}"])]) for t in tests}
    body = [t for t in tests if t != "hello"]
    lines = []
    if "hello" not in tests:
        v = meta["versions"]
        lines += ["# pyhost benchmark: the body path, 2 processes x 4 threads", "",
                  f"- Date: {meta['date']}",
                  f"- Machine: {meta['cpus']} CPUs (nproc), {meta['cpu_model']}, "
                  f"{meta['mem_gib']} GiB RAM; {meta['kernel']}; {meta['os']}",
                  f"- Command: `{meta['command']}`",
                  "- Versions: " + "; ".join(f"{val}" for val in v.values() if val), ""]
    elif body:
        lines += ["# The body path, ratios and memory", ""]
    if meta["extra"].get("gunicorn"):
        lines += [f"- gunicorn: {meta['extra']['gunicorn']}, Debian's package: `gunicorn --worker-class gthread "
                  f"--workers 2 --threads 4`, HTTP straight from the client, no front"]
    if body:
        go = meta["extra"].get("big_client") == "go"
        lines += [f"- Load: `wrk -t1 -c<conns> -d{meta['duration']}s --latency` after a discarded "
                  f"{meta['warmup']} s warm-up; every stack serves `bench/apps/body.py`:"]
        lines += [f"  - {t}: {TESTS[t][0]}" + (", loaded by `bench/attack load`"
                                               if go and t in ("get1m", "file100m") else "")
                  for t in body]
        if go and ("get1m" in body or "file100m" in body):
            lines += ["- `bench/attack load` (BIG_CLIENT=go) works as `wrk -t1` does (one client thread, "
                      "keep-alive, each connection sends its next request when the last is answered, the "
                      "same counts and percentiles) but reads bodies 256 KiB at a time: wrk's 8 KiB reads "
                      "keep a CPU busy near 1 GB/s, below what gunicorn's sendfile serves here, and would "
                      "measure wrk. BIG_CLIENT=wrk uses wrk for every test."]
        if meta["extra"].get("nginx_http"):
            lines += [f"- nginx, for these tests, as in the team's peer harness: "
                      f"`{meta['extra']['nginx_http']}`"]
    if lines and lines[-1] != "":
        lines.append("")

    def recs(s, t, c):
        return [r for r in records if r["stack"] == s and r.get("test") == t and r["conns"] == c]

    summary = {}
    for s in stacks:
        for t in tests:
            for c in conns[t]:
                rs = recs(s, t, c)
                m = bt.summarize(rs)
                if m["ok"]:
                    ok = [r for r in rs if r["status"] == "ok"]
                    m["mbps"] = statistics.mean(r["bytes"] / r["duration_s"] / 1e6 for r in ok)
                    pairs = [(r["mem_before"], r["memory"]) for r in ok
                             if r.get("mem_before") and r.get("memory")]
                    m["mem_after"] = mean_mem([a for _, a in pairs]) if pairs else None
                    m["mem_delta"] = {k: statistics.mean(a[k + "_rss_kb"] - b[k + "_rss_kb"] for b, a in pairs)
                                      for k in ("front", "python")} if pairs else None
                summary[s, t, c] = m

    def value(m, t):
        return m["mbps"] if TESTS[t][1] == "MB/s" else m["rps"]

    def ratio(t, c, s):
        ref, m = summary.get((bt.REFERENCE, t, c)), summary[s, t, c]
        if not ref or not ref["ok"] or not m["ok"]:
            return "–"
        star = " *" if ref["acceptq"] or m["acceptq"] else ""
        return bt.fmt_ratio(value(ref, t), value(m, t)) + star

    have_ref = bt.REFERENCE in stacks
    if body:
        rows = []
        for t in body:
            for c in conns[t]:
                for s in stacks:
                    m = summary[s, t, c]
                    if not m["ok"]:
                        rows.append([t, s, c, "FAILED: " + m["reason"]] + [""] * (9 if have_ref else 8))
                        continue
                    rps = bt.fmt_rps(m["rps"])
                    if rounds > 1:
                        rps += f" ({bt.fmt_rps(m['rps_min'])}–{bt.fmt_rps(m['rps_max'])})"
                    memc = "–"
                    if m["mem_after"]:
                        a, d = m["mem_after"], m["mem_delta"]
                        memc = (f"{bt.mib(a['front']):.1f} ({signed(d['front'])}) / "
                                f"{bt.mib(a['python']):.1f} ({signed(d['python'])})")
                    mbps = f"{m['mbps']:.0f}" if t in ("get1m", "file100m") else "–"
                    row = [t, s, c, rps, mbps, bt.fmt_ms(m["p50_ms"]), bt.fmt_ms(m["p99_ms"]),
                           m["http_errors"], m["socket"], m["acceptq"], memc, bt.fmt_pct(m["foreign"])]
                    if have_ref:
                        row.append(ratio(t, c, s))
                    rows.append(row)
        header = ["test", "stack", "conns", "req/s" + (" (min–max)" if rounds > 1 else ""), "MB/s",
                  "p50 ms", "p99 ms", "non-2xx/3xx", "socket errors c/r/w/t", "unaccepted",
                  "RSS MiB after: front (Δ) / Python (Δ)", "other CPU %"]
        if have_ref:
            header.append("pyhost ÷ stack")
        lines += ["## Body tests" + (f" (mean of {rounds} rounds; p50/p99: median)" if rounds > 1 else ""), "",
                  bt.md_table(header, rows, {2, 3, 4, 5, 6, 7, 9, 11, 12}), ""]

    peers = [s for s in stacks if s != bt.REFERENCE]
    if body and have_ref and peers:
        rrows = []
        for t in tests:
            for c in conns[t]:
                ref = summary[bt.REFERENCE, t, c]
                unit = TESTS[t][1]
                val = (f"{value(ref, t):.0f} {unit}" if unit == "MB/s" else f"{bt.fmt_rps(ref['rps'])} req/s") \
                    if ref["ok"] else "failed"
                rrows.append([f"{t} c={c}", val] + [ratio(t, c, p) for p in peers])
        lines += ["## pyhost's ratio to each peer, every test", "",
                  bt.md_table(["test", "pyhost"] + [f"÷ {p}" for p in peers], rrows,
                              set(range(1, len(peers) + 2))), "",
                  "pyhost's req/s (file100m: MB/s) ÷ the peer's, in this run; above 1, pyhost did more. "
                  "`*`: some connections of that test were never accepted (see unaccepted).", ""]
        if rounds > 1:
            # Each round's own ratios: stacks of one round ran minutes apart,
            # so a ratio within a round suffers less from the machine's drift
            # than the means do.
            prow = []
            for rnd in range(1, rounds + 1):
                for t in tests:
                    for c in conns[t]:
                        one = {s: [r for r in recs(s, t, c) if r["round"] == rnd and r["status"] == "ok"]
                               for s in stacks}
                        ref = one[bt.REFERENCE]
                        val = (lambda r: r["bytes"] / r["duration_s"] / 1e6) if TESTS[t][1] == "MB/s" \
                            else (lambda r: r["rps"])
                        cells = [bt.fmt_ratio(val(ref[0]), val(one[p][0])) if ref and one[p] else "–"
                                 for p in peers]
                        foreign = max((r.get("foreign_cpu_pct", 0) for rs in one.values() for r in rs),
                                      default=None)
                        prow.append([rnd, f"{t} c={c}", (f"{val(ref[0]):.0f}" if ref else "failed")]
                                    + cells + [bt.fmt_pct(foreign)])
            lines += ["## Per round: pyhost ÷ each peer", "",
                      bt.md_table(["round", "test", "pyhost req/s (file100m: MB/s)"] + [f"÷ {p}" for p in peers]
                                  + ["largest other CPU %"], prow, set(range(2, len(peers) + 4)) | {0}), ""]

    mrows = []
    for s in stacks:
        start = [m for m in memory if m["stack"] == s and m["when"] == "start"]
        idle = [m for m in memory if m["stack"] == s and m["when"] == "idle"]
        if not start:
            mrows.append([s, "–", "–", "–", "–"])
            continue
        a = mean_mem(start)
        if not idle:
            mrows.append([s, mem_cell(a), "–", "–", f"{bt.mib(a['pss']):.1f} → –"])
            continue
        b = mean_mem(idle)
        mrows.append([s, mem_cell(a), mem_cell(b),
                      f"{signed(b['front'] - a['front'])} / {signed(b['python'] - a['python'])} / "
                      f"{signed(b['total'] - a['total'])}",
                      f"{bt.mib(a['pss']):.1f} → {bt.mib(b['pss']):.1f}"])
    lines += ["## Idle memory of each stack, before and after the tests", "",
              bt.md_table(["stack", "RSS MiB at start: front / Python / total (procs)",
                           f"after the tests, {meta['extra'].get('idle_settle', '?')} s idle",
                           "change front / Python / total", "PSS MiB start → after"],
                          mrows, {1, 2, 3, 4}), "",
              "- Python: the processes running as the bench user (workers, fork servers, uWSGI's master, "
              "mod_wsgi's daemons), except pyhost's proxy; front: the rest of the stack's process trees "
              "(pyhost's master and proxy, nginx, Apache's own processes, gunicorn's arbiter). At start: "
              "right after the smoke test, before any load." + (" Mean of the rounds." if rounds > 1 else "")]
    if body:
        lines += ["- RSS MiB after (Δ), per test: right after the measured run, and its change from right "
                  "before that test's warm-up.",
                  "- MB/s (get1m, file100m): bytes received ÷ the test's duration, in 10^6 bytes, bodies whole "
                  "or not (wrk counts headers too, `bench/attack load` only bodies)."]
    lines.append("")
    print("\n".join(lines))


cmd, args = sys.argv[2], sys.argv[3:]
if cmd == "memsnap":
    out, user, pids = args[0], args[1], args[2:]
    mem = add_roles(bt.memory(bt.parse_pids(pids)), user) if pids else None
    with open(out, "w", encoding="utf-8") as f:
        json.dump(mem, f)
elif cmd == "memline":
    snap, memory, rnd, stack, when = args
    with open(snap, encoding="utf-8") as f:
        mem = json.load(f)
    if mem:
        mem.update(round=int(rnd), stack=stack, when=when)
        append(memory, mem)
elif cmd == "tag":
    src, dst, test, before, user = args
    mem_before = None
    if before and os.path.exists(before):
        with open(before, encoding="utf-8") as f:
            mem_before = json.load(f)
    for rec in load(src):
        rec["test"] = test
        if mem_before:
            rec["mem_before"] = mem_before
        if rec.get("memory"):
            add_roles(rec["memory"], user)
        append(dst, rec)
elif cmd == "only":
    for rec in load(args[0]):
        if rec.get("test") == args[1]:
            print(json.dumps(rec, sort_keys=True))
elif cmd == "report":
    report(*args)
else:
    bt.die(f"bodytool: unknown subcommand {cmd}")
PYTHON
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
    # LOCK_WAIT=N waits up to N s for another run to end (0: not at all).
    flock -w "${LOCK_WAIT:-0}" 9 || die "another bench/run.sh is running (it holds /run/lock/pyhost-bench.lock)"

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
    MEMORY=$RAW_DIR/memory.jsonl
    mkdir -p -- "$RAW_DIR"
    : >"$RECORDS"
    : >"$MEMORY"

    # The apps and configs live where the unprivileged user can read them.
    WORK=$(mktemp -d /tmp/pyhost-bench.XXXXXX) || die "mktemp failed"
    chmod 0755 -- "$WORK"
    APP_DIR=$WORK/apps
    mkdir -p -- "$APP_DIR"
    install -m 0644 -- "$BENCH_DIR/apps/hello.py" "$APP_DIR/hello.py"
    local -a extra=(--extra "tests=$TESTS" --extra "idle_settle=$IDLE_SETTLE")
    if body_tests; then
        # body.py answers / and /hello as hello.py does, so hello runs on it too.
        APP_FILE=body.py
        prepare_body_tests
        # The team's peer harness's nginx settings for bodies: the 64 KiB POST
        # body stays in memory, large responses are never spooled to disk.
        NGINX_HTTP_OPTIONS="client_body_buffer_size 128k;
client_max_body_size 2m;
uwsgi_max_temp_file_size 0;"
        extra+=(--extra "nginx_http=${NGINX_HTTP_OPTIONS//$'\n'/ }")
        for s in $TESTS; do
            [ "$s" = hello ] || extra+=(--extra "conns_$s=$(test_conns "$s")")
        done
        extra+=(--extra "big_client=$BIG_CLIENT")
        if [ "$BIG_CLIENT" = go ] && { wants_test get1m || wants_test file100m; }; then build_attack; fi
    fi
    if wants gunicorn; then
        extra+=(--extra "gunicorn=$(/usr/bin/gunicorn --version 2>&1 | head -n 1)")
    fi

    local -a portargs=()
    local s
    for s in $STACKS; do portargs+=(--port "$s=$(stack_port "$s")"); done
    local command="DURATION=$DURATION WARMUP=$WARMUP ROUNDS=$ROUNDS CONNS=\"$CONNS\" STACKS=\"$STACKS\" ACCESS_LOG=$ACCESS_LOG"
    [ "$TESTS" = hello ] || command+=" TESTS=\"$TESTS\""
    [ "$IDLE_SETTLE" = 3 ] || command+=" IDLE_SETTLE=$IDLE_SETTLE"
    [ "$BIG_CLIENT" = go ] || command+=" BIG_CLIENT=$BIG_CLIENT"
    [ "$WRK_TIMEOUT" = 5s ] || command+=" WRK_TIMEOUT=$WRK_TIMEOUT"
    [ "$PORT_BASE" = 18180 ] || command+=" PORT_BASE=$PORT_BASE"
    command+=" bench/run.sh"
    "$PY" "$TOOL" meta --stacks "$STACKS" --conns "$CONNS" --rounds "$ROUNDS" \
        --duration "$DURATION" --warmup "$WARMUP" --wrk-timeout "$WRK_TIMEOUT" \
        --app-user "$BENCH_USER" --command "$command" "${portargs[@]}" \
        --pyhostd "$PYHOSTD" --uwsgi "${UWSGI_BIN:-/usr/bin/uwsgi}" "${extra[@]}" >"$RAW_DIR/meta.json" ||
        die "could not describe the machine (benchtool.py meta)"

    local n_stacks n_tests=0 t
    n_stacks=$(wc -w <<<"$STACKS")
    for t in $TESTS; do n_tests=$((n_tests + $(wc -w <<<"$(test_conns "$t")"))); done
    log "$ROUNDS round(s) x $n_stacks stack(s) x $n_tests test(s) of ${DURATION}s (+${WARMUP}s warm-up):" \
        "about $((ROUNDS * n_stacks * (n_tests * (DURATION + WARMUP) + 5 + IDLE_SETTLE))) s"

    FAILED=0
    local round
    for ((round = 1; round <= ROUNDS; round++)); do
        for s in $STACKS; do
            bench_stack "$round" "$s"
        done
    done

    # The hello tests in benchtool.py's report, as ever; then the body
    # tests, every test's ratios and the idle memory.
    local report=$results_dir/$stamp.md
    : >"$report"
    if wants_test hello; then
        bodytool only "$RECORDS" hello >"$RAW_DIR/hello.jsonl" ||
            die "could not read the hello records from $RECORDS"
        "$PY" "$TOOL" report --meta "$RAW_DIR/meta.json" --records "$RAW_DIR/hello.jsonl" >>"$report" ||
            die "could not render the report from $RECORDS"
    fi
    bodytool report "$RAW_DIR/meta.json" "$RECORDS" "$MEMORY" >>"$report" ||
        die "could not render the body tests' report from $RECORDS"
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
