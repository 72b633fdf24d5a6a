// Package streaming serves the CRI's streaming calls, exec, attach and
// port-forward, over HTTP with SPDY and WebSocket (k8s.io/cri-streaming),
// for the URLs that the RuntimeService's Exec, Attach and PortForward
// return.
//
// Invariants:
//   - A URL is a single-use token that expires a minute after it was
//     handed out; a stream that carries nothing for the idle timeout is
//     closed. The server binds to the configured address (loopback by
//     default) and port (ephemeral by default): the URLs carry no
//     credentials, so only the kubelet's side should reach it.
//   - Exec runs the command as an exec process of the container's task
//     (the client library's FIFO IO), with a pty when tty is asked; the
//     exec process is killed when the client goes away before it exits,
//     and is deleted in every case. A non-zero exit is reported as the
//     exit code, not as an error of the stream.
//   - Attach connects to the init process of a running container: output
//     is read back from the container's CRI log file (or the file of the
//     same format that cri keeps for a container without one), followed
//     from its end (and across a log rotation), since the shim writes the
//     container's output there and keeps no second copy; input goes to the stdin FIFO
//     the shim holds for a container created with stdin. With stdin_once
//     the end of the client's input is the end of the container's stdin.
//   - Port-forward dials the port on the loopback of the pod's network
//     namespace (cri/netns Do), or of the host for a host-network pod; the
//     connection is closed when either side ends.
package streaming
