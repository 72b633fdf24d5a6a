// Package metrics is berthd's Prometheus endpoint: per-container cgroup
// metrics from the shims, the daemon's own (API calls, shims, restore,
// garbage collection), and the Go runtime's and the process's. It is
// daemon side: it reads tasks through the Tasks it is given, never
// through a store.
//
// # The cost of a scrape
//
// A scrape never calls a shim itself. Container metrics come from a cache
// that one scrape at a time refreshes when it is older than MinInterval
// (so that however often Prometheus scrapes, each shim answers Stats at
// most once per interval), asking at most Concurrency shims at once, each
// bounded by ShimTimeout. A shim that does not answer in time is left out
// of that refresh and counted in berth_metrics_stats_errors_total; the
// refresh's duration is berth_metrics_stats_refresh_seconds. A Stats call
// is served by the shim's own ttrpc server beside its other calls and
// reads a few cgroup files: it never waits on a container start, and a
// start never waits on it.
package metrics
