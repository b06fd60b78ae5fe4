#!/usr/bin/env bash
# bench/https.sh: hello over HTTPS (issue 12), pyhost terminating TLS itself
# next to nginx + uWSGI with nginx terminating TLS and Apache + mod_wsgi with
# mod_ssl, all with the same self-signed certificate and run.sh's budget of
# 2 Python processes x 4 threads as the bench user.
#
# Per round and stack (stacks interleaved within each round, as run.sh does),
# on a freshly started server, three loads of GET /hello on 127.0.0.1:
#   h1         wrk -t1 -c64, HTTP/1.1 over TLS, keep-alive
#   h2         h2load -t1 -c16 -m4: HTTP/2 (ALPN h2), 16 connections x 4
#              streams = 64 requests in flight, as wrk's c=64
#   handshake  wrk -t1 -c64 -H "Connection: close": one request per
#              connection, so req/s = full TLS handshakes/s (wrk never
#              resumes a session)
# each after a discarded warm-up of WARMUP s. It prints each figure,
# pyhost's ratio to each peer per round, and the medians over the rounds:
# stdout and bench/results/https-<timestamp>.md.
#
# Runs as root, like run.sh, whose functions it sources (install, the bench
# user, spawn and stop by pid, cleanup, the lock's file); it installs
# nghttp2-client (h2load) when missing. All traffic stays on loopback; every
# load is bounded by its duration and by timeout(1).
# Knobs (environment): ROUNDS DURATION WARMUP STACKS HTTPS_TESTS H2_CLIENTS
# H2_STREAMS HELLO_CONNS HANDSHAKE_CONNS KEY_TYPE TLS_PORT_BASE WORKER_SCHED PEER_CGROUP, run.sh's
# PYHOSTD WRK_TIMEOUT KEEP_WORKDIR LOCK_WAIT, and pyhostd's own
# PYHOST_PROXY_PROCS (recorded in the report's command when set).

set -euo pipefail

HTTPS_SH=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)/https.sh

STACKS=${STACKS:-"pyhost apache-wsgi nginx-uwsgi"}
HTTPS_TESTS=${HTTPS_TESTS:-"h1 h2 handshake"}
HELLO_CONNS=${HELLO_CONNS:-64}          # wrk's connections for h1
H2_CLIENTS=${H2_CLIENTS:-16}            # h2load's connections (-c) for h2
H2_STREAMS=${H2_STREAMS:-4}             # h2load's streams per connection (-m)
HANDSHAKE_CONNS=${HANDSHAKE_CONNS:-64}  # wrk's connections for handshake
KEY_TYPE=${KEY_TYPE:-ec}                # the certificate's key: ec (P-256) or rsa (2048)
TLS_PORT_BASE=${TLS_PORT_BASE:-18190}   # stacks listen at TLS_PORT_BASE + 1, 2, 3
WORKER_SCHED=${WORKER_SCHED:-}          # batch: pyhost's Python processes under SCHED_BATCH (an experiment; see sched_workers)
PEER_CGROUP=${PEER_CGROUP:-}            # cpu: each peer stack in a CPU cgroup of its own, as pyhost puts itself (see peer_cgroup)

# shellcheck source=run.sh
source "$(dirname -- "$HTTPS_SH")/run.sh"

readonly HTTPS_STACKS="pyhost apache-wsgi nginx-uwsgi" KNOWN_HTTPS_TESTS="h1 h2 handshake"
readonly TLS_HOST=localhost             # the certificate's name (and 127.0.0.1)
CERT="" KEY=""

check_https_knobs() {
    # run.sh's check_knobs checks CONNS, which run.sh's own tests read.
    # shellcheck disable=SC2034
    CONNS=$HELLO_CONNS
    check_knobs
    local s
    for s in $STACKS; do
        case " $HTTPS_STACKS " in
            *" $s "*) ;;
            *) die "STACKS: https.sh runs $HTTPS_STACKS (got '$s')" ;;
        esac
    done
    [ -n "${HTTPS_TESTS// /}" ] || die "HTTPS_TESTS is empty; choose among: $KNOWN_HTTPS_TESTS"
    for s in $HTTPS_TESTS; do
        case " $KNOWN_HTTPS_TESTS " in
            *" $s "*) ;;
            *) die "HTTPS_TESTS: unknown test '$s'; choose among: $KNOWN_HTTPS_TESTS" ;;
        esac
    done
    uint_between "$HELLO_CONNS" 1 1000 || die "HELLO_CONNS must be 1 to 1000 (got '$HELLO_CONNS')"
    uint_between "$H2_CLIENTS" 1 1000 || die "H2_CLIENTS must be 1 to 1000 (got '$H2_CLIENTS')"
    uint_between "$H2_STREAMS" 1 100 || die "H2_STREAMS must be 1 to 100 (got '$H2_STREAMS')"
    uint_between "$HANDSHAKE_CONNS" 1 1000 || die "HANDSHAKE_CONNS must be 1 to 1000 (got '$HANDSHAKE_CONNS')"
    [[ $KEY_TYPE =~ ^(ec|rsa)$ ]] || die "KEY_TYPE must be ec or rsa (got '$KEY_TYPE')"
    uint_between "$TLS_PORT_BASE" 1024 65000 || die "TLS_PORT_BASE must be a port number (got '$TLS_PORT_BASE')"
    [[ $WORKER_SCHED =~ ^(|batch)$ ]] || die "WORKER_SCHED must be empty or batch (got '$WORKER_SCHED')"
    [[ $PEER_CGROUP =~ ^(|cpu)$ ]] || die "PEER_CGROUP must be empty or cpu (got '$PEER_CGROUP')"
    [ -z "$PEER_CGROUP" ] || cpu_cgroup_root >/dev/null || die "PEER_CGROUP=cpu: no CPU cgroup hierarchy to make one in"
}

