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


def zombie_gone(pid):
    """A zombie is gone unless other threads of it still run (then it keeps
    its files and sockets until they exit)."""
    try:
        return len(os.listdir(f"/proc/{pid}/task")) <= 1
    except OSError:
        return True


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
    return {pid: stats[pid][3] for pid in found if stats[pid][0] != "Z" or not zombie_gone(pid)}


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
        # The stack's processes, each with the children it has reaped: a
        # worker that exits during the test (a reload, a recycle) moves its
        # time into its parent's, so the difference stays whole. The
        # harness starts wrk and the samplers inside the test and reaps them
        # before the second snapshot: its children's time counts too.
        "stack": sum(cpu_ticks(pid, children=True) for pid in tree(stack)),
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
        "extra": dict(item.partition("=")[::2] for item in args.extra),
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


# ---------------------------------------------------------------- reloads
#
# bench/reload.sh: wrk with lib/timeline.lua, while this process triggers
# reloads on a schedule and watches the stack's Python worker processes.

TIMELINE_MARK = "PYHOST_BENCH_TIMELINE "
POLL_S = 0.02          # worker poll interval between reloads
POLL_RELOAD_S = 0.01   # ... and while a reload runs
WORST_WINDOW_S = 0.5   # the "worst 0.5 s" window of the report
RELOAD_SECOND_S = 1.0  # the "first second of each reload" window


def children_of(pid):
    """The pids of pid's live children, from /proc/PID/task/*/children."""
    kids = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                kids.extend(int(k) for k in f.read().split())
        except OSError:
            continue
    return kids


def list_workers(roots, uid, exe_re, parent_re=None):
    """{(pid, starttime)} of the live direct children of roots that run as
    uid (real) and whose executable's name matches exe_re: the Python
    worker processes of a stack (pyhostd's python3 children, mod_wsgi's
    daemon processes under Apache's parent, uWSGI's workers under its
    master). A child whose command line matches parent_re (pyhost's fork
    server) is no worker; its children are looked at instead. Reads only
    children lists, so it is cheap enough to poll every 10 ms."""
    found = set()
    pending = [kid for root in roots for kid in children_of(root)]
    while pending:
        pid = pending.pop()
        st = read_stat(pid)
        if st is None or st[0] in ("Z", "X"):
            continue
        if status_kb(pid, "Uid") != uid:
            continue
        try:
            exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
        except OSError:
            continue
        if not exe_re.search(exe):
            continue
        if parent_re is not None:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            if parent_re.search(cmdline):
                pending.extend(children_of(pid))
                continue
        found.add((pid, st[3]))
    return found


