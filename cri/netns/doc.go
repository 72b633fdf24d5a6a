// Package netns makes, pins, enters and removes network namespaces for pods.
//
// A namespace made by New is pinned by a bind mount of the creating thread's
// /proc/thread-self/ns/net onto an empty file dir/<random name>, so it lives
// as long as the mount does, independent of any process: a pod's network
// survives its sandbox process and a restart of berthd, and Load finds it
// again by its path.
//
// Invariants a caller relies on:
//   - No goroutine ever runs in a namespace it did not ask for. New and Do
//     switch namespaces on a locked thread of their own and unlock it only
//     after it is back in the namespace it came from; when going back
//     fails, the thread stays locked and the Go runtime ends it with its
//     goroutine. New does not simply end its thread inside the new
//     namespace: the runtime cannot end the main thread, it parks it for
//     good instead, and a thread parked there would keep a removed pod's
//     namespace (and its interfaces) alive and make /proc/self/ns/net
//     name it.
//   - Remove is idempotent: a pin that is already unmounted, or a file that
//     is already gone, is not an error. It never follows the path into a
//     namespace other than a mount at that path.
//   - New leaves nothing behind when it fails: the pin file is removed.
//
// Do runs fn on one locked OS thread; goroutines fn starts run on other
// threads, in berthd's namespace. Sockets opened by fn stay in the pod's
// namespace after Do returns, so a listener made inside Do may be served
// from anywhere.
package netns
