package main

import (
	"slices"
	"time"
)

// samples are the durations measured for one path.
type samples []time.Duration

// quantile returns the q-quantile (0 ≤ q ≤ 1), interpolating linearly
// between the two nearest samples; 0 when there are none.
func (s samples) quantile(q float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	sorted := slices.Clone(s)
	slices.Sort(sorted)
	pos := q * float64(len(sorted)-1)
	lo := int(pos)
	if lo >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	frac := pos - float64(lo)
	return sorted[lo] + time.Duration(frac*float64(sorted[lo+1]-sorted[lo]))
}

func (s samples) median() time.Duration { return s.quantile(0.5) }
func (s samples) p90() time.Duration    { return s.quantile(0.9) }

// ms converts a duration to milliseconds for printing.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
