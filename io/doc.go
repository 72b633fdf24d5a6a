// Package io is the home of berth's stdio plumbing. Its subpackages:
//
//   - stdio: the shim side. Connects a container process's standard
//     streams to FIFOs, files or a pty.
package io
