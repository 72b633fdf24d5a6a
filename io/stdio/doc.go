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
//   - Nothing asked: the process's stream is /dev/null.
//
// Stdin: the shim opens the FIFO for reading and copies into the process
// until the writer closes it or CloseStdin is called; then the process reads
// EOF (for a pty, the shim writes the terminal's EOF character instead of
// closing it, since closing a pty hangs up the session).
package stdio