tls_port() { # STACK -> its HTTPS port
    local i=1 s
    for s in $HTTPS_STACKS; do
        if [ "$s" = "$1" ]; then echo $((TLS_PORT_BASE + i)); return 0; fi
        i=$((i + 1))
    done
    return 1
}

# h2load (nghttp2-client) and openssl, installed when missing; once
# present, nothing is asked of apt. run.sh's install_packages did the rest.
install_https_tools() {
    local -a missing=()
    pkg_installed nghttp2-client || missing+=(nghttp2-client)
    command -v openssl >/dev/null || missing+=(openssl)
    [ "${#missing[@]}" -gt 0 ] || return 0
    command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get: install them by hand"
    log "installing from Debian's packages: ${missing[*]}"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; then
        apt-get update -q >&2 || die "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
            die "apt-get install ${missing[*]} failed"
    fi
    command -v h2load >/dev/null || die "h2load not found after installing nghttp2-client"
}

# A self-signed certificate for localhost and 127.0.0.1, valid 2 days, in
# the work folder: the certificate world-readable, the key root's alone
# (every stack reads it as root: nginx's and Apache's parents, pyhost's
# master, which hands it to its proxy).
make_cert() {
    local dir=$WORK/tls
    local -a newkey
    { mkdir -p -- "$dir" && chmod 0755 -- "$dir"; } || die "cannot create $dir"
    case $KEY_TYPE in
        ec) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
        rsa) newkey=(-newkey rsa:2048) ;;
    esac
    (umask 077 && openssl req -x509 "${newkey[@]}" -nodes -days 2 -subj "/CN=$TLS_HOST" \
        -addext "subjectAltName=DNS:$TLS_HOST,IP:127.0.0.1" \
        -addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=serverAuth" \
        -keyout "$dir/key.pem" -out "$dir/cert.pem") >"$dir/openssl.log" 2>&1 ||
        die "openssl could not make the certificate: $(tail -n 3 "$dir/openssl.log")"
    chmod 0644 -- "$dir/cert.pem"
    CERT=$dir/cert.pem KEY=$dir/key.pem
}

# ------------------------------------------------------------------ stacks

wait_https() { # PORT
    local i
    for ((i = 0; i < READY_TRIES; i++)); do
        if curl -fsS -o /dev/null --max-time 2 --cacert "$CERT" "https://127.0.0.1:$1/hello" 2>/dev/null; then
            return 0
        fi
        any_root_alive || { STACK_ERROR="exited before serving"; return 1; }
        sleep 0.2
    done
    STACK_ERROR="no answer on https://127.0.0.1:$1/hello after $((READY_TRIES / 5)) s"
    return 1
}

# quiet_flag (run.sh): pyhost serves with --quiet, as the peers log nothing.

start_tls_pyhost() {
    local dir=$1 port=$2
    local -a QUIET
    quiet_flag
    spawn "$dir" "$dir/pyhostd.log" "$PYHOSTD" serve --listen "127.0.0.1:$port" \
        --tls-cert "$CERT" --tls-key "$KEY" "${QUIET[@]}" \
        --processes "$PROCESSES" --threads "$THREADS" --python "$PY" \
        --user "$BENCH_USER" "$APP_DIR/$APP_FILE"
    wait_https "$port"
}

start_tls_apache-wsgi() {
    local dir=$1 port=$2
    render apache-wsgi-tls.conf.in "$dir/apache2.conf" STACK_DIR="$dir" PORT="$port" \
        APP_DIR="$APP_DIR" APP_FILE="$APP_FILE" APP_USER="$BENCH_USER" PROCESSES="$PROCESSES" \
        THREADS="$THREADS" CERT="$CERT" KEY="$KEY" || return 1
    /usr/sbin/apache2 -t -f "$dir/apache2.conf" >>"$dir/apache2.log" 2>&1 ||
        { STACK_ERROR="apache2 -t rejected $dir/apache2.conf: $(tail -n 2 "$dir/apache2.log")"; return 1; }
    spawn "$dir" "$dir/apache2.log" /usr/sbin/apache2 -f "$dir/apache2.conf" -DFOREGROUND
    wait_https "$port"
}

