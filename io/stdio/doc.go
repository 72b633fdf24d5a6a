// Package stdio connects a container process's standard streams, inside the
// shim, to what the client asked for: FIFOs the client made, files, or a pty
// received over the runtime's console socket.
//
// What happens to output (stdout, stderr, or a pty's output):
//
//   - The shim always drains the process's output, so the process never
//     blocks or dies because nobody reads.
//   - To a FIFO: while a reader has the FIFO open, output is written to it
//     with the FIFO's back-pressure, like a pipe (a slow reader slows the
//     writer). While no reader has it open, output is discarded; the shim
//     opens the FIFO again on the next output once a reader is back (for
//     example a restarted daemon re-attaching). A client must therefore open
//     the read side of a FIFO before it asks the shim to create the process,
//     or lose the first output.
//   - To "file://PATH": appended to the file; never blocks on a reader.
//   - To "crilog://PATH": appended to the file (O_APPEND, 0640; its folder
//     must exist) in the CRI log format, one entry a line:
//     "<RFC3339Nano time> <stdout|stderr> <P|F> <content>\n". A line longer
//     than 16 KiB (the kubelet's limit) is split into P entries of 16 KiB
//     and a last F entry; an unfinished line is written as a P entry once
//     the stream was quiet for 100 ms (a prompt, "echo -n": readers of the
//     log such as an attach see it without waiting for a newline), and as
//     F when the output ends. When stdout and stderr name the same crilog path they
//     share one file, and their entries interleave by whole entries, each
//     stream's in order. With a terminal only stdout exists (tagged
//     stdout). The shim holds the file, so logging goes on while no daemon
//     runs; ReopenLog opens the path anew for log rotation. Like a file,
//     it costs the process no more than a write to the disk.
//   - Nothing asked: the process's stream is /dev/null.
//
// Stdin: the shim opens the FIFO for reading and, as containerd's shim
// does, for writing too, and holds that writer until CloseStdin. Clients
// therefore come and go without ending the process's stdin: a client that
// closes its end, detaches or dies (an attached berthctl killed, a daemon
// restarting) is no EOF, and the next client that opens the FIFO for
// writing types into the same process. The process's stdin ends only
//
//   - at CloseStdin (the shim API's CloseIO with stdin): the shim lets go of
//     its writer and the process reads what the FIFO holds at that moment,
//     then EOF. A client ending its input (the end of a pipe into `run -i`)
//     writes everything, closes its end, then calls CloseIO, so nothing it
//     wrote is lost; the client library does that for the IO of a
//     cio.Creator;
//   - or when the process has exited, or the process or its IO is deleted
//     (EndStdin, Close): what the FIFO still holds is dropped.
//
// Ending stdin closes the pipe into the process; for a pty, the shim writes
// the terminal's EOF character instead of closing it, since closing a pty
// hangs up the session.
package stdio
