package cgroup

import (
	"errors"
	"fmt"
	"math/big"
	"os"
	"strconv"
	"strings"
	"time"
)

// Limits are what the kernel enforces on a group. The zero value of each
// field is "no limit" (the kernel's default), and Apply writes that
// default too, so a limit taken out of the config is lifted at the next
// Apply. Byte sizes are parsed by config.ParseSize; the other helpers are
// here.
type Limits struct {
	MemoryMax  int64  // memory_max: bytes; the kernel OOM-kills in the group above it
	MemoryHigh int64  // memory_high: bytes; the kernel throttles and reclaims above it
	CPUWeight  int    // cpu_weight: 1–10000, share of contended CPU (default 100)
	CPUMax     CPUMax // cpu_max: a hard cap on CPU time
	TasksMax   int64  // tasks_max: processes and threads together
	IOWeight   int    // io_weight: 1–10000 (default 100); v2 only
}

// CPUMax is a CPU bandwidth cap: Quota of CPU time per Period. The zero
// value is no cap.
type CPUMax struct {
	Quota  time.Duration
	Period time.Duration
}

// The kernel's period when none is asked for, and its smallest quota.
// A cap is written with shortPeriod when its quota fits (at least 1 ms, in
// whole microseconds): the kernel lets a capped group spend its quota at
// the start of each period on every CPU at once, so with 100 ms a group
// of busy processes at "20%" holds both CPUs for up to 20 ms per period,
// and a neighbour's request caught in that window waits for it
// (docs/benchmarks.md, "A CPU-spinning neighbour"). 10 ms keeps such a
// burst to 2 ms for the same share.
const (
	defaultPeriod = 100 * time.Millisecond
	shortPeriod   = 10 * time.Millisecond
	minQuota      = time.Millisecond
	maxPercent    = 100000 // 1000 CPUs: anything above is a typo
)

// ParseCPUMax parses cpu_max: a percentage of one CPU, "50%", "12.5%",
// "200%" (two CPUs), over a 10 ms period when the quota fits it (at
// least 1 ms in whole microseconds), else 100 ms; "max" is no cap. At most three
// decimals (the kernel counts microseconds), at least 1% (its smallest
// quota is 1 ms). The error text never names the key; callers add that.
func ParseCPUMax(s string) (CPUMax, error) {
	t := strings.TrimSpace(s)
	if t == "max" {
		return CPUMax{}, nil
	}
	num, ok := strings.CutSuffix(t, "%")
	num = strings.TrimSpace(num)
	r, okNum := new(big.Rat).SetString(num)
	if !ok || !okNum || num == "" || strings.ContainsAny(num, "eE/+-") {
		return CPUMax{}, fmt.Errorf("%q is not a CPU share; use a percentage of one CPU, like %q (or \"max\")", s, "50%")
	}
	// percent × period / 100, in microseconds: 1% of 100 ms is 1000 µs.
	us := new(big.Rat).Mul(r, big.NewRat(defaultPeriod.Microseconds(), 100))
	if !us.IsInt() {
		return CPUMax{}, fmt.Errorf("%q has too many decimals; the kernel counts microseconds, so at most 3", s)
	}
	if us.Cmp(big.NewRat(minQuota.Microseconds(), 1)) < 0 {
		return CPUMax{}, fmt.Errorf("%q is below the kernel's smallest share; use at least %q", s, "1%")
	}
	if r.Cmp(big.NewRat(maxPercent, 1)) > 0 {
		return CPUMax{}, fmt.Errorf("%q is more than %d CPUs; use at most %q", s, maxPercent/100, strconv.Itoa(maxPercent)+"%")
	}
	// The same share over the short period, when the kernel can count it.
	short := new(big.Rat).Mul(r, big.NewRat(shortPeriod.Microseconds(), 100))
	if short.IsInt() && short.Cmp(big.NewRat(minQuota.Microseconds(), 1)) >= 0 {
		return CPUMax{Quota: time.Duration(short.Num().Int64()) * time.Microsecond, Period: shortPeriod}, nil
	}
	return CPUMax{Quota: time.Duration(us.Num().Int64()) * time.Microsecond, Period: defaultPeriod}, nil
}

