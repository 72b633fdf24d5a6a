// Package cri serves the Kubernetes Container Runtime Interface (CRI v1,
// k8s.io/cri-api): the RuntimeService and ImageService, over gRPC, for the
// kubelet, crictl and critest.
//
// The CRI is a client of berthd's own services: every call goes through
// the Go client library (client.Client) over a connection to the daemon's
// ttrpc server in the same process, so pods, containers and images take
// the same code paths (validation, locks, events, GC) as any other client.
// Everything lives in the berth namespace "k8s.io" (Namespace), so
// `berthctl -n k8s.io` shows it.
//
// Invariants:
//   - A pod sandbox and a CRI container are each one berth container whose
//     record carries the CRI's own record (RecordExtension, JSON) and the
//     labels KindLabel and SandboxLabel. Those records are the CRI's durable
//     state, in berthd's bbolt database: a restarted berthd rebuilds its
//     in-memory index from them (Server.Load).
//   - A CRI container's exit (code, time, reason) is written to its record
//     before its task is deleted, so it is reported even after the shim is
//     gone.
//   - A container's output is written by its shim, in the CRI log format,
//     to its CRI log, or when it was created without a log path to a file
//     of berthd's in the state folder (outputPath), rotated past a size and
//     removed with the container: Attach always has output to follow, and
//     no output waits for berthd to read it.
//   - An image mount (a CRI Mount with an image, KEP-4639) is a read-only
//     view snapshot of the image, held by a lease of its container's, and
//     mounted read-only, nosuid and nodev in a folder only root can reach
//     before it is bound into the container: nothing the container can
//     change is reachable by others on the host. It lives exactly as long
//     as the container's record, across restarts of berthd
//     (imagemounts.go).
//   - Security contexts become spec options in security.go only, and only
//     through package oci's options, so a container gets no privilege
//     berthd lacks (capabilities, oom_score_adj) and runtime/default is
//     berth's one shipped seccomp profile. A privileged container needs a
//     privileged pod.
//   - Stop and remove are idempotent: stopping or removing what is already
//     stopped or gone is not an error, as the CRI requires.
//   - Calls that change one sandbox or container are serialised by that
//     object's lock; the index (Server.mu) is held only to look up, add or
//     drop an entry, never across a call to the daemon.
package cri
