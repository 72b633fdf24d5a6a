// Package client is the Go client library of berthd, in the shape
// containerd's users know:
//
//	c, err := client.New("/run/berth/berth.sock", client.WithDefaultNamespace("ci"))
//	ctr, err := c.NewContainer(ctx, "job-1", client.WithNewSpec(oci.WithProcessArgs("make")))
//	task, err := ctr.NewTask(ctx, cio.NewCreator(cio.WithStdio))
//	exitc, err := task.Wait(ctx) // before Start
//	err = task.Start(ctx)
//	st := <-exitc
//
// Invariants:
//   - Every call carries a namespace: the context's (namespaces.WithNamespace)
//     or else the client's default. A call never picks one on the daemon's
//     side.
//   - Errors keep their class across the wire: errors.Is(err,
//     errdefs.ErrNotFound) works on what any method returns.
//   - A Task or Process holds its IO; Delete cleans it up after the daemon
//     has deleted the process, so no output is lost and no FIFO is left.
//   - Every goroutine the package starts ends with the context it was given
//     (Wait, Subscribe) or with Client.Close.
package client