// IsZero reports whether c is no cap.
func (c CPUMax) IsZero() bool { return c.Quota <= 0 }

// String renders c as the config writes it: "50%", "12.5%", "max".
func (c CPUMax) String() string {
	if c.IsZero() || c.Period <= 0 {
		return "max"
	}
	pct := new(big.Rat).SetFrac64(c.Quota.Microseconds()*100, c.Period.Microseconds())
	return strings.TrimSuffix(strings.TrimRight(pct.FloatString(3), "0"), ".") + "%"
}

// v2 is cpu.max's content: "QUOTA PERIOD" in microseconds, "max PERIOD".
func (c CPUMax) v2() string {
	if c.IsZero() {
		return "max " + strconv.FormatInt(defaultPeriod.Microseconds(), 10)
	}
	return strconv.FormatInt(c.Quota.Microseconds(), 10) + " " + strconv.FormatInt(c.period().Microseconds(), 10)
}

func (c CPUMax) period() time.Duration {
	if c.Period <= 0 {
		return defaultPeriod
	}
	return c.Period
}

// CheckWeight checks a cpu_weight or io_weight: 1 to 10000, as cgroup v2
// takes it.
func CheckWeight(n int64) error {
	if n < 1 || n > 10000 {
		return fmt.Errorf("%d is not a weight; use 1 to 10000 (100 is the default share)", n)
	}
	return nil
}

// SharesForWeight maps a v2 weight to v1 cpu.shares the way systemd
// does (CPUWeight= on a v1 host): weight×1024/100, so the default 100 is
// v1's default 1024; clamped to v1's 2–262144. 0 is the default, 1024.
func SharesForWeight(w int) int64 {
	if w <= 0 {
		return 1024
	}
	return min(max(int64(w)*1024/100, 2), 262144)
}

// maxTasks is the largest pids.max the kernel takes (PID_MAX_LIMIT).
const maxTasks = 4 << 20

// CheckTasksMax checks a tasks_max: 1 to 4194304 (the kernel's largest
// pid count). Threads count: a worker with 8 threads is 9 tasks.
func CheckTasksMax(n int64) error {
	if n < 1 || n > maxTasks {
		return fmt.Errorf("%d is not a task count; use 1 to %d", n, maxTasks)
	}
	return nil
}

// ErrUnsupported is what an UnsupportedError is (errors.Is).
var ErrUnsupported = errors.New("not supported by this host's cgroups")

// UnsupportedError is a limit that was asked for and that the host's
// cgroups cannot enforce: Key is the app key, Missing what the host lacks.
type UnsupportedError struct {
	Key     string // "memory_max"
	Missing string // "no memory controller: …"
}

func (e *UnsupportedError) Error() string {
	return e.Key + " is not enforced: " + e.Missing
}

// Is makes errors.Is(err, ErrUnsupported) true.
func (e *UnsupportedError) Is(target error) bool { return target == ErrUnsupported }

// limitKeys is each app key with the controller that enforces it, in the
// order Apply writes them.
var limitKeys = []struct{ key, controller string }{
	{"memory_max", "memory"},
	{"memory_high", "memory"},
	{"cpu_weight", "cpu"},
	{"cpu_max", "cpu"},
	{"tasks_max", "pids"},
	{"io_weight", "io"},
}

// set reports whether l asks for key.
func (l Limits) set(key string) bool {
	switch key {
	case "memory_max":
		return l.MemoryMax > 0
	case "memory_high":
		return l.MemoryHigh > 0
	case "cpu_weight":
		return l.CPUWeight > 0
	case "cpu_max":
		return !l.CPUMax.IsZero()
	case "tasks_max":
		return l.TasksMax > 0
	case "io_weight":
		return l.IOWeight > 0
	}
	return false
}

// fileWrite is one value for one control file.
type fileWrite struct{ file, value string }

func bytesOr(n int64, none string) string {
	if n <= 0 {
		return none
	}
	return strconv.FormatInt(n, 10)
}