start_tls_nginx-uwsgi() {
    local dir=$1 port=$2
    render uwsgi.ini.in "$dir/uwsgi.ini" STACK_DIR="$dir" APP_DIR="$APP_DIR" APP_FILE="$APP_FILE" \
        APP_USER="$BENCH_USER" PROCESSES="$PROCESSES" THREADS="$THREADS" EXTRA_OPTIONS="" || return 1
    render nginx-tls.conf.in "$dir/nginx.conf" STACK_DIR="$dir" PORT="$port" CERT="$CERT" KEY="$KEY" || return 1
    mkdir -p -- "$dir/tmp" || { STACK_ERROR="cannot create $dir/tmp"; return 1; }
    spawn "$dir" "$dir/uwsgi.log" "$UWSGI_BIN" --ini "$dir/uwsgi.ini"
    wait_socket "$dir/uwsgi.sock" || return 1
    /usr/sbin/nginx -t -q -p "$dir/" -e "$dir/nginx-error.log" -c "$dir/nginx.conf" >>"$dir/nginx.log" 2>&1 ||
        { STACK_ERROR="nginx -t rejected $dir/nginx.conf"; return 1; }
    spawn "$dir" "$dir/nginx.log" /usr/sbin/nginx -p "$dir/" -e "$dir/nginx-error.log" -c "$dir/nginx.conf"
    wait_https "$port"
}

# WORKER_SCHED=batch (an experiment, pyhost only): SCHED_BATCH for
# pyhost's Python processes (the fork server and its workers, every
# thread; a worker forked later inherits it), set from outside by chrt(1)
# once the stack serves. A task under SCHED_BATCH never preempts the one
# running when it is woken: the proxy's write of a request to a worker
# socket (a synchronous wakeup, which places the worker on the proxy's
# CPU) then no longer switches the proxy out there and then.
sched_workers() { # ROOT_PID...
    local -a tree=()
    local line pid cmd n=0
    lines_into tree "$PY" "$TOOL" tree "$@" 2>/dev/null || tree=()
    for line in "${tree[@]}"; do
        pid=${line%% *}
        cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
        case $cmd in
            *pyhost_worker.py*)
                if chrt -a -b -p 0 "$pid" >/dev/null 2>&1; then
                    n=$((n + 1))
                else
                    warn "chrt -b: cannot set SCHED_BATCH on pid $pid"
                fi ;;
        esac
    done
    log "  SCHED_BATCH on $n Python process(es) of pyhost"
    [ "$n" -gt 0 ] || STACK_ERROR="WORKER_SCHED=batch: no Python process of pyhost found"
}

# PEER_CGROUP=cpu (pyhost is left alone): pyhost puts its whole tree in
# a CPU cgroup of its own (pyhost-*/, the proxy under daemon/, the workers
# under apps/), so under contention its processes together weigh what one
# task of the root group does; a peer's processes run in the harness's
# group, each its own weight. With this knob each peer stack's processes
# move, once it serves, into a new CPU cgroup of the default weight (as a
# systemd service's would), so both sides compete as one entity each. The
# group goes when the stack stops.
cpu_cgroup_root() { # -> the CPU controller's root: cgroup v1's cpu, or v2 with cpu enabled
    if [ -d /sys/fs/cgroup/cpu ] && [ -f /sys/fs/cgroup/cpu/cgroup.procs ]; then
        echo /sys/fs/cgroup/cpu
    elif grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null; then
        echo /sys/fs/cgroup
    else
        return 1
    fi
}

PEER_CG_DIR=""
peer_cgroup() { # STACK ROOT_PID...
    local stack=$1 root line pid n=0
    shift
    local -a tree=()
    root=$(cpu_cgroup_root) || { STACK_ERROR="PEER_CGROUP=cpu: no CPU cgroup hierarchy"; return; }
    PEER_CG_DIR=$root/pyhost-bench-$stack-$$
    mkdir -p -- "$PEER_CG_DIR" || { STACK_ERROR="PEER_CGROUP=cpu: cannot create $PEER_CG_DIR"; return; }
    # The tree holds the roots too.
    lines_into tree "$PY" "$TOOL" tree "$@" 2>/dev/null || tree=()
    for line in "${tree[@]}"; do
        pid=${line%% *}
        if echo "$pid" >"$PEER_CG_DIR/cgroup.procs" 2>/dev/null; then n=$((n + 1)); fi
    done
    log "  PEER_CGROUP: $n process(es) of $stack in $PEER_CG_DIR"
}

peer_cgroup_remove() {
    [ -n "$PEER_CG_DIR" ] || return 0
    rmdir -- "$PEER_CG_DIR" 2>/dev/null || warn "PEER_CGROUP: could not remove $PEER_CG_DIR (a process is left in it?)"
    PEER_CG_DIR=""
}

