// Package supervisor is the daemon side of shims: it writes a task's
// bundle, starts a berth-shim for it, connects, forwards the shim's events,
// notices when a shim dies, cleans up after it, and finds every shim again
// when the daemon starts.
//
// The daemon is disposable; the shims are not. Nothing here may stop a
// container or lose an exit: the supervisor never starts a process that
// dies with the daemon (`berth-shim start` is a short-lived child that is
// waited for; the serving copy it re-executes is in its own session and no
// child of ours; a spare shim, which the supervisor starts itself, is in
// its own session too and our child only until we exit, reaped by us when
// it exits first), and Close only stops the supervisor's own goroutines and
// connections.
//
// # On disk
//
// A task's bundle is Config.StateDir/<namespace>/<id>. The bundle is 0700
// (0710 with the group of a user namespace's root, for runc's init in it):
// it holds the container's rootfs, so no host user but root may enter it;
// the folders above are 0711, and Restore tightens those an earlier
// release made looser. The supervisor writes config.json (0600), a
// file "runtime" naming the OCI runtime and "stdio.json", the init
// process's stdio paths, before it starts the shim; the shim owns what shimapi lists
// (socket, pid file, log, exit file, rootfs). The runtime's state root is
// StateDir/.runc/<namespace>: identifiers cannot start with '.', so it never
// clashes with a namespace.
//
// StateDir/.fifo is where clients' Creators make FIFOs by default
// (cio.DefaultFIFODir). The stdio record outlives the shim (a stopped task
// reports its stdio), and removing a bundle, on every path that removes
// one, first removes the FIFOs it names there that a Creator made for the
// task, with their folder: a daemon killed inside a task delete leaves the
// client with an error and no task to ask for the paths, so the daemon
// owns that cleanup. An exec's FIFOs there are recorded in the bundle's
// "exec-fifos" folder before the shim runs the exec, and removed when the
// exec is deleted or with the bundle. Once the first Restore has
// classified the shims, folders there that no bundle records or is named
// for, that no process holds open and that are older than a minute are
// removed too (a client that crashed before its Create). FIFOs anywhere
// else are the client's.
//
// Three markers belong to the supervisor:
//
//	exit-published  the init process's TaskExit was forwarded (Forward
//	                returned nil); written atomically before it is acked.
//	shim-reaped     the shim is gone and the bundle was reduced to what a
//	                stopped task needs (config.json, exit.json, markers,
//	                logs); written last, after the cleanup.
//	task-deleted    Delete deleted the task and its TaskDelete was
//	                forwarded; a Restore that finds it only removes the
//	                bundle (and kills what is left), publishing nothing.
//
// # One shim, one owner
//
// Each running Shim has one goroutine, run, that owns its connection: it
// connects (or reconnects), starts the event loop for that connection, and
// watches for the end. The event loop (one goroutine per connection) reads
// the Events stream, calls EventHandler.Forward and acks. Death is noticed
// two ways: a pidfd of the shim process, polled by the runtime's netpoller,
// becomes readable when it exits (a zombie counts: the shim is usually no
// child of ours and may never be reaped; a shim that was our spare is
// reaped by us once it exits: shimlaunch's Reap), and the ttrpc client's connection closes,
// which makes run check the pid and reconnect if the shim still lives. When
// the shim is dead, run waits for the event loop to end, runs
// `berth-shim delete`, publishes the exit if it was never published, reduces
// the bundle and leaves a stopped Shim whose Exited reports the status.
// Close cancels the context every goroutine watches and waits for them.
//
// # Exactly once
//
// The shim keeps its events until they are acked and persists the init
// exit in exit.json. Forward is called in sequence order and the ack is sent
// only after Forward returned nil, so no event is lost while the shim lives.
// Within one supervisor an event is forwarded at most once (events at or
// below the last forwarded sequence number are acked, not forwarded again).
// Across a daemon restart the window for a duplicate is between Forward
// returning and the ack: the shim sends the event again. For the init exit
// the window is closed by the exit-published marker, written before the
// ack: an init TaskExit that arrives while the marker exists is acked
// without being forwarded, and when the shim dies the exit (from exit.json,
// or 137 synthesized and persisted when there is none) is published only
// when the marker is absent. The only remaining window is a crash between
// Forward returning and the marker's rename: then the exit is published
// twice, never zero times. Events other than the init exit that a shim held
// unacked when it was killed die with it.
//
// # Bounded calls
//
// Every call to a shim ends: one whose context has a deadline keeps it,
// every other but Wait (which lasts as long as the process) gets
// Config.CallTimeout, because ttrpc 1.2 tells a server of a caller's
// deadline but not of its cancellation. No supervisor-wide lock is held
// across a shim call; Delete holds only its shim's deleteMu, and the
// daemon's services only the container's own lock, so a hung runtime holds
// up the calls on its container alone, and those no longer than the
// bound.
//
// # Restore
//
// Restore scans StateDir/<namespace>/<id> (skipping dot entries, files and
// invalid names), registers every bundle at once as a Shim in the restoring
// state (so Get finds it; its Task calls fail with ErrUnavailable), and
// classifies all of them in parallel: a reaped bundle is a stopped task; a
// dial that fails with a missing socket or ECONNREFUSED means dead at once;
// a connection that answers Connect within Config.DialTimeout is running.
// A shim that neither answers nor is provably dead (its pid from shim.pid
// still runs a berth-shim serving this bundle) is retried with backoff in
// the background until it answers or dies. Restore returns when every shim
// is classified (dead shims fully cleaned up) or after Config.RestoreTimeout,
// whichever comes first; what is left goes on in the background, bounded by
// Close.
//
// A bundle is marked creating from its first moment until the shim has
// created the container; Restore removes a bundle that still has the mark
// (killing a shim and a container it may hold), since the Create that made
// it never returned. Removing a bundle removes config.json and the markers
// last, and `berth-shim delete` kills the shim together with every process
// it started (a `runc create` cut short by the daemon's death would go on
// writing into the bundle) and waits for them; a bundle that still lost
// its config.json to a removal that failed half-way, but holds
// `berth-shim delete`'s mark or a shim pid file, is removed again.
//
// A task is never restored half deleted. A shim that answers Connect with
// task_deleted (its container was deleted; Connect waits for a delete under
// way) lost its daemon inside Delete: Restore finishes that Delete (the
// shim's held events forwarded first, then Shutdown and removal) before it
// classifies the task, which is then gone. Delete writes the task-deleted
// marker before the shim's Shutdown once the shim's TaskDelete was
// forwarded. Only when it was not forwarded within deleteEventWait is the
// marker written after the supervisor published the TaskDelete itself; a
// daemon killed in between leaves a task that Restore reports as stopped
// (deleting it again publishes a second TaskDelete). A TaskDelete forwarded
// just before the daemon died, with no marker yet, is published again by
// the next daemon: at least once, never lost.
//
// A Delete whose TaskDelete was forwarded (the marker written) does not
// shut the shim down nor wait for its exit and the bundle's removal: it
// removes the FIFOs a client made for the task, renames the bundle into
// StateDir/.deleted (a dot name: no namespace, skipped by Restore's scan
// and berthd check) and returns; a goroutine that Close waits for then
// shuts the shim down after asideShutdownDelay (after the client's last
// calls: the Shutdown starts the shim's deferred runtime delete), at once
// when a Create of the same name waits or the supervisor closes, waits
// (bounded) for the shim's exit and removes the folder. A shim that died
// before its deferred runtime delete ended (killed, crashed, or killed
// after the wait) leaves the runtime's state folder of the id: then
// `berth-shim delete`, with the set-aside folder as the bundle, deletes
// the container first (runc's forced delete, which removes its cgroups
// too; bounded by Config.CleanupTimeout), unless a bundle of the name
// exists, which owns that state; a folder whose container could not be
// deleted stays for the next Restore. Until then the task's name is
// held: a Create of the same name waits for it (bounded by its context).
// A shim may still be deleting the runtime's container after
// its Delete answered (cleanup_on_exit, task/release.go), and a new
// container of the same id must not meet the old one's runtime state.
// The shim removes its socket and pid file relative to its working
// folder, the bundle wherever it was renamed to, so it never touches a
// new bundle of the same id. Restore removes every folder under .deleted,
// a folder that a shim still serves from (its pid file names a live
// `serve` whose working folder is that folder) in the background once
// that shim, told to shut down (its daemon may have died before it did),
// has exited or, after a while, been killed, and after the runtime's
// container that a dead shim left is deleted as above: a daemon that dies
// at any point leaves nothing there for good. Until then it holds the
// task's name as the daemon that set it aside did (every name the
// folder's name may stand for: identifiers may hold dots; each of them
// with runtime state and no bundle is deleted, a container no task owns
// whichever folder it came from), each name until every folder that may
// stand for it is done. A restored task of such a name that is
// deleted and set aside meanwhile holds the name over that hold and gives
// it back when its own shim is gone: a new task of the name waits for
// both.
//
// # Spare shims
//
// With Config.SpareShims > 0 the supervisor keeps that many shims started
// (`berth-shim serve --spare`, started by the supervisor itself through
// internal/shimlaunch: one process start where `berth-shim start --spare`
// costs two), serving in folders under StateDir/.spare
// and connected, bound to no task, from the end of Restore's wait (spares
// started earlier would compete with the reconnects for the CPU); one
// goroutine refills the pool, off any Create's path, a short while
// (spareRefillDelay) after the Create that took a spare has created its
// container, so that the new spare does not compete for the CPU with a
// short task's exit and delete; the delete of a task cuts that short
// (spareRefillAfterDelete, after the client's last calls), and a Create
// that finds the pool empty has it refilled at once. Close stops a refill
// still waiting. Create takes a
// spare when one is ready (else it starts a shim as before): it writes the bundle's files,
// creating marker included, into the spare's folder, renames the folder to
// the bundle (refusing an existing one) and binds the shim in the Create
// call. A spare holds no container state: an unbound spare exits when the
// daemon that started it exits, and Restore (once per supervisor) removes
// the folders under .spare, killing a spare that still serves there. A
// bundle renamed from a spare is restored like any other; its shim is
// recognized by its working folder, since its command line names the
// spare folder. Close shuts the idle spares down.
package supervisor