def file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def read_from(path, offset):
    """(text appended to path since offset, the new offset)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return "", offset
    return data.decode("utf-8", "replace"), offset + len(data)


def cmd_events(args):
    """Run wrk (the command after --); meanwhile trigger the reloads at the
    scheduled offsets (one at a time: a reload starts no earlier than the
    end of the previous one), time each, poll the workers, sample the
    accept queue at 1/4, 1/2, 3/4; write a JSON summary to --out."""
    uid = pwd.getpwnam(args.user).pw_uid
    exe_re = re.compile(args.worker_exe)
    parent_re = re.compile(args.worker_parent) if args.worker_parent else None
    roots = parse_pids(args.roots.split())
    schedule = sorted(args.reload_at)
    queue_at = [args.duration * k / 4 for k in (1, 2, 3)]
    initial = list_workers(roots, uid, exe_re, parent_re)
    seen = set(initial)
    done_re = re.compile(args.done_pattern) if args.done_pattern else None
    reloads, acceptq = [], []
    cur = proc = None
    log_at = 0
    trigger_log = open(args.trigger_log, "a", encoding="utf-8") if args.trigger_log else subprocess.DEVNULL
    wrk_out = open(args.wrk_out, "w", encoding="utf-8")
    t_start, wall_start = time.monotonic(), time.time()
    wrk = subprocess.Popen(args.cmd, stdin=subprocess.DEVNULL, stdout=wrk_out, stderr=subprocess.STDOUT)
    wrk_deadline = t_start + args.duration + 30
    reload_deadline = None
    try:
        while True:
            now = time.monotonic()
            rel = now - t_start
            wrk_done = wrk.poll() is not None
            if not wrk_done and now > wrk_deadline:
                wrk.kill()
                wrk.wait()
                wrk_done = True
            workers = list_workers(roots, uid, exe_re, parent_re)
            seen |= workers
            if cur is None and schedule and not wrk_done and rel >= schedule[0]:
                cur = {"scheduled_s": schedule.pop(0), "start_s": rel, "start_wall": time.time(),
                       "old": sorted(workers)}
                reload_deadline = now + args.reload_timeout
                if done_re:
                    log_at = file_size(args.done_log)
                if args.trigger_log:
                    trigger_log.write(f"--- reload at +{rel:.3f} s ({cur['start_wall']:.3f})\n")
                    trigger_log.flush()
                proc = subprocess.Popen(["/bin/sh", "-c", args.trigger], stdin=subprocess.DEVNULL,
                                        stdout=trigger_log, stderr=subprocess.STDOUT)
            if cur is not None:
                if "cmd_s" not in cur and proc.poll() is not None:
                    cur["cmd_s"] = rel - cur["start_s"]
                    cur["cmd_rc"] = proc.returncode
                old = {tuple(w) for w in cur["old"]}
                if "replaced_s" not in cur and not (old & workers) and len(workers) >= args.min:
                    cur["replaced_s"] = rel - cur["start_s"]
                    cur["new"] = sorted(workers)
                if done_re and "logged_s" not in cur:
                    text, log_at = read_from(args.done_log, log_at)
                    cur["log"] = cur.get("log", "") + text
                    if done_re.search(cur["log"]):
                        cur["logged_s"] = rel - cur["start_s"]
                        del cur["log"]
                finished = "cmd_s" in cur and "replaced_s" in cur and (not done_re or "logged_s" in cur)
                if wrk_done and reload_deadline > now + args.after_run_timeout:
                    reload_deadline = now + args.after_run_timeout
                if finished or now > reload_deadline:
                    if not finished:
                        cur["timed_out"] = True
                        if proc.poll() is None:
                            proc.kill()
                            proc.wait()
                    cur["ok"] = finished and cur.get("cmd_rc") == 0
                    cur.pop("log", None)
                    cur["done_s"] = max(cur.get("cmd_s", 0), cur.get("replaced_s", 0),
                                        cur.get("logged_s", 0)) if finished else rel - cur["start_s"]
                    reloads.append(cur)
                    cur = proc = None
            if queue_at and rel >= queue_at[0]:
                queue_at.pop(0)
                acceptq.append(accept_queue(args.port))
            if wrk_done and cur is None:
                break
            time.sleep(POLL_RELOAD_S if cur is not None else POLL_S)
    finally:
        for p in (wrk, proc):
            if p is not None and p.poll() is None:
                p.terminate()
                p.wait()
        wrk_out.close()
    result = {
        "t_start_mono": t_start,
        "t_start_wall": wall_start,
        "duration": args.duration,
        "wrk_rc": wrk.returncode,
        "reloads": reloads,
        "reloads_skipped": len(schedule),
        "workers_initial": len(initial),
        "workers_seen": len(seen),
        "acceptq_samples": acceptq,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    sys.exit(0 if wrk.returncode == 0 else 1)


def parse_timeline(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [l for l in f if l.startswith(TIMELINE_MARK)]
    if not lines:
        raise ValueError("wrk printed no timeline (see its output)")
    raw = json.loads(lines[-1][len(TIMELINE_MARK):])
    return (raw["bucket_ms"] / 1000, {int(k): v for k, v in raw["ok"].items()},
            {int(k): v for k, v in raw["bad"].items()})


def analyse_timeline(ev, bucket_s, ok, bad, duration_s):
    """Throughput figures from the per-bucket counts: during each reload,
    the worst WORST_WINDOW_S, and when the error answers came."""
    start = ev["t_start_mono"]
    first = int(start / bucket_s) + 1                      # first whole bucket
    last = int((start + duration_s) / bucket_s) - 1        # last whole bucket
    # Only answers below 400 count as served: a stack that answers 502 fast
    # must not look fast.
    counts = [ok.get(b, 0) for b in range(first, last + 1)]
    out = {"bucket_s": bucket_s, "timeline_first_s": round(first * bucket_s - start, 3),
           "timeline": [ok.get(b, 0) for b in range(first, last + 1)]}
    n = max(1, round(WORST_WINDOW_S / bucket_s))
    if len(counts) >= n:
        worst = min(sum(counts[i:i + n]) for i in range(len(counts) - n + 1))
        out["worst_window_rps"] = worst / (n * bucket_s)
    def served(t0, t1):
        # Responses from t0 to t1; a bucket the window only partly covers
        # counts in proportion (its responses taken as spread evenly over
        # its 50 ms).
        got = 0.0
        for b in range(int(t0 / bucket_s), int(t1 / bucket_s) + 1):
            overlap = min(t1, (b + 1) * bucket_s) - max(t0, b * bucket_s)
            if overlap > 0:
                got += ok.get(b, 0) * overlap / bucket_s
        return got

    total_n = total_s = sec_n = sec_s = 0.0
    for r in ev["reloads"]:
        # From the trigger until done; and over the second from the
        # trigger (or until done, if longer): requests per second while a
        # reload runs, at the resolution the unit implies.
        t0 = start + r["start_s"]
        got = served(t0, t0 + r["done_s"])
        if r["done_s"] > 0:
            r["rps_during"] = got / r["done_s"]
        total_n += got
        total_s += r["done_s"]
        span = max(RELOAD_SECOND_S, r["done_s"])
        sec_n += served(t0, t0 + span)
        sec_s += span
    if total_s:
        out["during_reload_rps"] = total_n / total_s
    if sec_s:
        out["reload_second_rps"] = sec_n / sec_s
    out["bad_at"] = [{"at_s": round(b * bucket_s - start, 3),
                      "wall": round(ev["t_start_wall"] + b * bucket_s - start, 3), "n": n_bad}
                     for b, n_bad in sorted(bad.items())]
    return out


PYHOST_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z ")


def pyhost_log_facts(path, rec):
    """From pyhostd's log: how many "recycling worker" lines fall within
    the wrk run, and the log lines within 1 s of every error answer."""
    start = rec["t_start_wall"]
    end = start + rec["duration_s"]
    timed = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = PYHOST_LOG_TIME.match(line)
            if m:
                t = datetime.datetime.fromisoformat(m.group(1)).replace(
                    tzinfo=datetime.timezone.utc).timestamp()
                timed.append((t, line.rstrip("\n")))
    facts = {"log_recycles": sum(1 for t, l in timed if start <= t <= end and "recycling worker" in l)}
    near = []
    for b in rec.get("bad_at", []):
        near += [l for t, l in timed if abs(t - b["wall"]) <= 1.0 and l not in near]
    if near:
        facts["log_near_errors"] = near
    return facts


def cmd_reload_record(args):
    rec = {"round": args.round, "stack": args.stack, "app": args.app,
           "scenario": args.scenario, "status": "ok"}
    if args.fail:
        rec.update(status="failed", reason=args.fail)
    else:
        try:
            rec.update(parse_wrk(args.wrk))
            with open(args.events, encoding="utf-8") as f:
                ev = json.load(f)
            # req/s here: answers below 400 per second (wrk's own figure
            # counts error answers too).
            rec["rps_all"] = rec["rps"]
            rec["rps"] = (rec["requests"] - rec["http_errors"]) / rec["duration_s"] if rec["duration_s"] else 0.0
            bucket_s, ok, bad = parse_timeline(args.wrk)
            rec.update(analyse_timeline(ev, bucket_s, ok, bad, rec["duration_s"]))
            rec["reloads"] = ev["reloads"]
            rec["reloads_skipped"] = ev["reloads_skipped"]
            rec["recycles"] = ev["workers_seen"] - ev["workers_initial"]
            rec["acceptq_samples"] = ev["acceptq_samples"]
            rec["acceptq_min"] = min(ev["acceptq_samples"], default=0)
            rec["t_start_wall"] = ev["t_start_wall"]
            if ev["wrk_rc"] != 0:
                rec.update(status="failed", reason=f"wrk exited with status {ev['wrk_rc']}")
        except (OSError, ValueError, KeyError) as e:
            rec.update(status="failed", reason=f"no result: {e}")
    if args.pyhost_log and rec["status"] == "ok":
        try:
            rec.update(pyhost_log_facts(args.pyhost_log, rec))
        except OSError as e:
            print(f"benchtool: reload-record: cannot read {args.pyhost_log}: {e}", file=sys.stderr)
    if args.cpu:
        try:
            rec["foreign_cpu_pct"] = round(foreign_cpu(*args.cpu), 1)
        except (OSError, ValueError, KeyError) as e:
            print(f"benchtool: reload-record: no CPU figures: {e}", file=sys.stderr)
    with open(args.out, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")
    if rec["status"] != "ok":
        print(f"    FAILED: {rec['reason']}", file=sys.stderr)
        return
    errs = "/".join(str(rec[k]) for k in ("err_connect", "err_read", "err_write", "err_timeout"))
    line = (f"    {fmt_rps(rec['rps'])} req/s, worst {WORST_WINDOW_S} s "
            f"{fmt_rps(rec.get('worst_window_rps', 0))} req/s, p99 {fmt_ms(rec['p99_ms'])} ms, "
            f"non-2xx {rec['http_errors']}, socket errors {errs}")
    if rec["reloads"]:
        line += (f", reloads {sum(r['ok'] for r in rec['reloads'])}/{len(rec['reloads'])} "
                 "(" + ", ".join(f"{r['done_s']:.2f}" for r in rec["reloads"]) + " s), "
                 f"{fmt_rps(rec.get('during_reload_rps', 0))} req/s during them")
    if rec["recycles"]:
        line += f", {rec['recycles']} new workers"
    if "log_recycles" in rec:
        line += f" ({rec['log_recycles']} 'recycling worker' log lines)"
    if "foreign_cpu_pct" in rec:
        line += f", other CPU {rec['foreign_cpu_pct']:.0f}%"
    print(line, file=sys.stderr)
    if rec.get("foreign_cpu_pct", 0) >= NOISY_PCT:
        print(f"    warning: other programs used {rec['foreign_cpu_pct']:.0f}% of the CPUs "
              f"during this test; its figures are low by about as much", file=sys.stderr)
    if rec["http_errors"] or rec["err_read"] or rec["err_write"] or rec["err_timeout"] or rec["err_connect"]:
        for b in rec["bad_at"][:8]:
            print(f"    {b['n']} error answer(s) at +{b['at_s']:.2f} s "
                  f"({datetime.datetime.fromtimestamp(b['wall'], datetime.timezone.utc):%H:%M:%S.%f} UTC)",
                  file=sys.stderr)
        if len(rec["bad_at"]) > 8:
            print(f"    ... and in {len(rec['bad_at']) - 8} more 50 ms intervals", file=sys.stderr)
        for r in rec["reloads"]:
            print(f"    reload at +{r['start_s']:.2f} s "
                  f"({datetime.datetime.fromtimestamp(r['start_wall'], datetime.timezone.utc):%H:%M:%S.%f} UTC), "
                  f"done after {r['done_s']:.2f} s", file=sys.stderr)
        if rec.get("log_near_errors"):
            print("    pyhostd's log within 1 s of the error answers:", file=sys.stderr)
            for l in rec["log_near_errors"]:
                print("      " + l, file=sys.stderr)


RELOAD_SCENARIOS = ("steady", "reload", "max_requests")
RELOAD_STACK_NOTES = {
    "pyhost": "`pyctl --socket … reload` (blocks until the rolling reload is done)",
    "apache-wsgi": "`apache2 -f <its config> -k graceful` (SIGUSR1 to the parent)",
    "nginx-uwsgi": "`c` written to uWSGI's master FIFO (chain reload; lazy-apps = true)",
}


def fmt_range(vals, fmt):
    if len(vals) == 1:
        return fmt(vals[0])
    return f"{fmt(statistics.mean(vals))} ({fmt(min(vals))}–{fmt(max(vals))})"


def fmt_frac(v):
    return "–" if v is None else f"{v:.2f}"


def cmd_max_foreign(args):
    """Print the largest "other CPU %" of the ok records in a records file
    (0 when none has one): reload.sh's test for a disturbed attempt."""
    worst = 0.0
    with open(args.records, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                if r.get("status") == "ok":
                    worst = max(worst, r.get("foreign_cpu_pct", 0.0))
    print(f"{worst:.0f}")


def cmd_reload_report(args):
    with open(args.meta, encoding="utf-8") as f:
        meta = json.load(f)
    with open(args.records, encoding="utf-8") as f:
        records = [json.loads(l) for l in f if l.strip()]
    extra = meta.get("extra", {})
    stacks = meta["stacks"]
    apps = extra.get("apps", "hello").split()
    scenarios = ["steady"] + [s for s in extra.get("scenarios", "").split() if s != "steady"]
    rounds = int(meta["rounds"])
    v = meta["versions"]
    lines = [
        "# pyhost benchmark: reloads and recycling under load, 2 processes x 4 threads",
        "",
        f"- Date: {meta['date']}",
        f"- Machine: {meta['cpus']} CPUs (nproc), {meta['cpu_model']}, "
        f"{meta['mem_gib']} GiB RAM; {meta['kernel']}; {meta['os']}",
        f"- Load: `wrk -t1 -c{meta['conns'][0]} -d{meta['duration']}s --timeout {meta['wrk_timeout']} "
        f"-s lib/timeline.lua` on `GET /hello`, after a discarded {meta['warmup']} s warm-up; "
        f"scenarios: steady, then {extra.get('reloads', '?')} reloads spread over the run "
        f"(same server, right after), and max_requests = {extra.get('max_requests', '?')} "
        f"(a fresh server with that setting)",
        f"- Rounds: {rounds}",
        f"- Command: `{meta['command']}`",
        "- Versions: " + "; ".join(f"{val}" for val in v.values() if val),
        "",
        "Reload triggers: " + "; ".join(f"{s}: {RELOAD_STACK_NOTES.get(s, '?')}" for s in stacks) + ".",
        "",
    ]

    def recs(app, stack, scen):
        return [r for r in records if r["app"] == app and r["stack"] == stack and r["scenario"] == scen]

    rows = []
    for app in apps:
        for stack in stacks:
            steady = [r for r in recs(app, stack, "steady") if r["status"] == "ok"]
            steady_rps = statistics.mean(r["rps"] for r in steady) if steady else None
            for scen in scenarios:
                rs = recs(app, stack, scen)
                ok = [r for r in rs if r["status"] == "ok"]
                if not ok:
                    if rs:
                        reason = "; ".join(sorted({r.get("reason", "failed") for r in rs}))
                        rows.append([app, stack, scen, "FAILED: " + reason] + [""] * 11)
                    continue
                rps = statistics.mean(r["rps"] for r in ok)
                div = (lambda x: None if x is None or not steady_rps else x / steady_rps)
                during = [r["during_reload_rps"] for r in ok if "during_reload_rps" in r]
                second = [r["reload_second_rps"] for r in ok if "reload_second_rps" in r]
                worst = [r["worst_window_rps"] for r in ok if "worst_window_rps" in r]
                reloads = [x for r in ok for x in r.get("reloads", [])]
                if scen == "reload":
                    done = sum(1 for x in reloads if x["ok"])
                    tried = len(reloads) + sum(r.get("reloads_skipped", 0) for r in ok)
                    events = f"{done}/{tried} reloads"
                    secs = ", ".join(f"{x['done_s']:.2f}" for x in reloads)
                else:
                    events = f"{sum(r.get('recycles', 0) for r in ok)} new workers"
                    logged = [r["log_recycles"] for r in ok if "log_recycles" in r]
                    if scen == "max_requests" and logged:
                        events += f" ({sum(logged)} recycles logged)"
                    secs = "–"
                sock = "/".join(str(sum(r[k] for r in ok))
                                for k in ("err_connect", "err_read", "err_write", "err_timeout"))
                foreign = max((r["foreign_cpu_pct"] for r in ok if "foreign_cpu_pct" in r), default=None)
                rows.append([
                    app, stack, scen,
                    fmt_range([r["rps"] for r in ok], fmt_rps),
                    fmt_frac(div(rps)),
                    fmt_frac(div(statistics.mean(during))) if during else "–",
                    fmt_frac(div(statistics.mean(second))) if second else "–",
                    fmt_frac(div(min(worst))) if worst else "–",
                    sum(r["http_errors"] for r in ok), sock,
                    f"{fmt_ms(statistics.median(r['p99_ms'] for r in ok))} / "
                    f"{fmt_ms(max(r['max_ms'] for r in ok))}",
                    events, secs, fmt_pct(foreign)])
    header = ["app", "stack", "scenario", "req/s" + (" (min–max)" if rounds > 1 else ""),
              "÷ steady", "during reloads ÷ steady", "reload's first second ÷ steady",
              f"worst {WORST_WINDOW_S} s ÷ steady",
              "non-2xx/3xx", "socket errors c/r/w/t", "p99 / max ms", "reloads ok / new workers",
              "each reload s", "other CPU %"]
    lines += ["## Results", "", md_table(header, rows, {3, 4, 5, 6, 7, 8, 10, 13}), ""]

    if rounds > 1:
        prow = []
        for r in sorted(records, key=lambda r: (r["round"], apps.index(r["app"]) if r["app"] in apps else 99,
                                               stacks.index(r["stack"]) if r["stack"] in stacks else 99,
                                               RELOAD_SCENARIOS.index(r["scenario"]))):
            if r["status"] != "ok":
                prow.append([r["round"], r["app"], r["stack"], r["scenario"], "FAILED: " + r.get("reason", "")]
                            + [""] * 5)
                continue
            prow.append([r["round"], r["app"], r["stack"], r["scenario"], fmt_rps(r["rps"]),
                         fmt_rps(r["during_reload_rps"]) if "during_reload_rps" in r else "–",
                         fmt_rps(r["worst_window_rps"]) if "worst_window_rps" in r else "–",
                         r["http_errors"],
                         "/".join(str(r[k]) for k in ("err_connect", "err_read", "err_write", "err_timeout")),
                         fmt_pct(r.get("foreign_cpu_pct"))])
        lines += ["## Per round", "",
                  md_table(["round", "app", "stack", "scenario", "req/s", "during reloads req/s",
                            f"worst {WORST_WINDOW_S} s req/s", "non-2xx/3xx", "socket errors c/r/w/t",
                            "other CPU %"], prow, {0, 4, 5, 6, 7, 9}), ""]

    lines += [
        "## How to read it",
        "",
        "- req/s: answers with a status below 400 ÷ wrk's measured duration (the whole run, "
        "reloads included); error answers are not throughput (they are counted under non-2xx/3xx).",
        "- ÷ steady: that req/s divided by the same stack's and app's steady-state req/s "
        "(mean over the rounds). For max_requests the steady state is the other server of the "
        "same round, without max_requests.",
        "- during reloads ÷ steady: answers below 400 received from each reload's trigger until it was "
        "done (from wrk's timeline of 50 ms buckets; all reloads of the run pooled), per second, "
        "÷ steady. "
        "Done: pyhost when `pyctl reload` had returned and every old worker had exited; uWSGI "
        "when every old worker had exited and the master logged \"chain reloading complete\" "
        "(it checks about once a second); Apache when every old daemon process had exited and "
        "2 new ones ran (mod_wsgi imports the app at their first request, after that: see the "
        "worst 0.5 s).",
        f"- reload's first second ÷ steady: the same, over the {RELOAD_SECOND_S:g} s from each "
        "trigger, or until done if the reload took longer: throughput at the resolution of "
        "requests per second. A reload shorter than that window is a burst of CPU (new "
        "interpreters, the trigger command) that the window above magnifies.",
        f"- worst {WORST_WINDOW_S} s ÷ steady: the lowest throughput over any {WORST_WINDOW_S} s "
        "window of the run, ÷ steady. On the steady row, it shows the noise of a run without "
        "reloads.",
        "- non-2xx/3xx, socket errors: what wrk counted over the whole run. Every one is a failed "
        "request.",
        "- reloads ok: reloads triggered, and done within the time limit (pyhost: pyctl exited 0). "
        "new workers: worker processes that appeared during the run (recycles).",
        "- each reload s: from the trigger until done (see above), per reload.",
        "- other CPU %: CPU time programs other than the stack and the harness used during the "
        "run, in % of all CPUs; more than a few % means that row was disturbed.",
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
    p.add_argument("--extra", action="append", default=[], help="KEY=VALUE, kept under \"extra\"")
    p.set_defaults(func=cmd_meta)

    p = sub.add_parser("events")
    p.add_argument("--out", required=True, help="JSON summary of the run")
    p.add_argument("--wrk-out", required=True, help="where wrk's output goes")
    p.add_argument("--duration", type=float, required=True, help="wrk's -d, in seconds")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True, help="the user the workers run as")
    p.add_argument("--worker-exe", required=True, help="regex on the workers' executable's name")
    p.add_argument("--worker-parent", default="",
                   help="regex on the command line of a process that is no worker but forks them (pyhost's fork server)")
    p.add_argument("--min", type=int, required=True, help="how many workers the stack runs")
    p.add_argument("--roots", required=True, help="the stack's top-level pids, space-separated")
    p.add_argument("--reload-at", type=float, action="append", default=[],
                   help="seconds after wrk's start (repeatable)")
    p.add_argument("--trigger", default="true", help="shell command that starts a reload")
    p.add_argument("--trigger-log", help="append the trigger's output here")
    p.add_argument("--reload-timeout", type=float, default=30,
                   help="seconds a reload may take before it counts as not done")
    p.add_argument("--after-run-timeout", type=float, default=10,
                   help="... but at most this long after wrk's end")
    p.add_argument("--done-log", help="a log in which the stack says when a reload is done")
    p.add_argument("--done-pattern", help="regex of that line; a reload is done only once it appears")
    p.add_argument("cmd", nargs="+", help="wrk's command line (after --)")
    p.set_defaults(func=cmd_events)

    p = sub.add_parser("reload-record")
    p.add_argument("--out", required=True)
    p.add_argument("--round", type=int, required=True)
    p.add_argument("--stack", required=True)
    p.add_argument("--app", required=True)
    p.add_argument("--scenario", choices=RELOAD_SCENARIOS, required=True)
    p.add_argument("--wrk")
    p.add_argument("--events")
    p.add_argument("--cpu", nargs=2, metavar=("BEFORE", "AFTER"))
    p.add_argument("--pyhost-log", help="pyhostd's log: recycles, lines near error answers")
    p.add_argument("--fail")
    p.set_defaults(func=cmd_reload_record)

    p = sub.add_parser("max-foreign")
    p.add_argument("records")
    p.set_defaults(func=cmd_max_foreign)

    p = sub.add_parser("reload-report")
    p.add_argument("--meta", required=True)
    p.add_argument("--records", required=True)
    p.set_defaults(func=cmd_reload_report)

    p = sub.add_parser("report")
    p.add_argument("--meta", required=True)
    p.add_argument("--records", required=True)
    p.set_defaults(func=cmd_report)

    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