// v2Files is what key of l writes in a v2 group.
func (l Limits) v2Files(key string) []fileWrite {
	switch key {
	case "memory_max":
		return []fileWrite{{"memory.max", bytesOr(l.MemoryMax, "max")}}
	case "memory_high":
		return []fileWrite{{"memory.high", bytesOr(l.MemoryHigh, "max")}}
	case "cpu_weight":
		return []fileWrite{{"cpu.weight", strconv.Itoa(weightOr100(l.CPUWeight))}}
	case "cpu_max":
		return []fileWrite{{"cpu.max", l.CPUMax.v2()}}
	case "tasks_max":
		return []fileWrite{{"pids.max", bytesOr(l.TasksMax, "max")}}
	case "io_weight":
		return []fileWrite{{"io.weight", "default " + strconv.Itoa(weightOr100(l.IOWeight))}}
	}
	return nil
}

// v1Files is what key of l writes in a v1 group; nil for io_weight,
// which pyhost does not map to v1.
func (l Limits) v1Files(key string) []fileWrite {
	switch key {
	case "memory_max":
		return []fileWrite{{"memory.limit_in_bytes", bytesOr(l.MemoryMax, "-1")}}
	case "memory_high":
		return []fileWrite{{"memory.soft_limit_in_bytes", bytesOr(l.MemoryHigh, "-1")}}
	case "cpu_weight":
		return []fileWrite{{"cpu.shares", strconv.FormatInt(SharesForWeight(l.CPUWeight), 10)}}
	case "cpu_max":
		// The period first: the quota is checked against it.
		quota := "-1"
		if !l.CPUMax.IsZero() {
			quota = strconv.FormatInt(l.CPUMax.Quota.Microseconds(), 10)
		}
		return []fileWrite{
			{"cpu.cfs_period_us", strconv.FormatInt(l.CPUMax.period().Microseconds(), 10)},
			{"cpu.cfs_quota_us", quota},
		}
	case "tasks_max":
		return []fileWrite{{"pids.max", bytesOr(l.TasksMax, "max")}}
	}
	return nil
}

func weightOr100(w int) int {
	if w <= 0 {
		return 100
	}
	return w
}

// Looser returns, key by key, the looser of l and o: the higher memory,
// task and CPU cap (none being the highest), and o's weights. A reload
// writes it while old and new workers run side by side, so that neither
// generation is OOM-killed (v2) or refused (v1: EBUSY) for a limit meant
// for the new one alone; the new limits go in once the old workers are
// gone.
func (l Limits) Looser(o Limits) Limits {
	out := o
	out.MemoryMax = looserBytes(l.MemoryMax, o.MemoryMax)
	out.MemoryHigh = looserBytes(l.MemoryHigh, o.MemoryHigh)
	out.TasksMax = looserBytes(l.TasksMax, o.TasksMax)
	if l.CPUMax.IsZero() || o.CPUMax.IsZero() {
		out.CPUMax = CPUMax{}
	} else if float64(l.CPUMax.Quota)/float64(l.CPUMax.period()) > float64(o.CPUMax.Quota)/float64(o.CPUMax.period()) {
		out.CPUMax = l.CPUMax
	}
	return out
}

// looserBytes is the higher of two caps, 0 (none) being the highest.
func looserBytes(a, b int64) int64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	return max(a, b)
}

// MemoryLimits tells apart, for pyctl status, the memory limit in force
// in a group whose figures are st and the one last asked for there: v1
// refuses to lower memory.limit_in_bytes below what the group uses
// (EBUSY), and the supervisor retries it as workers exit, so for a while
// the kernel enforces the old one. inForce is the kernel's (asked, when
// the host does not say); pending is asked while the kernel holds
// another, else 0. The kernel keeps limits in whole pages, rounded down.
func MemoryLimits(asked int64, st Stats) (inForce, pending int64) {
	if st.Have&HaveMemoryMax == 0 {
		return asked, 0
	}
	page := int64(os.Getpagesize())
	if asked > 0 && asked/page*page != st.MemoryMax {
		return st.MemoryMax, asked
	}
	return st.MemoryMax, 0
}
