package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthrt/berth/distribution"
)

// maxPullHosts bounds the registry label of berth_pull_bytes_total: the
// hosts a pull reaches are named by its callers, so the first
// maxPullHosts hosts get a series each and the rest share otherHost.
const maxPullHosts = 32

// otherHost is the registry label of the hosts beyond maxPullHosts.
const otherHost = "other"

// pullBytes counts the bytes pulls read from registries.
type pullBytes struct {
	counter *prometheus.CounterVec

	mu    sync.Mutex          // guards hosts
	hosts map[string]struct{} // the hosts with their own series, at most maxPullHosts
}

func newPullBytes() *pullBytes {
	return &pullBytes{
		counter: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "pull_bytes_total",
			Help: "Bytes of manifests and blobs that pulls read from registries, by the host that sent them (the first " +
				"32 hosts; \"other\" beyond) and kind (manifest, blob).",
		}, []string{"registry", "kind"}),
		hosts: map[string]struct{}{},
	}
}

// fetched is a distribution.FetchedFunc.
func (p *pullBytes) fetched(host string, kind distribution.FetchKind, n int) {
	p.counter.WithLabelValues(p.label(host), string(kind)).Add(float64(n))
}

// label is host's registry label.
func (p *pullBytes) label(host string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.hosts[host]; ok {
		return host
	}
	if len(p.hosts) >= maxPullHosts {
		return otherHost
	}
	p.hosts[host] = struct{}{}
	return host
}