# /hello over HTTP/1.1 and over HTTP/2 (ALPN), the certificate verified:
# exactly 200 Hello!, and the protocol asked for.
https_smoke_test() { # PORT DIR
    local port=$1 dir=$2 v out
    for v in 1.1 2; do
        out=$(curl -sS --max-time 5 --cacert "$CERT" "--http$v" -o "$dir/smoke.body" \
            -w '%{http_code} %{http_version}' "https://127.0.0.1:$port/hello" 2>"$dir/smoke.err") ||
            { STACK_ERROR="GET /hello over HTTP/$v failed: $(head -c 200 "$dir/smoke.err")"; return 1; }
        [ "$out" = "200 $v" ] || { STACK_ERROR="GET /hello over HTTP/$v: status and version '$out'"; return 1; }
        [ "$(cat "$dir/smoke.body")" = "Hello!" ] ||
            { STACK_ERROR="GET /hello over HTTP/$v did not answer Hello!"; return 1; }
    done
}

# What the handshake negotiates with an OpenSSL client offering h2 and
# http/1.1: protocol, suite, key exchange, ALPN (one line, for the report).
tls_facts() { # PORT
    local out
    out=$(timeout 10 openssl s_client -connect "127.0.0.1:$1" -servername "$TLS_HOST" \
        -alpn h2,http/1.1 </dev/null 2>&1 | tr -d '\0') || true
    printf '%s\n' "$out" | grep -aE '^New, |Server Temp Key|ALPN protocol|No ALPN' |
        sed -E 's/^New, //; s/, Cipher is /, /' | paste -sd ';' - | sed 's/;/; /g'
}

# ------------------------------------------------------------------ loads

# The command of TEST for PORT and SECONDS into LOAD_CMD; -d/-D bound the
# load, timeout(1) guards against a wedged client.
load_cmd() { # TEST PORT SECONDS
    local url=https://127.0.0.1:$2/hello
    case $1 in
        h1) LOAD_CMD=(timeout --foreground --kill-after=5 $(($3 + 30))
            wrk -t1 -c"$HELLO_CONNS" -d"$3s" --latency --timeout "$WRK_TIMEOUT" -s "$WRK_SCRIPT" "$url") ;;
        handshake) LOAD_CMD=(timeout --foreground --kill-after=5 $(($3 + 30))
            wrk -t1 -c"$HANDSHAKE_CONNS" -d"$3s" --latency --timeout "$WRK_TIMEOUT" -H "Connection: close"
            -s "$WRK_SCRIPT" "$url") ;;
        h2) LOAD_CMD=(timeout --foreground --kill-after=5 $(($3 + 30))
            h2load -t1 -c"$H2_CLIENTS" -m"$H2_STREAMS" -D "$3" "$url") ;;
    esac
}

# One test: the warm-up (discarded), then the measured load between two CPU
# snapshots; its record appended to RECORDS.
run_test() { # ROUND STACK TEST PORT RAWDIR
    local round=$1 stack=$2 test=$3 port=$4 out=$5/$3 rc
    local -a mine
    if [ "$WARMUP" -gt 0 ]; then
        load_cmd "$test" "$port" "$WARMUP"
        "${LOAD_CMD[@]}" >"$out.warmup.txt" 2>&1 || warn "$test warm-up exited with status $? (see $out.warmup.txt)"
    fi
    lines_into mine root_pids
    load_cmd "$test" "$port" "$DURATION"
    "$PY" "$TOOL" cpusnap "$out.cpu0" "$$" "${mine[@]}" || warn "no CPU snapshot before the test"
    if "${LOAD_CMD[@]}" >"$out.txt" 2>&1; then rc=0; else rc=$?; fi
    "$PY" "$TOOL" cpusnap "$out.cpu1" "$$" "${mine[@]}" || warn "no CPU snapshot after the test"
    [ "$rc" -eq 0 ] || { warn "$test load exited with status $rc (see $out.txt)"; FAILED=1; }
    httpstool record "$RECORDS" "$round" "$stack" "$test" "$out.txt" "$rc" "$out.cpu0" "$out.cpu1" ||
        die "could not write a record to $RECORDS"
}

