package workerproc

import (
	"fmt"

	"github.com/shirou/gopsutil/v3/process"
)

// Stats are a process's resource figures at one moment.
type Stats struct {
	RSS        uint64  // bytes
	CPUSeconds float64 // user + system since start
}

// Stats reads the worker's RSS and CPU time.
func (p *Process) Stats() (Stats, error) {
	select {
	case <-p.exited:
		return Stats{}, fmt.Errorf("process %d has exited", p.PID())
	default:
	}
	proc, err := process.NewProcess(int32(p.PID()))
	if err != nil {
		return Stats{}, fmt.Errorf("stats of %d: %w", p.PID(), err)
	}
	mem, err := proc.MemoryInfo()
	if err != nil {
		return Stats{}, fmt.Errorf("memory of %d: %w", p.PID(), err)
	}
	times, err := proc.Times()
	if err != nil {
		return Stats{}, fmt.Errorf("cpu of %d: %w", p.PID(), err)
	}
	return Stats{RSS: mem.RSS, CPUSeconds: times.User + times.System}, nil
}
