package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// kernel is every file operation the package does on cgroupfs. Tests
// replace it to lay out a temporary directory as the kernel would (mkdir
// there makes no control files) and to record what was written.
type kernel struct {
	mkdir func(path string) error
	rmdir func(path string) error
	write func(path, value string) error
	read  func(path string) ([]byte, error)
}

var realKernel = kernel{
	mkdir: func(path string) error { return os.Mkdir(path, 0o755) },
	rmdir: func(path string) error {
		if err := unix.Rmdir(path); err != nil {
			return &fs.PathError{Op: "rmdir", Path: path, Err: err}
		}
		return nil
	},
	write: writeFile,
	read:  os.ReadFile,
}

// writeFile writes value to an existing control file in one write(2), as
// cgroupfs wants: a value split over two writes is two values. O_CREAT is
// left out so that a missing file (a controller that is not there) is
// ENOENT rather than an attempt to create one.
func writeFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, werr := f.Write([]byte(value))
	cerr := f.Close()
	if werr != nil {
		// os.File.Write reports "write PATH: errno"; keep the value too,
		// it is what the kernel refused.
		return fmt.Errorf("write %q: %w", value, werr)
	}
	return cerr
}

// parseKeyed parses a flat keyed file ("key value" lines: memory.events,
// cpu.stat, memory.oom_control, cgroup.events). Lines whose value is not
// an integer are skipped.
func parseKeyed(b []byte) map[string]int64 {
	m := make(map[string]int64)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		m[k] = n
	}
	return m
}

// unlimited is what parseValue returns for "max" (v2) and for the v1
// "no limit" figures (memory.limit_in_bytes reads 9223372036854771712 on
// 64-bit, a page-aligned LONG_MAX; cfs_quota_us reads -1).
const unlimited int64 = -1

// parseValue parses a single-value file: an integer, or "max".
func parseValue(b []byte) (int64, error) {
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return unlimited, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("not a number: %q", s)
	}
	if n >= 1<<62 { // v1's page-aligned "unlimited"
		return unlimited, nil
	}
	return n, nil
}

// parsePIDs parses cgroup.procs: one pid a line.
func parsePIDs(b []byte) ([]int, error) {
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("cgroup.procs: not a pid: %q", f)
		}
		pids = append(pids, n)
	}
	return pids, nil
}

// subdirs returns dir's child directories, deepest last-visited first:
// every child before its parent, which is the order rmdir needs.
func subdirs(dir string) ([]string, error) {
	var out []string
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		child := filepath.Join(dir, e.Name())
		below, err := subdirs(child)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		out = append(out, below...)
		out = append(out, child)
	}
	return out, nil
}

// unescapeMount undoes the octal escapes of /proc/self/mountinfo
// (a blank is \040).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
