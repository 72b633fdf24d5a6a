// Package shimapi is the contract between berthd and a berth-shim process:
// the ttrpc Task service generated from shim.proto, and the bootstrap
// contract below, which says how a shim is started and where it keeps its
// files.
//
// # Bootstrap
//
// The daemon (or any caller) runs
//
//	berth-shim start --namespace NS --id ID --bundle DIR [--runtime NAME|PATH] [--runtime-root DIR]
//
// The bundle folder must exist and hold the container's config.json. The
// start process creates the unix socket <bundle>/shim.sock (mode 0600, a
// file-based socket, never an abstract one), re-executes the shim binary
// detached (a new session, stdin/stdout/stderr on /dev/null, not a child of
// the caller) handing it the listening socket, waits until the new process
// serves calls, prints the socket's absolute path and a newline on stdout,
// and exits 0. When a shim for the bundle is already serving, start prints
// that shim's address and exits 0 without starting another.
//
// The long-lived shim writes, inside the bundle:
//
//	shim.sock   the ttrpc socket (SocketName)
//	shim.pid    its pid, written atomically once it serves (PidFileName)
//	shim.log    its log (LogFileName)
//	exit.json   the init process's exit status, written atomically when
//	            init exits and removed when init is deleted (ExitFileName)
//
// plus whatever the runtime writes to <bundle>/rootfs when it is mounted.
//
// A spare shim is started before its task is known:
//
//	berth-shim start --spare --bundle DIR [--parent-pid PID]
//
// starts a shim the same way in the folder DIR (which holds no config.json
// yet) that serves no container: until bound it answers Connect and
// Shutdown, fails every other call with FailedPrecondition, and exits by
// itself when the process that ran start exits (a pidfd of it is handed
// on; --parent-pid names that process, and start fails when it is no
// longer start's parent), so a spare outlives no daemon. The caller binds
// it by renaming DIR to the task's bundle (socket, pid file and log move
// with it; the bundle's files must be in place before the rename) and
// calling Create with CreateRequest.bind naming that bundle, the
// namespace and the runtime. From then on it is the task's shim like any
// other, except that its command line still names DIR: its working folder
// is the bundle.
//
// berthd starts its spares without start: it does what start does itself
// (internal/shimlaunch, the same code), running `berth-shim serve --spare
// --bundle DIR` with the listening socket on fd 3, the write end of a
// readiness pipe on fd 4 (the shim writes "ready" and a newline once it
// serves) and a pidfd of berthd on fd 5. The spare is then berthd's child,
// in its own session, until berthd exits; berthd reaps it when it exits
// first.
//
// When a shim is gone (killed, crashed), the caller runs
//
//	berth-shim delete --namespace NS --id ID --bundle DIR [--runtime NAME|PATH] [--runtime-root DIR]
//
// which force-deletes the container in the runtime (killing whatever is
// left of it), unmounts the rootfs and prints the persisted exit status as
// JSON (ExitStatus) on stdout; when none was persisted it prints nothing
// and exits 0. It is idempotent.
//
// Only peers with the shim's own uid may call the socket.
package shimapi
