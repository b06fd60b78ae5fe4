#!/usr/bin/python3
"""Helpers for bench/run.sh: config rendering, process trees, records, report.

Standard library only; run with Debian's /usr/bin/python3. Subcommands:

  render TEMPLATE OUT KEY=VALUE...
      Replace every {{KEY}} in TEMPLATE and write OUT (mode 0644). A
      placeholder left without a value, or a value given for no
      placeholder, is an error: a typo must not yield a half-rendered config.

  tree ROOT_PID...
      Print "PID STARTTIME" for every live process of the trees rooted at
      the given pids (the roots, their descendants and, for a root that
      leads its own session, every process of that session). run.sh uses
      it to snapshot what to wait for, and to kill by pid, on stop.

  acceptq PORT
      Print how many connections wait, completed by the kernel but not yet
      accept()ed, on the listening TCP socket(s) of PORT (0 when
      there is none). wrk times only answered requests, so clients a server
      never accepts are otherwise invisible.

  cpusnap OUT HARNESS_PID ROOT_PID...
      Write to OUT the CPU time used so far by the whole machine, by the
      stack's process trees and by the harness (with the children it has
      reaped: wrk, the samplers). Two snapshots around a test tell how much
      CPU other programs on the machine took meanwhile (record --cpu).

  record --out FILE --round N --stack NAME --conns C --wrk WRK_OUTPUT
         [--wrk-rc RC] [--acceptq "N N N"] [--cpu BEFORE AFTER]
         [--fail REASON] [ROOT_PID...]
      Parse the PYHOST_BENCH_JSON line that lib/report.lua makes wrk print,
      read the memory of the stack's process trees, append one JSON record.

  check-user USER MIN ROOT_PID...
      Exit 0 when at least MIN processes of those trees run as USER (the
      Python workers must); else print what runs as whom and exit 1.

  meta --stacks "A B" --conns "1 64" ... [--pyhostd PATH]
      Print a JSON object describing the run: its settings, the date, the
      machine, and the versions of every stack.

  report --meta META.json --records RECORDS.jsonl
      Print the markdown report (tables, ratios) to stdout.
"""

import argparse
import datetime
import json
import os
import platform
import pwd
import re
import statistics
import subprocess
import sys
import time

JSON_MARK = "PYHOST_BENCH_JSON "
REFERENCE = "pyhost"   # the stack every other one is compared with
NOISY_PCT = 10         # "other CPU %" from which a test is called disturbed

# What each stack is, for the report. Kept here, next to the table code,
# so that the report and run.sh's stack functions are read side by side.
STACK_DESCRIPTIONS = {
    "pyhost": "pyhostd serve (Go front proxy) + 2 Python worker processes x 4 threads",
    "apache-wsgi": "Apache 2.4 mpm_event (front: 2 x 64 threads) + mod_wsgi daemon mode, "
                   "2 processes x 4 threads",
    "nginx-uwsgi": "nginx (2 workers) + uWSGI (python3 plugin, master + 2 processes x 4 threads), "
                   "uwsgi protocol over a UNIX socket",
}


def die(msg):
    print(f"benchtool: {msg}", file=sys.stderr)
    sys.exit(2)


# ---------------------------------------------------------------- render

PLACEHOLDER = re.compile(r"\{\{([A-Z][A-Z0-9_]*)\}\}")