https_stack() { # ROUND STACK
    local round=$1 stack=$2 port dir raw test
    local -a rootpids
    port=$(tls_port "$stack")
    dir=$WORK/r$round-$stack
    raw=$RAW_DIR/r$round-$stack
    mkdir -p -- "$dir" "$raw"
    STACK_ERROR=""
    log "round $round/$ROUNDS: $stack on https://127.0.0.1:$port"
    if port_busy "$port"; then
        STACK_ERROR="port $port is already in use by another program (set TLS_PORT_BASE to move the ports)"
    elif ! "start_tls_$stack" "$dir" "$port"; then
        :
    elif ! https_smoke_test "$port" "$dir"; then
        :
    else
        lines_into rootpids root_pids
        if ! "$PY" "$TOOL" check-user "$BENCH_USER" "$PROCESSES" "${rootpids[@]}" 2>"$dir/check-user.err"; then
            STACK_ERROR=$(cat "$dir/check-user.err")
        elif [ "$stack" = pyhost ] && [ -n "$WORKER_SCHED" ]; then
            sched_workers "${rootpids[@]}"
        elif [ "$stack" != pyhost ] && [ -n "$PEER_CGROUP" ]; then
            peer_cgroup "$stack" "${rootpids[@]}"
        fi
    fi
    if [ -n "$STACK_ERROR" ]; then
        warn "$stack failed: $STACK_ERROR"
        show_logs "$dir"
        for test in $HTTPS_TESTS; do
            httpstool fail "$RECORDS" "$round" "$stack" "$test" "$STACK_ERROR"
        done
        FAILED=1
        stop_roots
        peer_cgroup_remove
        return 0
    fi
    [ "$round" -gt 1 ] || printf '%s\t%s\n' "$stack" "$(tls_facts "$port")" >>"$RAW_DIR/tls.tsv"
    for test in $HTTPS_TESTS; do
        if ! any_root_alive; then
            warn "$stack is no longer running; skipping $test"
            httpstool fail "$RECORDS" "$round" "$stack" "$test" "the stack exited during the run"
            FAILED=1
            continue
        fi
        log "  $test: ${WARMUP}s warm-up, ${DURATION}s measured"
        run_test "$round" "$stack" "$test" "$port" "$raw"
    done
    log "  stopping $stack"
    stop_roots
    peer_cgroup_remove
    log "  stopped ($STOP_STATUS)"
}

