package main

import (
	"slices"
	"time"
)

// Latencies summarises a set of request durations.
type Latencies struct {
	N     int     `json:"n"`
	P50ms float64 `json:"p50_ms"`
	P90ms float64 `json:"p90_ms"`
	P99ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
}

// summarize returns the nearest-rank percentiles of ds; the zero value
// when ds is empty. ds is sorted in place.
func summarize(ds []time.Duration) Latencies {
	if len(ds) == 0 {
		return Latencies{}
	}
	slices.Sort(ds)
	return Latencies{
		N:     len(ds),
		P50ms: ms(percentile(ds, 50)),
		P90ms: ms(percentile(ds, 90)),
		P99ms: ms(percentile(ds, 99)),
		MaxMs: ms(ds[len(ds)-1]),
	}
}

// percentile of sorted, non-empty ds by nearest rank: the smallest value
// with at least p % of the values at or below it.
func percentile(ds []time.Duration, p int) time.Duration {
	rank := (p*len(ds) + 99) / 100 // ceil(p/100 * n)
	if rank < 1 {
		rank = 1
	}
	return ds[rank-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