def cmd_render(args):
    values = {}
    for item in args.pairs:
        key, sep, value = item.partition("=")
        if not sep or not PLACEHOLDER.fullmatch("{{" + key + "}}"):
            die(f"render: bad KEY=VALUE argument {item!r}")
        values[key] = value
    try:
        with open(args.template, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        die(f"render: cannot read template: {e}")
    used = set(PLACEHOLDER.findall(text))
    missing = sorted(used - values.keys())
    unused = sorted(values.keys() - used)
    if missing:
        die(f"render: {args.template}: no value for {', '.join(missing)}")
    if unused:
        die(f"render: {args.template}: no placeholder for {', '.join(unused)}")
    out = PLACEHOLDER.sub(lambda m: values[m.group(1)], text)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(out)
    os.chmod(tmp, 0o644)
    os.replace(tmp, args.out)


# ---------------------------------------------------------------- /proc

def read_stat(pid):
    """Return (state, ppid, sid, starttime) of pid, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            data = f.read()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    rest = data[data.rindex(")") + 2:].split()
    # rest[0] is field 3 (state); field N is rest[N - 3].
    return rest[0], int(rest[1]), int(rest[3]), int(rest[19])


def all_stats():
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = read_stat(int(name))
            if st is not None:
                stats[int(name)] = st
    return stats


def tree(roots):
    """Live (non-zombie) pids of the trees of roots, as {pid: starttime}."""
    stats = all_stats()
    children = {}
    for pid, (_, ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    found = set()
    todo = [r for r in roots if r in stats]
    sessions = {r for r in todo if stats[r][2] == r}
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo.extend(children.get(pid, ()))
    # A root that leads its own session (run.sh starts every server with
    # setsid) also owns whatever double-forked away from it but stayed in
    # the session.
    if sessions:
        found.update(pid for pid, st in stats.items() if st[2] in sessions)
    return {pid: stats[pid][3] for pid in found if stats[pid][0] != "Z"}


def parse_pids(items):
    pids = []
    for item in items:
        if not item.isdigit() or int(item) <= 1:
            die(f"not a usable pid: {item!r}")
        pids.append(int(item))
    return pids


def cmd_tree(args):
    for pid, start in sorted(tree(parse_pids(args.pids)).items()):
        print(pid, start)


def accept_queue(port):
    """Sum of the accept-queue lengths of the TCP listeners on port."""
    total = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                next(f)  # header
                for line in f:
                    fields = line.split()
                    local, state, queues = fields[1], fields[3], fields[4]
                    # For a listener (state 0A) rx_queue is its accept backlog.
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                        total += int(queues.split(":")[1], 16)
        except (OSError, StopIteration, IndexError, ValueError):
            continue
    return total


def cmd_acceptq(args):
    print(accept_queue(args.port))


def cpu_ticks(pid, children=False):
    """utime+stime of pid in clock ticks (plus cutime+cstime, the CPU of the
    children it has reaped, when children is true); 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            data = f.read()
    except OSError:
        return 0
    rest = data[data.rindex(")") + 2:].split()
    # rest[0] is field 3; utime, stime, cutime, cstime are fields 14 to 17.
    return sum(int(x) for x in rest[11:15 if children else 13])


def busy_ticks():
    """Ticks all CPUs spent running processes (user, nice, system) so far.

    irq and softirq time is left out on both sides of the subtraction in
    foreign_cpu: here most of it is the test's own loopback traffic."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = f.readline().split()
    return int(fields[1]) + int(fields[2]) + int(fields[3])


def cmd_cpusnap(args):
    harness, stack = parse_pids([args.harness])[0], parse_pids(args.pids)
    snap = {
        "time": time.monotonic(),
        "clk_tck": os.sysconf("SC_CLK_TCK"),
        "cpus": len(os.sched_getaffinity(0)),
        "busy": busy_ticks(),
        # The stack's servers live through the test: their own time. The
        # harness starts wrk and the samplers inside the test and reaps them
        # before the second snapshot: its children's time counts too.
        "stack": sum(cpu_ticks(pid) for pid in tree(stack)),
        "harness": cpu_ticks(harness, children=True),
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(snap, f)


def foreign_cpu(before_path, after_path):
    """Share (%) of all the machine's CPUs that programs other than the
    stack and the harness used between two snapshots."""
    with open(before_path, encoding="utf-8") as f:
        before = json.load(f)
    with open(after_path, encoding="utf-8") as f:
        after = json.load(f)
    wall = after["time"] - before["time"]
    if wall <= 0:
        return 0.0
    delta = {k: after[k] - before[k] for k in ("busy", "stack", "harness")}
    other = delta["busy"] - delta["stack"] - delta["harness"]
    return max(0.0, 100.0 * other / after["clk_tck"] / (wall * after["cpus"]))


def status_kb(pid, key):
    """First number of the "key:" line of /proc/PID/status (0 if absent)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def pss_kb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return "?"


def user_of(pid):
    """Name of the real uid of pid (the number if it has no name)."""
    uid = status_kb(pid, "Uid")   # the line's first number is the real uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def memory(roots):
    pids = sorted(tree(roots))
    procs = [{"pid": p, "comm": comm(p), "user": user_of(p),
              "rss_kb": status_kb(p, "VmRSS"), "pss_kb": pss_kb(p)} for p in pids]
    return {
        "rss_kb": sum(p["rss_kb"] for p in procs),
        "pss_kb": sum(p["pss_kb"] for p in procs),
        "nprocs": len(procs),
        "procs": procs,
    }


def cmd_check_user(args):
    procs = memory(parse_pids(args.pids))["procs"]
    mine = [p for p in procs if p["user"] == args.user]
    if len(mine) >= args.min:
        return
    seen = ", ".join(f"{p['comm']}[{p['pid']}]={p['user']}" for p in procs) or "no process"
    print(f"expected at least {args.min} processes running as {args.user}, "
          f"found {len(mine)}: {seen}", file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------- records

def parse_wrk(path):
    """The figures from lib/report.lua's line in wrk's output, or raise."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [l for l in f if l.startswith(JSON_MARK)]
    if not lines:
        raise ValueError("wrk printed no result line (see its output)")
    raw = json.loads(lines[-1][len(JSON_MARK):])
    seconds = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"],
        "duration_s": round(seconds, 3),
        "rps": raw["requests"] / seconds if seconds > 0 else 0.0,
        "p50_ms": raw["lat_p50_us"] / 1000,
        "p90_ms": raw["lat_p90_us"] / 1000,
        "p99_ms": raw["lat_p99_us"] / 1000,
        "max_ms": raw["lat_max_us"] / 1000,
        "http_errors": raw["err_status"],
        "err_connect": raw["err_connect"],
        "err_read": raw["err_read"],
        "err_write": raw["err_write"],
        "err_timeout": raw["err_timeout"],
        "bytes": raw["bytes"],
    }


def cmd_record(args):
    rec = {"round": args.round, "stack": args.stack, "conns": args.conns,
           "status": "ok"}
    if args.fail:
        rec.update(status="failed", reason=args.fail)
    elif args.wrk:
        try:
            rec.update(parse_wrk(args.wrk))
        except (OSError, ValueError, KeyError) as e:
            rec.update(status="failed", reason=f"no wrk result: {e}")
        if args.wrk_rc not in (None, 0) and rec["status"] == "ok":
            rec.update(status="failed", reason=f"wrk exited with status {args.wrk_rc}")
    if args.acceptq:
        samples = [int(x) for x in args.acceptq.split()]
        rec["acceptq_samples"] = samples
        rec["acceptq_min"] = min(samples) if samples else 0
    if args.cpu:
        try:
            rec["foreign_cpu_pct"] = round(foreign_cpu(*args.cpu), 1)
        except (OSError, ValueError, KeyError) as e:
            print(f"benchtool: record: no CPU figures: {e}", file=sys.stderr)
    if args.pids:
        rec["memory"] = memory(parse_pids(args.pids))
    with open(args.out, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")
    if rec["status"] == "ok":
        # A progress line for run.sh's stderr.
        errs = sum(rec[k] for k in ("err_connect", "err_read", "err_write", "err_timeout"))
        line = (f"    {fmt_rps(rec['rps'])} req/s, p50 {fmt_ms(rec['p50_ms'])} ms, "
                f"p99 {fmt_ms(rec['p99_ms'])} ms, non-2xx/3xx {rec['http_errors']}, "
                f"socket errors {errs}")
        if "memory" in rec:
            line += f", RSS {mib(rec['memory']['rss_kb']):.1f} MiB"
        if "foreign_cpu_pct" in rec:
            line += f", other CPU {rec['foreign_cpu_pct']:.0f}%"
        print(line, file=sys.stderr)
        if rec.get("foreign_cpu_pct", 0) >= NOISY_PCT:
            print(f"    warning: other programs used {rec['foreign_cpu_pct']:.0f}% of the CPUs "
                  f"during this test; its figures are low by about as much", file=sys.stderr)


# ---------------------------------------------------------------- meta

def run_out(argv):
    """First non-empty line a command prints (stdout, else stderr), or ''."""
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return ""
    for stream in (p.stdout, p.stderr):
        for line in stream.splitlines():
            if line.strip():
                return line.strip()
    return ""


def deb_version(pkg):
    return run_out(["dpkg-query", "-W", "-f=${Version}", pkg]) or "not installed"


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mem_total_gib():
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024 / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def cmd_meta(args):
    stacks = args.stacks.split()
    versions = {"python": run_out(["/usr/bin/python3", "--version"]),
                "wrk": "wrk " + deb_version("wrk")}
    if "pyhost" in stacks and args.pyhostd:
        v = run_out([args.pyhostd, "version"]) or "(version unknown)"
        versions["pyhostd"] = v if v.startswith("pyhostd") else "pyhostd " + v
    if "apache-wsgi" in stacks:
        versions["apache2"] = run_out(["/usr/sbin/apache2", "-v"]).replace("Server version: ", "")
        versions["mod_wsgi"] = "mod_wsgi " + deb_version("libapache2-mod-wsgi-py3")
    if "nginx-uwsgi" in stacks:
        versions["nginx"] = run_out(["/usr/sbin/nginx", "-v"]).replace("nginx version: ", "")
        versions["uwsgi"] = "uWSGI " + run_out([args.uwsgi or "/usr/bin/uwsgi", "--version"])
    ports = {}
    for item in args.port:
        name, _, port = item.partition("=")
        ports[name] = int(port)
    uname = platform.uname()
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": len(os.sched_getaffinity(0)),   # what nproc prints
        "cpu_model": cpu_model(),
        "mem_gib": round(mem_total_gib(), 1),
        "kernel": f"{uname.system} {uname.release}",
        "os": run_out(["sh", "-c", ". /etc/os-release && echo \"$PRETTY_NAME\""]),
        "versions": versions,
        "stacks": stacks,
        "conns": [int(c) for c in args.conns.split()],
        "rounds": args.rounds,
        "duration": args.duration,
        "warmup": args.warmup,
        "wrk_timeout": args.wrk_timeout,
        "app_user": args.app_user,
        "command": args.command,
        "ports": ports,
    }
    json.dump(info, sys.stdout, indent=1)
    print()


# ---------------------------------------------------------------- report

def fmt_rps(v):
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def fmt_ms(v):
    return f"{v:.2f}" if v < 100 else f"{v:.0f}"


def fmt_ratio(num, den):
    if not num or not den:
        return "–"
    return f"{num / den:.2f}"


def fmt_pct(v):
    return "–" if v is None else f"{v:.0f}"


def mib(kb):
    return kb / 1024


def summarize(recs):
    """Fold the ok records of one stack and concurrency over the rounds."""
    ok = [r for r in recs if r["status"] == "ok"]
    if not ok:
        reasons = sorted({r.get("reason", "failed") for r in recs})
        return {"ok": False, "reason": "; ".join(reasons)}
    mem = [r["memory"] for r in ok if "memory" in r]
    return {
        "ok": True,
        "rounds": len(ok),
        "failed_rounds": len(recs) - len(ok),
        "rps": statistics.mean(r["rps"] for r in ok),
        "rps_min": min(r["rps"] for r in ok),
        "rps_max": max(r["rps"] for r in ok),
        "p50_ms": statistics.median(r["p50_ms"] for r in ok),
        "p99_ms": statistics.median(r["p99_ms"] for r in ok),
        "http_errors": sum(r["http_errors"] for r in ok),
        "socket": "/".join(str(sum(r[k] for r in ok))
                           for k in ("err_connect", "err_read", "err_write", "err_timeout")),
        "rss_mib": statistics.mean(mib(m["rss_kb"]) for m in mem) if mem else None,
        "pss_mib": statistics.mean(mib(m["pss_kb"]) for m in mem) if mem else None,
        "nprocs": max(m["nprocs"] for m in mem) if mem else None,
        "acceptq": max(r.get("acceptq_min", 0) for r in ok),
        "foreign": max((r["foreign_cpu_pct"] for r in ok if "foreign_cpu_pct" in r), default=None),
    }


def ratio_cell(ref, m):
    """pyhost's req/s over m's, starred when either left clients unaccepted."""
    if not ref["ok"] or not m["ok"]:
        return "–"
    star = " *" if ref["acceptq"] or m["acceptq"] else ""
    return fmt_ratio(ref["rps"], m["rps"]) + star


def md_table(header, rows, right):
    """Markdown table; columns whose index is in right are right-aligned."""
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def cmd_report(args):
    with open(args.meta, encoding="utf-8") as f:
        meta = json.load(f)
    records = []
    if os.path.exists(args.records):
        with open(args.records, encoding="utf-8") as f:
            records = [json.loads(l) for l in f if l.strip()]
    stacks = meta["stacks"]
    conns = [int(c) for c in meta["conns"]]
    rounds = int(meta["rounds"])
    v = meta["versions"]

    lines = [
        "# pyhost benchmark: hello world, 2 processes x 4 threads",
        "",
        f"- Date: {meta['date']}",
        f"- Machine: {meta['cpus']} CPUs (nproc), {meta['cpu_model']}, "
        f"{meta['mem_gib']} GiB RAM; {meta['kernel']}; {meta['os']}",
        f"- Load: `wrk -t1 -c<conns> -d{meta['duration']}s --latency --timeout {meta['wrk_timeout']}` "
        f"on `GET /hello`, after a discarded {meta['warmup']} s warm-up at the same concurrency; "
        f"wrk and the servers share the same CPUs (no pinning)",
        f"- Rounds: {rounds}" + (" (stacks interleaved: every stack once per round)" if rounds > 1 else ""),
        f"- Command: `{meta['command']}`",
        "- Versions: " + "; ".join(f"{val}" for val in v.values() if val),
        "",
        "## Stacks",
        "",
        md_table(["stack", "what runs (Python code runs as " + meta["app_user"] + ", Debian's /usr/bin/python3)", "URL"],
                 [[s, STACK_DESCRIPTIONS.get(s, s), f"http://127.0.0.1:{meta['ports'][s]}/hello"]
                  for s in stacks], set()),
        "",
        "## Results" + (f" (mean of {rounds} rounds; p50/p99: median of the rounds)" if rounds > 1 else ""),
        "",
    ]

    summary = {}
    for s in stacks:
        for c in conns:
            summary[s, c] = summarize([r for r in records if r["stack"] == s and r["conns"] == c])

    have_ref = REFERENCE in stacks
    rows = []
    for s in stacks:
        for c in conns:
            m = summary[s, c]
            if not m["ok"]:
                rows.append([s, c, "FAILED: " + m["reason"]] + [""] * 8 + ([""] if have_ref else []))
                continue
            rps = fmt_rps(m["rps"])
            if rounds > 1:
                rps += f" ({fmt_rps(m['rps_min'])}–{fmt_rps(m['rps_max'])})"
            if m["failed_rounds"]:
                rps += f" [{m['failed_rounds']} round(s) failed]"
            mem = "–" if m["rss_mib"] is None else f"{m['rss_mib']:.1f} ({m['nprocs']})"
            pss = "–" if m["pss_mib"] is None else f"{m['pss_mib']:.1f}"
            row = [s, c, rps, fmt_ms(m["p50_ms"]), fmt_ms(m["p99_ms"]),
                   m["http_errors"], m["socket"], m["acceptq"], mem, pss, fmt_pct(m["foreign"])]
            if have_ref:
                row.append(ratio_cell(summary[REFERENCE, c], m))
            rows.append(row)
    header = ["stack", "conns", "req/s" + (" (min–max)" if rounds > 1 else ""), "p50 ms", "p99 ms",
              "non-2xx/3xx", "socket errors c/r/w/t", "unaccepted", "RSS MiB (procs)", "PSS MiB",
              "other CPU %"]
    if have_ref:
        header.append("pyhost ÷ stack")
    lines += [md_table(header, rows, {1, 2, 3, 4, 5, 7, 8, 9, 10, 11}), ""]
    if any(m["ok"] and m["acceptq"] for m in summary.values()):
        lines += ["`*` Some of that test's connections were never accepted by the server (see "
                  "\"unaccepted\"): its figures describe only the clients it served, so the ratio "
                  "is not a like-for-like comparison.", ""]

    peers = [s for s in stacks if s != REFERENCE]
    if have_ref and peers:
        lines += ["## pyhost's ratio to each peer (pyhost req/s ÷ peer req/s)", ""]
        rrows = []
        for c in conns:
            ref = summary[REFERENCE, c]
            row = [f"hello c={c}", fmt_rps(ref["rps"]) if ref["ok"] else "failed"]
            for p in peers:
                row.append(ratio_cell(ref, summary[p, c]))
            rrows.append(row)
        lines += [md_table(["test", "pyhost req/s"] + [f"÷ {p}" for p in peers], rrows,
                           set(range(1, len(peers) + 2))), ""]
        lines += ["Above 1: pyhost served more requests per second than that peer.", ""]
    elif not have_ref:
        lines += ["(pyhost was not in STACKS, so no ratios.)", ""]

    if rounds > 1:
        lines += ["## Per round", ""]
        prow = []
        for r in sorted(records, key=lambda r: (r["round"], stacks.index(r["stack"])
                                               if r["stack"] in stacks else 99, r["conns"])):
            if r["status"] != "ok":
                prow.append([r["round"], r["stack"], r["conns"], "FAILED: " + r.get("reason", ""),
                             "", "", "", "", "", ""])
                continue
            mem = r.get("memory")
            prow.append([r["round"], r["stack"], r["conns"], fmt_rps(r["rps"]), fmt_ms(r["p50_ms"]),
                         fmt_ms(r["p99_ms"]), r["http_errors"], r.get("acceptq_min", 0),
                         "–" if not mem else f"{mib(mem['rss_kb']):.1f} ({mem['nprocs']})",
                         fmt_pct(r.get("foreign_cpu_pct"))])
        lines += [md_table(["round", "stack", "conns", "req/s", "p50 ms", "p99 ms", "non-2xx/3xx",
                            "unaccepted", "RSS MiB (procs)", "other CPU %"], prow,
                           {0, 2, 3, 4, 5, 6, 7, 8, 9}), ""]

    lines += [
        "## How to read it",
        "",
        "- req/s: completed requests ÷ wrk's measured duration. p50/p99: wrk's latency "
        "percentiles of answered requests.",
        "- non-2xx/3xx: responses wrk counted as HTTP errors (status 400 and above); "
        "before loading a stack, run.sh checks that / and /hello answer exactly 200 `Hello!`.",
        "- socket errors c/r/w/t: connect / read / write / timeout errors reported by wrk.",
        "- unaccepted: connections waiting in the listening socket's accept queue (the smallest of "
        "3 samples taken at 1/4, 1/2 and 3/4 of the test; the largest such value over the rounds). "
        "Not 0 means the server left that many of wrk's clients unserved for the whole test, and "
        "its req/s and latencies describe only the others.",
        "- RSS: sum of VmRSS of every process of the stack (the server's process tree(s), front "
        "and Python workers alike), read from /proc right after that test; shared pages count once "
        "per process, so PSS (proportional share) is the fairer memory figure.",
        "- other CPU %: CPU time that programs other than this stack and the harness (wrk "
        "included) used during the test, in % of all the machine's CPUs (the largest over the "
        "rounds). A few % is background; more means something else ran meanwhile (a build, a "
        "test suite) and that row's figures are low by about as much.",
        "- The machine is shared by wrk and the servers; differences smaller than the "
        "round-to-round spread (run with ROUNDS=3) are noise.",
        "",
    ]
    print("\n".join(lines))


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(prog="benchtool.py", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("render")
    p.add_argument("template")
    p.add_argument("out")
    p.add_argument("pairs", nargs="*")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("tree")
    p.add_argument("pids", nargs="+")
    p.set_defaults(func=cmd_tree)

    p = sub.add_parser("acceptq")
    p.add_argument("port", type=int)
    p.set_defaults(func=cmd_acceptq)

    p = sub.add_parser("cpusnap")
    p.add_argument("out")
    p.add_argument("harness", help="the harness's pid")
    p.add_argument("pids", nargs="+", help="the stack's top-level pids")
    p.set_defaults(func=cmd_cpusnap)

    p = sub.add_parser("record")
    p.add_argument("--out", required=True)
    p.add_argument("--round", type=int, required=True)
    p.add_argument("--stack", required=True)
    p.add_argument("--conns", type=int, required=True)
    p.add_argument("--wrk")
    p.add_argument("--wrk-rc", type=int)
    p.add_argument("--acceptq", help="accept-queue samples taken during the test")
    p.add_argument("--cpu", nargs=2, metavar=("BEFORE", "AFTER"), help="cpusnap files around the test")
    p.add_argument("--fail")
    p.add_argument("pids", nargs="*")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("check-user")
    p.add_argument("user")
    p.add_argument("min", type=int)
    p.add_argument("pids", nargs="+")
    p.set_defaults(func=cmd_check_user)

    p = sub.add_parser("meta")
    p.add_argument("--stacks", required=True)
    p.add_argument("--conns", required=True)
    p.add_argument("--rounds", type=int, required=True)
    p.add_argument("--duration", type=int, required=True)
    p.add_argument("--warmup", type=int, required=True)
    p.add_argument("--wrk-timeout", required=True)
    p.add_argument("--app-user", required=True)
    p.add_argument("--command", required=True)
    p.add_argument("--port", action="append", default=[], help="STACK=PORT")
    p.add_argument("--pyhostd")
    p.add_argument("--uwsgi")
    p.set_defaults(func=cmd_meta)

    p = sub.add_parser("report")
    p.add_argument("--meta", required=True)
    p.add_argument("--records", required=True)
    p.set_defaults(func=cmd_report)

    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