# ------------------------------------------------------------------ records and report
#
# httpstool SUBCOMMAND ARGS, Debian's python3 on top of lib/benchtool.py:
#   record RECORDS ROUND STACK TEST OUTPUT RC CPU0 CPU1   parse wrk's
#          (report.lua) or h2load's output, append one JSON record
#   fail RECORDS ROUND STACK TEST REASON                  a failed record
#   report META RECORDS TLS_TSV                           the markdown
httpstool() {
    "$PY" - "$TOOL" "$@" <<'PYTHON'
import json, os, re, statistics, sys
sys.path.insert(0, os.path.dirname(sys.argv[1]))
import benchtool as bt  # noqa: E402

TESTS = {
    "h1": "HTTP/1.1 + TLS, keep-alive",
    "h2": "HTTP/2 (h2load)",
    "handshake": "new TLS connection per request",
}


def parse_h2load(path):
    """h2load's summary: requests that succeeded over the measured time."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    m = re.search(r"^finished in ([0-9.]+)(m?s), ([0-9.]+) req/s", text, re.M)
    r = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", text, re.M)
    c = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
    if not (m and r and c):
        raise ValueError("h2load printed no summary (see its output)")
    seconds = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
    proto = re.search(r"^Application protocol: (\S+)", text, re.M)
    t = re.search(r"^time for request:\s+(\S+)\s+(\S+)\s+(\S+)", text, re.M)

    def ms(s):
        v = float(re.match(r"[0-9.]+", s).group(0))
        return v / 1000 if s.endswith("us") else v * 1000 if s.endswith("s") and not s.endswith("ms") else v
    return {
        "requests": int(r.group(4)),
        "duration_s": round(seconds, 3),
        "rps": int(r.group(4)) / seconds if seconds > 0 else 0.0,
        "failed": int(r.group(5)) + int(r.group(6)) + int(r.group(7)),
        "http_errors": int(c.group(3)) + int(c.group(4)),
        "protocol": proto.group(1) if proto else "?",
        "mean_ms": ms(t.group(3)) if t else None,
        "max_ms": ms(t.group(2)) if t else None,
    }


def parse_wrk(path):
    rec = bt.parse_wrk(path)
    rec["failed"] = sum(rec[k] for k in ("err_connect", "err_read", "err_write", "err_timeout"))
    rec["protocol"] = "http/1.1"
    return rec


def append(path, rec):
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def record(out, rnd, stack, test, output, rc, cpu0, cpu1):
    rec = {"round": int(rnd), "stack": stack, "test": test, "status": "ok"}
    try:
        rec.update(parse_h2load(output) if test == "h2" else parse_wrk(output))
    except (OSError, ValueError, KeyError) as e:
        rec.update(status="failed", reason=f"no result: {e}")
    if rc != "0" and rec["status"] == "ok":
        rec.update(status="failed", reason=f"the load exited with status {rc}")
    try:
        rec["foreign_cpu_pct"] = round(bt.foreign_cpu(cpu0, cpu1), 1)
        # The stack's own CPU time per request (front and Python together):
        # what a request costs, less sensitive to a busy machine than req/s.
        with open(cpu0, encoding="utf-8") as f:
            before = json.load(f)
        with open(cpu1, encoding="utf-8") as f:
            after = json.load(f)
        stack_s = (after["stack"] - before["stack"]) / after["clk_tck"]
        rec["stack_cpu_s"] = round(stack_s, 2)
        if rec.get("requests"):
            rec["stack_cpu_us_per_req"] = round(stack_s * 1e6 / rec["requests"], 1)
    except (OSError, ValueError, KeyError) as e:
        print(f"httpstool: no CPU figures: {e}", file=sys.stderr)
    append(out, rec)
    if rec["status"] == "ok":
        line = (f"    {bt.fmt_rps(rec['rps'])} req/s ({rec['protocol']}), failed {rec['failed']}, "
                f"non-2xx/3xx {rec['http_errors']}")
        if "p99_ms" in rec:
            line += f", p50 {bt.fmt_ms(rec['p50_ms'])} ms, p99 {bt.fmt_ms(rec['p99_ms'])} ms"
        if "stack_cpu_us_per_req" in rec:
            line += f", stack CPU {rec['stack_cpu_us_per_req']:.0f} µs/req"
        if "foreign_cpu_pct" in rec:
            line += f", other CPU {rec['foreign_cpu_pct']:.0f}%"
        print(line, file=sys.stderr)
    else:
        print(f"    failed: {rec['reason']}", file=sys.stderr)


def med(xs):
    return statistics.median(xs) if xs else None


def report(meta_path, records_path, tls_path):
    with open(meta_path, encoding="utf-8") as f:
        meta = json.load(f)
    recs = load(records_path)
    stacks, ex = meta["stacks"], meta["extra"]
    tests = ex["tests"].split()
    rounds = meta["rounds"]
    peers = [s for s in stacks if s != "pyhost"]
    tls = {}
    if os.path.exists(tls_path):
        with open(tls_path, encoding="utf-8") as f:
            for line in f:
                s, _, facts = line.rstrip("\n").partition("\t")
                tls[s] = facts

    def ok(stack, test, rnd=None):
        return [r for r in recs if r["stack"] == stack and r["test"] == test and r["status"] == "ok"
                and (rnd is None or r["round"] == rnd)]

    v = meta["versions"]
    lines = [f"# HTTPS hello: pyhost and its peers terminating TLS, {meta['date']}", "",
             f"- Command: `{meta['command']}`",
             f"- Machine: {meta['cpus']} CPUs ({meta['cpu_model']}), {meta['mem_gib']} GiB, {meta['kernel']}, "
             f"{meta['os']}; load average at the start {ex.get('loadavg_start', '?')}, at the end "
             f"{ex.get('loadavg_end', '?')}",
             "- Versions: " + "; ".join(f"{v[k]}" for k in sorted(v)) + f"; {ex.get('h2load', 'h2load ?')}; "
             f"{ex.get('openssl', 'openssl ?')}",
             f"- Certificate: self-signed, {ex['key']}, for localhost and 127.0.0.1; every stack serves it "
             f"(TLS 1.2 and 1.3; HTTP/2 and HTTP/1.1 by ALPN); clients connect to 127.0.0.1",
             f"- Budget: {meta['extra'].get('budget', '2 processes x 4 threads')} as {meta['app_user']}, "
             f"{rounds} interleaved round(s), {meta['duration']} s per test after a {meta['warmup']} s "
             "warm-up (discarded)",
             "- Tests: " + "; ".join(f"**{t}**: {ex['test_' + t]}" for t in tests)]
    if "pyhost_serve" in ex:
        lines.append(f"- pyhost: `{ex['pyhost_serve']}` (no access log or line per request, as the peers log "
                     "none)")
    if ex.get("worker_sched") == "batch":
        lines.append("- Experiment: pyhost's Python processes under SCHED_BATCH (`chrt -a -b`, set once the stack "
                     "serves; the peers' under the default SCHED_OTHER)")
    lines.append("")
    if tls:
        lines += ["What an OpenSSL client offering h2 and http/1.1 negotiates:", "",
                  bt.md_table(["stack", "TLS"], [[s, tls.get(s, "–")] for s in stacks], set()), ""]

    # Per test: each stack's req/s per round, the median and spread.
    rows = []
    for t in tests:
        for s in stacks:
            rs = ok(s, t)
            per = []
            for rnd in range(1, rounds + 1):
                one = ok(s, t, rnd)
                per.append(bt.fmt_rps(one[0]["rps"]) if one else "failed")
            if not rs:
                rows.append([t, s] + per + ["failed", "–", "–", "–", "–", "–", "–"])
                continue
            cpu = [r["stack_cpu_us_per_req"] for r in rs if "stack_cpu_us_per_req" in r]
            rps = [r["rps"] for r in rs]
            spread = (max(rps) - min(rps)) / med(rps) * 100 if med(rps) else 0
            if t == "h2":
                lat = "mean " + bt.fmt_ms(med([r["mean_ms"] for r in rs if r.get("mean_ms") is not None]) or 0)
            else:
                lat = (f"{bt.fmt_ms(med([r['p50_ms'] for r in rs]))} / "
                       f"{bt.fmt_ms(med([r['p99_ms'] for r in rs]))}")
            rows.append([t, s] + per + [
                bt.fmt_rps(med(rps)), f"{spread:.0f} %", f"{med(cpu):.0f}" if cpu else "–", lat,
                f"{sum(r['failed'] for r in rs)} / {sum(r['http_errors'] for r in rs)}",
                ", ".join(sorted({r['protocol'] for r in rs})),
                bt.fmt_pct(max((r.get("foreign_cpu_pct", 0) for r in rs), default=None))])
    lines += ["## req/s per round, and the median", "",
              bt.md_table(["test", "stack"] + [f"round {i}" for i in range(1, rounds + 1)]
                          + ["median req/s", "spread (max−min)/median", "stack CPU µs/req",
                             "latency ms p50 / p99 (h2: mean)", "failed / non-2xx", "protocol",
                             "largest other CPU %"],
                          rows, set(range(2, rounds + 6)) | {rounds + 8}), "",
              "- handshake: every request on a new connection (`Connection: close`, wrk never resumes a "
              "TLS session), so its req/s is the stack's full TLS handshakes per second (plus one request).",
              "- stack CPU µs/req: the CPU time the stack's processes (front and Python) used during the "
              "test ÷ the requests answered, median of the rounds: what a request costs each stack, which "
              "a busy machine disturbs less than req/s.",
              "- other CPU %: CPU time other programs used during the test, in % of all the machine's CPUs "
              "(as in run.sh); that row's figures are low by about as much.", ""]

    # pyhost ÷ each peer: per round (same minutes of the machine) and medians.
    prow = []
    for rnd in range(1, rounds + 1):
        for t in tests:
            ref = ok("pyhost", t, rnd)
            cells = []
            for p in peers:
                one = ok(p, t, rnd)
                cells.append(bt.fmt_ratio(ref[0]["rps"], one[0]["rps"]) if ref and one else "–")
            foreign = max((r.get("foreign_cpu_pct", 0) for s in stacks for r in ok(s, t, rnd)), default=None)
            prow.append([rnd, t, bt.fmt_rps(ref[0]["rps"]) if ref else "failed"] + cells + [bt.fmt_pct(foreign)])
    lines += ["## pyhost ÷ each peer, per round", "",
              bt.md_table(["round", "test", "pyhost req/s"] + [f"÷ {p}" for p in peers] + ["largest other CPU %"],
                          prow, set(range(2, len(peers) + 4)) | {0}), ""]

    mrow, verdict = [], []
    for t in tests:
        ref = [r["rps"] for r in ok("pyhost", t)]
        cells = []
        for p in peers:
            ratios = []
            for rnd in range(1, rounds + 1):
                a, b = ok("pyhost", t, rnd), ok(p, t, rnd)
                if a and b:
                    ratios.append(a[0]["rps"] / b[0]["rps"])
            pr = [r["rps"] for r in ok(p, t)]
            if ratios:
                cells.append(f"{med(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}); "
                             f"of medians {bt.fmt_ratio(med(ref), med(pr))}")
            else:
                cells.append("–")
            if p == "nginx-uwsgi" and t in ("h1", "h2") and ratios:
                verdict.append(f"{t}: median of the rounds' ratios {med(ratios):.3f} "
                               f"({'met' if med(ratios) >= 1.0 else 'NOT met'})")
        mrow.append([t] + cells)
    lines += ["## Medians over the rounds: pyhost ÷ each peer", "",
              bt.md_table(["test"] + [f"÷ {p}: median of the rounds' ratios (min–max); ratio of the medians"
                                      for p in peers], mrow, set()), ""]
    if verdict:
        lines += ["Issue 12's target, HTTPS hello c=64 ≥ 1.0x nginx + uWSGI: " + "; ".join(verdict) + ".", ""]
    print("\n".join(lines))


cmd, args = sys.argv[2], sys.argv[3:]
if cmd == "record":
    record(*args)
elif cmd == "fail":
    out, rnd, stack, test, reason = args
    append(out, {"round": int(rnd), "stack": stack, "test": test, "status": "failed", "reason": reason})
    print(f"    {test}: failed: {reason}", file=sys.stderr)
elif cmd == "report":
    report(*args)
else:
    bt.die(f"httpstool: unknown subcommand {cmd}")
PYTHON
}

# ------------------------------------------------------------------ main

https_main() {
    check_https_knobs
    [ "$(id -u)" -eq 0 ] ||
        die "run as root (it installs packages, creates user $BENCH_USER and starts servers that switch to it)"
    [ "$(uname -s)" = Linux ] || die "Linux only (it reads /proc)"
    sanitize_env

    exec 9>/run/lock/pyhost-bench.lock || die "cannot open /run/lock/pyhost-bench.lock"
    # LOCK_WAIT=N waits up to N s for another run to end (0: not at all).
    flock -w "${LOCK_WAIT:-0}" 9 || die "another bench script is running (it holds /run/lock/pyhost-bench.lock)"

    install_packages
    install_https_tools
    find_tools
    ensure_user
    note_packaged_services

    trap cleanup EXIT
    trap 'on_signal INT' INT
    trap 'on_signal TERM' TERM

    local stamp results_dir
    stamp=https-$(date +%Y%m%d-%H%M%S)
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
    install -m 0644 -- "$BENCH_DIR/apps/hello.py" "$APP_DIR/hello.py"
    APP_FILE=hello.py
    make_cert

    local -a portargs=() extra=() QUIET=()
    local s command loadavg
    for s in $STACKS; do portargs+=(--port "$s=$(tls_port "$s")"); done
    command="ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP STACKS=\"$STACKS\""
    [ "$HTTPS_TESTS" = "h1 h2 handshake" ] || command+=" HTTPS_TESTS=\"$HTTPS_TESTS\""
    [ "$HELLO_CONNS" = 64 ] || command+=" HELLO_CONNS=$HELLO_CONNS"
    [ "$H2_CLIENTS" = 16 ] || command+=" H2_CLIENTS=$H2_CLIENTS"
    [ "$H2_STREAMS" = 4 ] || command+=" H2_STREAMS=$H2_STREAMS"
    [ "$HANDSHAKE_CONNS" = 64 ] || command+=" HANDSHAKE_CONNS=$HANDSHAKE_CONNS"
    [ "$KEY_TYPE" = ec ] || command+=" KEY_TYPE=$KEY_TYPE"
    [ -z "$WORKER_SCHED" ] || command+=" WORKER_SCHED=$WORKER_SCHED"
    [ -z "$PEER_CGROUP" ] || command+=" PEER_CGROUP=$PEER_CGROUP"
    # pyhostd reads it (the proxy's GOMAXPROCS; default: half the CPUs).
    [ -z "${PYHOST_PROXY_PROCS:-}" ] || command="PYHOST_PROXY_PROCS=$PYHOST_PROXY_PROCS $command"
    command+=" bench/https.sh"
    read -r loadavg _ <<<"$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' '/')"
    extra=(--extra "tests=$HTTPS_TESTS" --extra "loadavg_start=$loadavg"
        --extra "key=$([ "$KEY_TYPE" = ec ] && echo 'ECDSA P-256' || echo 'RSA 2048')"
        --extra "h2load=$(h2load --version 2>&1 | head -n 1)"
        --extra "openssl=$(openssl version 2>&1 | cut -d' ' -f1-2)"
        --extra "test_h1=wrk -t1 -c$HELLO_CONNS, GET /hello, keep-alive"
        --extra "test_h2=h2load -t1 -c$H2_CLIENTS -m$H2_STREAMS ($((H2_CLIENTS * H2_STREAMS)) streams in flight), GET /hello"
        --extra "test_handshake=wrk -t1 -c$HANDSHAKE_CONNS -H 'Connection: close', GET /hello")
    if wants pyhost; then
        quiet_flag
        extra+=(--extra "pyhost_serve=pyhostd serve --tls-cert --tls-key ${QUIET[*]:+${QUIET[*]} }--processes $PROCESSES --threads $THREADS")
        [ -z "$WORKER_SCHED" ] || extra+=(--extra "worker_sched=$WORKER_SCHED")
    fi
    "$PY" "$TOOL" meta --stacks "$STACKS" --conns "$HELLO_CONNS" --rounds "$ROUNDS" \
        --duration "$DURATION" --warmup "$WARMUP" --wrk-timeout "$WRK_TIMEOUT" \
        --app-user "$BENCH_USER" --command "$command" "${portargs[@]}" \
        --pyhostd "$PYHOSTD" --uwsgi "${UWSGI_BIN:-/usr/bin/uwsgi}" "${extra[@]}" >"$RAW_DIR/meta.json" ||
        die "could not describe the machine (benchtool.py meta)"

    local n_stacks n_tests
    n_stacks=$(wc -w <<<"$STACKS")
    n_tests=$(wc -w <<<"$HTTPS_TESTS")
    log "$ROUNDS round(s) x $n_stacks stack(s) x $n_tests test(s) of ${DURATION}s (+${WARMUP}s warm-up):" \
        "about $((ROUNDS * n_stacks * (n_tests * (DURATION + WARMUP + 1) + 6))) s"

    FAILED=0
    local round
    for ((round = 1; round <= ROUNDS; round++)); do
        for s in $STACKS; do
            https_stack "$round" "$s"
        done
    done

    read -r loadavg _ <<<"$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' '/')"
    "$PY" -c 'import json, sys
m = json.load(open(sys.argv[1])); m["extra"]["loadavg_end"] = sys.argv[2]
json.dump(m, open(sys.argv[1], "w"), indent=1)' "$RAW_DIR/meta.json" "$loadavg" ||
        warn "could not add the final load average to meta.json"
    local report=$results_dir/$stamp.md
    httpstool report "$RAW_DIR/meta.json" "$RECORDS" "$RAW_DIR/tls.tsv" >"$report" ||
        die "could not render the report from $RECORDS"
    cat -- "$report"
    log "results: $report (records: $RECORDS; load outputs and logs: $RAW_DIR/)"
    if [ "$FAILED" -ne 0 ]; then
        warn "some stacks or tests failed; see the table and the logs above"
        return 1
    fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    https_main "$@"
fi
