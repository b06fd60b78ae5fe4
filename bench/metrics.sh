#!/usr/bin/env bash
# bench/metrics.sh: the cost of Prometheus metrics on the hot path (issue 15):
# hello (bench/apps/hello.py, 2 processes x 4 threads as the bench user) with
# pyhostd serve, wrk -t1 -c$HELLO_CONNS on 127.0.0.1, once without metrics and
# once with --metrics-listen (the proxy then counts every request and a scraper
# reads /metrics every SCRAPE_EVERY s meanwhile, as Prometheus would), off and
# on alternating within each round so the machine's drift hits both alike. It
# prints req/s and p99 of each run, the on/off ratio per round and the medians:
# stdout and bench/results/metrics-<timestamp>.md.
#
# Runs as root, like run.sh, whose functions it sources (the bench user, spawn
# and stop by pid, cleanup) and whose lock it takes: /run/lock/pyhost-bench.lock
# (LOCK_WAIT=N waits up to N s for it). All traffic stays on loopback; every
# load is bounded by DURATION and by timeout(1).
# Knobs (environment): ROUNDS DURATION WARMUP HELLO_CONNS SCRAPE_EVERY, run.sh's
# PYHOSTD WRK_TIMEOUT PORT_BASE KEEP_WORKDIR.

set -euo pipefail

METRICS_SH=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)/metrics.sh
ROUNDS=${ROUNDS:-3}
HELLO_CONNS=${HELLO_CONNS:-64}
SCRAPE_EVERY=${SCRAPE_EVERY:-5}

# shellcheck source=run.sh
source "$(dirname -- "$METRICS_SH")/run.sh"

# One run: start pyhost (with metrics when $2 is on), warm up, measure; sets
# RUN_RPS, RUN_P99 and RUN_SCRAPES.
metrics_run() { # DIR MODE
    local dir=$1 mode=$2 port=$((PORT_BASE + 1)) mport=$((PORT_BASE + 2)) scraper=""
    mkdir -p -- "$dir"
    PYHOST_ARGS=()
    [ "$mode" = on ] && PYHOST_ARGS=(--metrics-listen "127.0.0.1:$mport")
    start_pyhost "$dir" "$port" || die "pyhost did not start ($mode): ${STACK_ERROR:-see $dir/pyhostd.log}"
    warm_up "$port" "$HELLO_CONNS" "$dir/warmup.txt" || warn "warm-up failed ($mode)"
    if [ "$mode" = on ]; then
        (
            n=0
            end=$((SECONDS + DURATION))
            while [ "$SECONDS" -lt "$end" ]; do
                curl -fsS -m 5 -o /dev/null "http://127.0.0.1:$mport/metrics" && n=$((n + 1))
                sleep "$SCRAPE_EVERY"
            done
            echo "$n" >"$dir/scrapes"
        ) 9>&- &
        scraper=$!
    fi
    wrk_cmd "$port" "$HELLO_CONNS" "$DURATION"
    "${WRK_CMD[@]}" >"$dir/wrk.txt" 2>&1 || warn "wrk failed ($mode); see $dir/wrk.txt"
    RUN_SCRAPES=-
    if [ -n "$scraper" ]; then
        wait "$scraper" || true
        RUN_SCRAPES=$(cat "$dir/scrapes" 2>/dev/null || echo 0)
        curl -fsS -m 5 "http://127.0.0.1:$mport/metrics" >"$dir/metrics.txt" || warn "final scrape failed"
    fi
    RUN_RPS=$(awk '/^Requests\/sec:/ {print $2}' "$dir/wrk.txt")
    RUN_P99=$(awk '$1 == "99%" {print $2}' "$dir/wrk.txt")
    stop_roots
}

