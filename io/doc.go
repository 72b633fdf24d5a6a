// Package io is the home of berth's stdio plumbing. Its subpackages:
//
//   - stdio: the shim side. Connects a container process's standard
//     streams to FIFOs, files or a pty.
//   - cio: the client side. Makes the FIFOs and copies between them and a
//     client's readers and writers.
//   - internal/fiforead: the read end of a FIFO that both sides use.
package io
