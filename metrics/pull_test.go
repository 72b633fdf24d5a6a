package metrics

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/berthrt/berth/distribution"
)

// TestPullBytesHostsBounded counts bytes from more hosts than
// maxPullHosts: each of the first keeps its series, the rest add up under
// "other", and no byte is lost.
func TestPullBytesHostsBounded(t *testing.T) {
	p := newPullBytes()
	const hosts = maxPullHosts + 10
	for i := range hosts {
		host := fmt.Sprintf("registry-%d.test:5000", i)
		p.fetched(host, distribution.FetchBlob, 100)
		p.fetched(host, distribution.FetchManifest, 1)
	}
	if n := seriesCount(t, p.counter); n != 2*(maxPullHosts+1) {
		t.Errorf("%d series, want %d", n, 2*(maxPullHosts+1))
	}
	if v := value(t, p.counter.WithLabelValues("registry-0.test:5000", "blob")); v != 100 {
		t.Errorf("first host's blob bytes = %v, want 100", v)
	}
	if v := value(t, p.counter.WithLabelValues(otherHost, "blob")); v != 100*(hosts-maxPullHosts) {
		t.Errorf("other's blob bytes = %v, want %v", v, 100*(hosts-maxPullHosts))
	}
	// A host that has its series keeps it after the bound is reached.
	p.fetched("registry-1.test:5000", distribution.FetchBlob, 5)
	if v := value(t, p.counter.WithLabelValues("registry-1.test:5000", "blob")); v != 105 {
		t.Errorf("second host's blob bytes = %v, want 105", v)
	}
}

func seriesCount(t *testing.T, c prometheus.Collector) int {
	t.Helper()
	ch := make(chan prometheus.Metric, 1024)
	c.Collect(ch)
	close(ch)
	return len(ch)
}

func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