metrics_main() {
    # shellcheck disable=SC2034  # read by check_knobs and find_tools
    CONNS=$HELLO_CONNS STACKS=pyhost
    check_knobs
    uint_between "$SCRAPE_EVERY" 1 600 || die "SCRAPE_EVERY must be whole seconds, 1 to 600"
    [ "$(id -u)" -eq 0 ] || die "run as root (it creates user $BENCH_USER and starts pyhost as it)"
    sanitize_env
    exec 9>/run/lock/pyhost-bench.lock || die "cannot open /run/lock/pyhost-bench.lock"
    flock -w "${LOCK_WAIT:-0}" 9 || die "another benchmark holds /run/lock/pyhost-bench.lock"
    find_tools
    ensure_user
    trap cleanup EXIT
    trap 'on_signal INT' INT
    trap 'on_signal TERM' TERM

    local stamp results_dir report
    stamp=$(date +%Y%m%d-%H%M%S)
    results_dir=$BENCH_DIR/results
    mkdir -p -- "$results_dir"
    RAW_DIR=$results_dir/metrics-$stamp
    mkdir -p -- "$RAW_DIR"
    WORK=$(mktemp -d /tmp/pyhost-bench.XXXXXX) || die "mktemp failed"
    chmod 0755 -- "$WORK"
    APP_DIR=$WORK/apps
    mkdir -p -- "$APP_DIR"
    install -m 0644 -- "$BENCH_DIR/apps/hello.py" "$APP_DIR/hello.py"
    report=$results_dir/metrics-$stamp.md

    local round mode ratios="" offs="" ons=""
    {
        echo "# metrics on vs off, hello c=$HELLO_CONNS"
        echo
        echo "Command: \`ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP HELLO_CONNS=$HELLO_CONNS SCRAPE_EVERY=$SCRAPE_EVERY bench/metrics.sh\`; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg) at the start; $("$PYHOSTD" --version 2>&1 | head -n 1)"
        echo
        echo "| round | off req/s | off p99 | on req/s | on p99 | scrapes | on/off |"
        echo "| --- | --- | --- | --- | --- | --- | --- |"
    } >"$report"
    for ((round = 1; round <= ROUNDS; round++)); do
        local off_rps off_p99
        for mode in off on; do
            log "round $round: metrics $mode"
            metrics_run "$WORK/r$round-$mode" "$mode"
            if [ "$mode" = off ]; then off_rps=$RUN_RPS off_p99=$RUN_P99; fi
        done
        local ratio
        ratio=$("$PY" -c 'import sys; print(f"{float(sys.argv[2]) / float(sys.argv[1]):.3f}")' "$off_rps" "$RUN_RPS" 2>/dev/null || echo "?")
        echo "| $round | $off_rps | $off_p99 | $RUN_RPS | $RUN_P99 | $RUN_SCRAPES | $ratio |" >>"$report"
        ratios+=" $ratio" offs+=" $off_rps" ons+=" $RUN_RPS"
    done
    "$PY" - "$offs" "$ons" "$ratios" >>"$report" <<'PYEOF'
import statistics, sys
def med(s):
    v = [float(x) for x in s.split() if x != "?"]
    return statistics.median(v) if v else float("nan")
print()
print(f"Medians: off {med(sys.argv[1]):.0f} req/s, on {med(sys.argv[2]):.0f} req/s, on/off {med(sys.argv[3]):.3f}"
      f" (spread of on/off: {min(float(x) for x in sys.argv[3].split() if x != '?'):.3f} to {max(float(x) for x in sys.argv[3].split() if x != '?'):.3f})")
PYEOF
    cp -- "$WORK"/r1-on/metrics.txt "$RAW_DIR/" 2>/dev/null || true
    for mode in off on; do
        for ((round = 1; round <= ROUNDS; round++)); do
            cp -- "$WORK/r$round-$mode/wrk.txt" "$RAW_DIR/r$round-$mode-wrk.txt" 2>/dev/null || true
        done
    done
    cat -- "$report"
    log "results: $report (wrk outputs and a scrape: $RAW_DIR/)"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    metrics_main "$@"
fi
