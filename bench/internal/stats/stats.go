// Package stats summarizes the samples of a benchmark: quantiles of
// durations, interpolated between neighbours as in most statistics tools.
package stats

import (
	"slices"
	"time"
)

// Samples are the durations measured for one path.
type Samples []time.Duration

// Quantile returns the q-quantile (0 ≤ q ≤ 1), interpolating linearly
// between the two nearest samples; 0 when there are none.
func (s Samples) Quantile(q float64) time.Duration {
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

// Median is the 0.5-quantile.
func (s Samples) Median() time.Duration { return s.Quantile(0.5) }

// P90 is the 0.9-quantile.
func (s Samples) P90() time.Duration { return s.Quantile(0.9) }

// MS converts a duration to milliseconds for printing.
func MS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Ratio divides the medians of a and b; 0 when b has no samples.
func Ratio(a, b Samples) float64 {
	if b.Median() == 0 {
		return 0
	}
	return float64(a.Median()) / float64(b.Median())
}
