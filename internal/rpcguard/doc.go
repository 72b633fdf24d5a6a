// Package rpcguard guards a ttrpc server against clients that hold
// connections without using them: it caps the connections of each peer
// process and each peer user (from SO_PEERCRED), and closes a connection
// that does not send a whole frame within a bound of its first byte; it
// caps too the connections of each peer process that have sent nothing
// whole yet (connected and silent), so a flood of silent connections is
// refused at accept while a client that connects early and calls late (the
// daemon's client of a proxy snapshotter or of a spare shim) is never cut.
// Listener applies the per-process and per-user caps to a server that is
// not ttrpc (the CRI's gRPC), without the frame bound and silent cap.
//
// # Invariants
//
//   - A connection over a cap is closed at accept, before ttrpc reads a
//     byte of it; the peer's other connections are untouched. A closed
//     connection frees its place in the caps at once.
//   - A connection between frames may stay idle as long as it likes (a
//     client waits for its next call, an events stream for its next
//     event), also before its first frame; only a frame begun and not
//     finished is cut.
//   - The guard parses only the 10-byte frame header of ttrpc's wire
//     format (payload length, stream id, type, flags); ttrpc itself still
//     bounds the payload (4 MiB) and decodes everything.
package rpcguard
