package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
)

// The targets of issue 10, shown next to each row.
const (
	targetP99ms      = 50.0
	targetRSSRatio   = 1.2 // proxy RSS after the settle ÷ before the attack
	proxyGroup       = "proxy"
	pythonGroup      = "python"
	wholeStackGroup  = "stack"
	scenarioOrderStr = "slowloris slowbody slowupload noread"
)

// benchMeta is the part of lib/benchtool.py meta's JSON the report shows.
type benchMeta struct {
	Date     string            `json:"date"`
	CPUs     int               `json:"cpus"`
	CPUModel string            `json:"cpu_model"`
	MemGiB   float64           `json:"mem_gib"`
	Kernel   string            `json:"kernel"`
	OS       string            `json:"os"`
	Command  string            `json:"command"`
	Versions map[string]string `json:"versions"`
}

func runReport(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	metaPath := fs.String("meta", "", "benchtool.py meta's JSON (the machine, versions, command)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var meta *benchMeta
	if *metaPath != "" {
		b, err := os.ReadFile(*metaPath)
		if err != nil {
			return err
		}
		meta = new(benchMeta)
		if err := json.Unmarshal(b, meta); err != nil {
			return fmt.Errorf("%s: %w", *metaPath, err)
		}
	}
	var results []attackResult
	for _, path := range fs.Args() {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var r attackResult
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		results = append(results, r)
	}
	_, err := io.WriteString(w, renderReport(meta, results))
	return err
}

// renderReport orders the results by scenario (slowloris, slowbody,
// slowupload, noread), then by stack in the order first seen.
func renderReport(meta *benchMeta, results []attackResult) string {
	order := strings.Fields(scenarioOrderStr)
	var stacks []string
	for _, r := range results {
		if !slices.Contains(stacks, r.Stack) {
			stacks = append(stacks, r.Stack)
		}
	}
	results = slices.Clone(results)
	slices.SortStableFunc(results, func(a, b attackResult) int {
		if d := slices.Index(order, a.Scenario) - slices.Index(order, b.Scenario); d != 0 {
			return d
		}
		return slices.Index(stacks, a.Stack) - slices.Index(stacks, b.Stack)
	})

	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("# pyhost benchmark: hostile clients, 2 processes x 4 threads")
	line("")
	if meta != nil {
		line("- Date: %s", meta.Date)
		line("- Machine: %d CPUs (nproc), %s, %.1f GiB RAM; %s; %s", meta.CPUs, meta.CPUModel, meta.MemGiB, meta.Kernel, meta.OS)
		line("- Command: `%s`", meta.Command)
		var vs []string
		for _, k := range slices.Sorted(maps.Keys(meta.Versions)) {
			if meta.Versions[k] != "" {
				vs = append(vs, meta.Versions[k])
			}
		}
		line("- Versions: %s", strings.Join(vs, "; "))
	}
	if len(results) > 0 {
		s := results[0].Settings
		line("- Each scenario, on a fresh server: the normal client alone for %s, then the hostile "+
			"connections for %s from their first connect (from %s addresses, 127.0.0.2 and up; the slow "+
			"ones send one byte every %s), then %s of quiet before the last memory reading, then the "+
			"normal client again for a moment.", s["baseline"], s["hold"], s["sources"], s["trickle"], s["settle"])
		line("- The normal client, from 127.0.0.1: `GET %s` one request at a time, one started every %s "+
			"(or when the last ends), a request failing after %s; once over a kept-alive connection and, "+
			"at the same time, once with a new connection per request.", s["probe_path"], s["probe_interval"], s["probe_timeout"])
	}
	line("")
	line("Scenarios:")
	line("")
	for _, sc := range order {
		line("- %s: %s.", sc, scenarioDetail(sc, results))
	}
	line("")

	line("## The normal client during each attack")
	line("")
	line("| scenario | stack | hostile open / wanted | keep-alive: requests, failed | keep-alive p50 / p99 / max ms | "+
		"new conns: requests, failed | new conns p50 / p99 / max ms | alone before: p99 ms keep-alive / new | "+
		"after: failed / requests | p99 < %.0f ms, none failed |", targetP99ms)
	line("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
	var notes []string
	for _, r := range results {
		ka, fr := r.Normal["keepalive attack"], r.Normal["fresh attack"]
		kb, fb := r.Normal["keepalive baseline"], r.Normal["fresh baseline"]
		ka2, fr2 := r.Normal["keepalive after"], r.Normal["fresh after"]
		ok := ka.Failed == 0 && fr.Failed == 0 && ka.Requests > 0 && fr.Requests > 0 &&
			ka.Latency.P99ms < targetP99ms && fr.Latency.P99ms < targetP99ms
		line("| %s | %s | %d / %d | %d, %d | %s | %d, %d | %s | %s / %s | %d / %d | %s |",
			r.Scenario, r.Stack, r.Hostile.Opened, r.Hostile.Wanted,
			ka.Requests, ka.Failed, latCell(ka), fr.Requests, fr.Failed, latCell(fr),
			fmtMs(kb.Latency.P99ms), fmtMs(fb.Latency.P99ms),
			ka2.Failed+fr2.Failed, ka2.Requests+fr2.Requests, yesNo(ok))
		for _, ph := range []string{"keepalive attack", "fresh attack", "keepalive after", "fresh after"} {
			if errs := r.Normal[ph].Errors; len(errs) > 0 {
				notes = append(notes, fmt.Sprintf("%s, %s, normal client (%s): %s", r.Scenario, r.Stack, ph, countList(errs)))
			}
		}
		if len(r.Hostile.DialErrors) > 0 {
			notes = append(notes, fmt.Sprintf("%s, %s, hostile connects that failed: %s", r.Scenario, r.Stack, countList(r.Hostile.DialErrors)))
		}
	}
	line("")
	if len(notes) > 0 {
		line("Failures:")
		line("")
		for _, n := range notes {
			line("- %s", n)
		}
		line("")
	}

	line("## Memory, descriptors, and what the server did with the hostile connections")
	line("")
	line("| scenario | stack | proxy RSS MiB before / peak / after | after ÷ before (≤ %.1f) | proxy fds before / peak / after | "+
		"stack RSS MiB before / peak / after | Python processes started | hostile cut by the server: n (p50 / max s) | "+
		"answers they got | open at the end |", targetRSSRatio)
	line("|---|---|---:|---:|---:|---:|---:|---:|---|---:|")
	for _, r := range results {
		p, hasP := r.Memory[proxyGroup]
		st, hasS := r.Memory[wholeStackGroup]
		py, hasPy := r.Memory[pythonGroup]
		proxyRSS, ratio, fds, stackRSS, started := "–", "–", "–", "–", "–"
		if hasP {
			proxyRSS = fmt.Sprintf("%.1f / %.1f / %.1f", mib(p.BeforeKB), mib(p.PeakKB), mib(p.AfterKB))
			if p.BeforeKB > 0 {
				x := float64(p.AfterKB) / float64(p.BeforeKB)
				ratio = fmt.Sprintf("%.2f %s", x, yesNo(x <= targetRSSRatio))
			}
			fds = fmt.Sprintf("%d / %d / %d", p.FDsBefore, p.FDsPeak, p.FDsAfter)
		}
		if hasS {
			stackRSS = fmt.Sprintf("%.1f / %.1f / %.1f", mib(st.BeforeKB), mib(st.PeakKB), mib(st.AfterKB))
		}
		if hasPy {
			started = fmt.Sprint(py.NewProcs)
		}
		if hasP && p.NewProcs > 0 {
			started += fmt.Sprintf(" (and %d new proxy process)", p.NewProcs)
		}
		cut := fmt.Sprint(r.Hostile.Cut)
		if r.Hostile.Cut > 0 {
			if r.Scenario == "noread" {
				cut += " (by the end)"
			} else {
				cut += fmt.Sprintf(" (%.1f / %.1f)", r.Hostile.CutP50S, r.Hostile.CutMaxS)
			}
		}
		answers := "none"
		if len(r.Hostile.Statuses) > 0 {
			answers = countList(r.Hostile.Statuses)
		}
		line("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |", r.Scenario, r.Stack, proxyRSS, ratio, fds,
			stackRSS, started, cut, answers, r.Hostile.StillOpen)
	}
	line("")
	line("- proxy: pyhost's proxy process (`pyhostd __proxy`); for nginx + uWSGI, nginx (master and workers). " +
		"stack: every process of the stack. Before: just before the first hostile connect; peak: the largest " +
		"reading (every 250 ms) from then to the last; after: the settle period after the hostile connections closed.")
	line("- Python processes started: worker processes (and fork servers) that appeared during the attack " +
		"or the settle period: recycled or crashed workers.")
	line("- cut by the server: hostile connections the server closed or reset before the attack ended, and how " +
		"long after their connect (noread: whether, seen at the end by reading what the server still sends). " +
		"answers: the status codes the server sent them before closing.")
	line("- Latencies are those of the normal client's answered requests; failed ones are counted apart (and " +
		"listed under Failures). One request at a time: a stalled request delays the next ones, which this " +
		"client does not count as extra latency.")
	return b.String()
}

func scenarioDetail(sc string, results []attackResult) string {
	var s map[string]string
	for _, r := range results {
		if r.Scenario == sc {
			s = r.Settings
			break
		}
	}
	if s == nil {
		return scenarios[sc] + " (not run)"
	}
	switch sc {
	case "slowloris":
		return fmt.Sprintf("%s connections sending request headers that never end, one byte every %s", s["conns"], s["trickle"])
	case "slowbody":
		return fmt.Sprintf("%s connections sending a POST's headers (Content-Length %s) at once, then one body byte every %s",
			s["conns"], s["body_size"], s["trickle"])
	case "slowupload":
		return fmt.Sprintf("%s connections sending a POST's headers (Content-Length %s) at once, then one body byte every %s",
			s["conns"], s["upload_size"], s["trickle"])
	case "noread":
		return fmt.Sprintf("%s connections asking for `GET %s` with SO_RCVBUF %s and never reading", s["conns"], s["download_path"], s["rcvbuf"])
	}
	return scenarios[sc]
}

func latCell(p probePhase) string {
	if p.Latency.N == 0 {
		return "–"
	}
	return fmt.Sprintf("%s / %s / %s", fmtMs(p.Latency.P50ms), fmtMs(p.Latency.P99ms), fmtMs(p.Latency.MaxMs))
}

func fmtMs(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// countList renders {"a": 2, "b": 1} as "a 2, b 1", largest first.
func countList(m map[string]int) string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
