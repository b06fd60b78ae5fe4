package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pyhost/pyhost/control"
	"github.com/spf13/cobra"
)

func (c *cli) statusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [APP]",
		Short: "Show your apps and their workers",
		Long: `Show the apps you may see (or only APP): each app's state, domains,
ready workers and restarts, then per worker its pid, state, memory (RSS),
CPU time, requests served, busy threads and age. An app in a cgroup shows
the kernel's figures of the whole app (its memory against memory_max, CPU
time, tasks, OOM kills, time throttled by cpu_max), and restarts by reason
(crash, oom, memory, requests, timeout, reload). A failing app also shows
its last error and the last lines of its log. Above the table, a line about
the daemon: its version, mode, pid, uptime, config file and how its last
config reload went (a daemon older than pyctl prints none).

--json prints the apps as a JSON array; its field names are stable. The
daemon's line is not in it: pyctl version --json has it.`,
		Args:              maxArgs(1),
		ValidArgsFunction: c.completeApps,
		RunE: func(cmd *cobra.Command, args []string) error {
			app := ""
			if len(args) == 1 {
				app = args[0]
			}
			apps, err := c.client().Status(cmd.Context(), app)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), apps)
			}
			// The daemon's own line, when it can tell (an older one
			// cannot; pyctl version --json has it for scripts).
			if info, err := c.client().Daemon(cmd.Context()); err == nil {
				io.WriteString(cmd.OutOrStdout(), renderDaemon(info, time.Now()))
			}
			_, err = io.WriteString(cmd.OutOrStdout(), renderStatus(apps, c.me))
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON, with stable field names, for scripts")
	return cmd
}

func writeJSON(w io.Writer, apps []control.AppStatus) error {
	if apps == nil {
		apps = []control.AppStatus{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(apps); err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	return nil
}

// renderStatus formats apps as the table of `pyctl status`: a line per app
// and, indented under it, its workers, last error and last log lines.
// App lines are aligned with each other, and so are worker lines across
// all apps. The variable-width DOMAINS column comes last.
func renderStatus(apps []control.AppStatus, me string) string {
	if len(apps) == 0 {
		return "no apps\n"
	}
	const indent = "    "

	appRows := [][]string{{"NAME", "STATE", "WORKERS", "RESTARTS", "DOMAINS"}}
	workerRows := [][]string{{"PID", "STATE", "RSS", "CPU", "REQUESTS", "BUSY", "AGE"}}
	for _, a := range apps {
		appRows = append(appRows, []string{
			appRef(a, me), a.State, readyWorkers(a), fmt.Sprint(a.Restarts), domainsCell(a),
		})
		for _, w := range a.Workers {
			workerRows = append(workerRows, []string{
				fmt.Sprint(w.PID), w.State, humanBytes(w.RSSBytes), fmt.Sprintf("%.1fs", w.CPUSeconds),
				fmt.Sprint(w.Requests), fmt.Sprintf("%d/%d", w.Busy, w.Threads), humanAge(w.AgeSeconds),
			})
		}
	}
	appLines, workerLines := align(appRows), align(workerRows)

	var b strings.Builder
	b.WriteString(appLines[0] + "\n")
	next := 1 // next worker line
	for i, a := range apps {
		b.WriteString(appLines[i+1] + "\n")
		if line := containmentLine(a); line != "" {
			b.WriteString(indent + line + "\n")
		}
		if line := restartsLine(a.RestartsByReason); line != "" {
			b.WriteString(indent + line + "\n")
		}
		if len(a.Workers) > 0 {
			b.WriteString(indent + workerLines[0] + "\n")
			for range a.Workers {
				b.WriteString(indent + workerLines[next] + "\n")
				next++
			}
		}
		if a.LastError != "" {
			lines := strings.Split(strings.TrimRight(a.LastError, "\n"), "\n")
			b.WriteString(indent + "last error: " + sanitize(lines[0]) + "\n")
			for _, l := range lines[1:] {
				b.WriteString(indent + "  " + sanitize(l) + "\n")
			}
		}
		if len(a.LastLog) > 0 {
			b.WriteString(indent + "last log:\n")
			for _, l := range a.LastLog {
				// Keep the line's own indentation: tracebacks need it.
				b.WriteString(indent + "  " + sanitize(strings.ReplaceAll(l, "\n", " ")) + "\n")
			}
		}
	}
	return b.String()
}

// align pads rows into columns two spaces apart; the last column is not
// padded. Cells are sanitized: they come from the daemon.
func align(rows [][]string) []string {
	var widths []int
	for _, r := range rows {
		for i, cell := range r {
			r[i] = oneLine(cell)
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(r[i]))
		}
	}
	lines := make([]string, len(rows))
	for n, r := range rows {
		var b strings.Builder
		for i, cell := range r {
			b.WriteString(cell)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(cell)+2))
			}
		}
		lines[n] = strings.TrimRight(b.String(), " ")
	}
	return lines
}

