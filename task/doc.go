// Package task is the shim's side of a container: the berth.shim.v1 Task
// service (Service) over one container's init process and its exec
// processes, each an explicit state machine (state.go) whose transitions
// call the OCI runtime through go-runc.
//
// # Files
//
//	service.go   the Task API: look up the process, run its transition, publish
//	create.go    Create, in steps that each undo themselves on failure
//	state.go     the lifecycle as a transition table, TransitionError
//	process.go   one process: its state, pid, exit, stdio, waiters
//	actions.go   the runtime calls behind each transition (init, exec)
//	exits.go     exit routing: from the reaper to the process by pid
//	events.go    the event queue, kept until the daemon acknowledges
//	release.go   deleting the runtime's container and unmounting the rootfs
//	             after the init's exit: on Delete, or eagerly (cleanup_on_exit)
//
// Subpackages: reaper (the one owner of wait4 in the shim) and
// internal/cgroup (metrics and OOM notification from the container's
// cgroup, read by hand; its doc says why).
//
// # Invariants
//
//   - One goroutine turns exits into process exits (handleExits); it never
//     waits for a process's lock while holding Service.mu. An exit reaped
//     while the runtime call that starts its process is still under way is
//     held by an exitWatch and matched once the pid is known (settle), so
//     no exit is lost to the fork/register race, however fast the process.
//   - Every transition of a process holds its mu, so the runtime call
//     behind one runs alone for that process; actions therefore never wait
//     for an exit to be handled.
//   - Runtime calls outlive the caller that asked for them
//     (context.WithoutCancel): a half-made or half-deleted container is
//     worse than a late answer. They do not outlive the shim: Shutdown
//     ends them, each with its process group (what a runtime wrapper
//     started dies too), and the shim exits only once they are reaped
//     (reaper.EndCommands); one left by a shim that died anyway carries
//     the bundle in its environment, where berth-shim delete finds it.
//     The container's processes are never signalled for this: the group
//     of a call is killed only while the call runs.
//   - The init process's exit is persisted to the bundle's exit file
//     (shimapi.ExitFileName) before it is reported, and the file is removed
//     only when init is deleted: a daemon that restarts in between still
//     learns the exit.
//   - The container is released (runtime delete, rootfs unmounted) by one
//     owner at a time and, once that succeeded, never again (release).
//     With cleanup_on_exit the shim releases it as soon as the init's exit
//     is persisted and published, never before, and only when no exec
//     process runs; Delete waits for a release under way (bounded by its
//     caller), retries one that failed, and reports the exit as without
//     the option. A runtime that no longer knows the container counts as
//     released, so berth-shim delete after a crash in between finishes it.
//   - An exit event is published after the process's output is delivered
//     (bounded by outputDrainTimeout) and is never dropped from the event
//     queue; other events may be, oldest first, when no daemon reads them.
//   - A Create that fails leaves nothing behind: the rootfs is unmounted,
//     the stdio closed, the runtime's container force-deleted, and the init
//     slot free for another Create.
//   - The shim works on without a daemon: events queue until acknowledged.
package task
