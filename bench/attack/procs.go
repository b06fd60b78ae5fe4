package main

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// A procGroup names some processes of a server: the trees under Roots
// (the roots and all their descendants), those whose command line matches
// Match when it is set. It is resolved again at every sample, so a
// process that a supervisor replaces is followed.
type procGroup struct {
	Name  string
	Roots []int
	Match *regexp.Regexp
}

// parseGroup reads NAME=PID[,PID...][~REGEX].
func parseGroup(s string) (procGroup, error) {
	name, rest, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return procGroup{}, fmt.Errorf("%q: want NAME=PID[,PID...][~REGEX]", s)
	}
	g := procGroup{Name: name}
	pids, re, hasRe := strings.Cut(rest, "~")
	if hasRe {
		m, err := regexp.Compile(re)
		if err != nil {
			return procGroup{}, fmt.Errorf("%q: %w", s, err)
		}
		g.Match = m
	}
	for _, p := range strings.Split(pids, ",") {
		pid, err := strconv.Atoi(p)
		if err != nil || pid <= 1 {
			return procGroup{}, fmt.Errorf("%q: %q is not a usable pid", s, p)
		}
		g.Roots = append(g.Roots, pid)
	}
	return g, nil
}

// groupFlags collects repeated -mem flags.
type groupFlags []procGroup

func (g *groupFlags) String() string { return fmt.Sprint(len(*g), " groups") }

func (g *groupFlags) Set(s string) error {
	pg, err := parseGroup(s)
	if err != nil {
		return err
	}
	*g = append(*g, pg)
	return nil
}

// procUsage is what a group's processes hold at one moment.
type procUsage struct {
	RSSKB int64 `json:"rss_kb"`
	FDs   int   `json:"fds"`
	Procs int   `json:"procs"`
	Pids  []int `json:"-"`
}

// procTable is one reading of /proc: every process's parent.
type procTable map[int]int // pid -> ppid

func readProcTable() procTable {
	t := procTable{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return t
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := parentOf(pid); ok {
			t[pid] = ppid
		}
	}
	return t
}

// parentOf reads the ppid from /proc/PID/stat (after the last ')': the
// command name may hold spaces and parentheses).
func parentOf(pid int) (int, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 || f[0] == "Z" {
		return 0, false // a zombie holds no memory worth counting
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}

// members returns the pids of g in t.
func (t procTable) members(g procGroup) []int {
	children := map[int][]int{}
	for pid, ppid := range t {
		children[ppid] = append(children[ppid], pid)
	}
	seen := map[int]bool{}
	var out []int
	todo := append([]int(nil), g.Roots...)
	for len(todo) > 0 {
		pid := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		if _, alive := t[pid]; !alive {
			continue
		}
		todo = append(todo, children[pid]...)
		if g.Match == nil || g.Match.MatchString(cmdline(pid)) {
			out = append(out, pid)
		}
	}
	return out
}

func cmdline(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
}

// usageOf sums the resident memory and open descriptors of pids.
func usageOf(pids []int) procUsage {
	u := procUsage{Procs: len(pids), Pids: pids}
	for _, pid := range pids {
		u.RSSKB += statusKB(pid, "VmRSS")
		if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
			u.FDs += len(fds)
		}
	}
	return u
}

// statusKB returns the number on the "key:" line of /proc/PID/status.
func statusKB(pid int, key string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}