// readyWorkers is "ready/wanted": workers ready to serve over the
// configured number of processes. During a rolling reload it may exceed
// the latter for a while, as new workers start before old ones go.
func readyWorkers(a control.AppStatus) string {
	ready := 0
	for _, w := range a.Workers {
		if w.State == control.WorkerReady {
			ready++
		}
	}
	want := a.Processes
	if want == 0 {
		want = len(a.Workers)
	}
	return fmt.Sprintf("%d/%d", ready, want)
}

// domainsCell lists where an app is mounted: each domain with the URL
// prefix appended unless it is "/". No domain means any Host (express
// mode), shown as "*".
func domainsCell(a control.AppStatus) string {
	if a.State == control.AppRefused {
		return "-" // not loaded: it serves nothing
	}
	prefix := a.URLPrefix
	if prefix == "/" {
		prefix = ""
	}
	if len(a.Domains) == 0 {
		return "*" + prefix
	}
	cells := make([]string, len(a.Domains))
	for i, d := range a.Domains {
		cells[i] = d + prefix
	}
	return strings.Join(cells, ", ")
}

// humanBytes renders a size with binary units: 512B, 23.4MiB. Zero is
// shown as "-": the size is not known yet.
func humanBytes(n uint64) string {
	if n == 0 {
		return "-"
	}
	if n < 1024 {
		return fmt.Sprintf("%dB", n)
	}
	v := float64(n)
	for _, unit := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v /= 1024
		if v < 1024 || unit == "TiB" {
			return fmt.Sprintf("%.1f%s", v, unit)
		}
	}
	panic("unreachable")
}

// humanAge renders an age in its two largest units: 45s, 3m12s, 2h05m,
// 3d04h.
func humanAge(seconds float64) string {
	d := time.Duration(seconds * float64(time.Second)).Truncate(time.Second)
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}

// restartReasons is the order reasons are shown in.
var restartReasons = []string{control.RestartCrash, control.RestartOOM, control.RestartMemory, control.RestartRequests, control.RestartTimeout, control.RestartReload}

// containmentLine is the app's cgroup figures, or "" when it has no
// cgroup: "cgroup: memory 312.0MiB of 512.0MiB, cpu 12.3s, tasks 14,
// 1 OOM kill, throttled 0.4s".
func containmentLine(a control.AppStatus) string {
	if a.Cgroup == "" {
		return ""
	}
	mem := "memory " + humanBytes(uint64(max(a.MemoryCurrentBytes, 0)))
	if a.MemoryMaxBytes > 0 {
		mem += " of " + humanBytes(uint64(a.MemoryMaxBytes))
	}
	if a.MemoryMaxPendingBytes > 0 {
		mem += " (" + humanBytes(uint64(a.MemoryMaxPendingBytes)) + " pending: the app uses more; retried as workers exit)"
	}
	parts := []string{mem, fmt.Sprintf("cpu %.1fs", a.CgroupCPUSeconds), fmt.Sprintf("tasks %d", a.Tasks)}
	if a.OOMKills == 1 {
		parts = append(parts, "1 OOM kill")
	} else if a.OOMKills > 1 {
		parts = append(parts, fmt.Sprintf("%d OOM kills", a.OOMKills))
	}
	if a.ThrottledSeconds > 0 {
		parts = append(parts, fmt.Sprintf("throttled %.1fs", a.ThrottledSeconds))
	}
	return "cgroup: " + strings.Join(parts, ", ")
}

// restartsLine is "restarts: crash 1, oom 2, memory 3", or "" when
// there were none.
func restartsLine(by map[string]int) string {
	var parts []string
	for _, r := range restartReasons {
		if n := by[r]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", r, n))
		}
	}
	for r, n := range by { // a reason of a newer daemon
		if n > 0 && !slices.Contains(restartReasons, r) {
			parts = append(parts, fmt.Sprintf("%s %d", sanitize(r), n))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "restarts: " + strings.Join(parts, ", ")
}
