// Package cio is the client side of a container process's stdio: it makes
// the FIFOs a process's standard streams go through, copies between them and
// the caller's readers and writers, and cleans them up.
//
// A Creator makes the IO of a new process (NewCreator, NullIO, LogFile); an
// Attach reconnects to the FIFOs of a process that exists already, for
// example after the client or the daemon restarted (NewAttach). The IO's
// Config holds the paths sent to the daemon: FIFO paths, "file://" URIs, or
// empty for none.
//
// Invariants:
//   - A Creator makes its FIFOs in a folder of their own under the FIFO dir
//     (DefaultFIFODir unless WithFIFODir), created 0700, and only for the
//     streams it was given: a nil writer means no FIFO and the shim discards
//     that stream.
//   - Output FIFOs are open for reading when a Creator or Attach returns, so
//     the shim (which drops output while no reader is present, see
//     io/stdio) delivers from the first byte on.
//   - An output copier ends when the shim's writer has come and gone and the
//     FIFO is empty, or after Cancel once the FIFO is empty. Wait returns
//     when every output copier has ended; it never waits for stdin.
//   - Stdin is copied until the caller's reader ends, then the FIFO end is
//     closed. The shim holds the stdin FIFO open itself, so a client that
//     closes its end or goes away (a detach, a crash) is no EOF for the
//     process: its stdin ends only with CloseIO (see io/stdio). For the IO
//     of a Creator, the end of the caller's reader (io.EOF, nothing else)
//     is reported through OnStdinEOF, and the client library then calls
//     CloseIO: piping into a process ends its input as before. The stdin
//     of an Attach just lets go: the process keeps its stdin for the next
//     client. A copier blocked in the caller's reader (os.Stdin, say) ends
//     at its next read after Close.
//   - Close cancels, waits for the copiers, closes every FIFO end it holds
//     and removes the FIFOs and their folder. It is safe to call more than
//     once.
//   - The FIFOs of a task's processes made in the daemon's own FIFO dir
//     (<state>/.fifo, the default) are also removed by the daemon when it
//     deletes the process or the task, since a daemon crash can cut the
//     client's delete after the process is gone (RemoveCreatorFIFOs).
//     FIFOs made elsewhere are the client's alone.
//   - Writers given for stdout and stderr are never written to by two
//     goroutines at once, so one writer may serve both.
package cio
