// Package oci builds OCI runtime specs (config.json) for berth's containers.
//
// GenerateSpec returns a default Linux spec for a container and applies
// SpecOpts to it in order; each option changes one concern of the spec.
//
// Invariants:
//   - The default spec runs as root with the default capability set (the
//     one containerd and Docker grant), in new pid, ipc, uts, mount and
//     network namespaces, with a deny-all device cgroup that allows only the
//     usual character devices, and with /proc and /sys paths masked or
//     read-only as is common. An option may loosen this only by name
//     (WithHostNamespace, WithMounts, …).
//   - GenerateSpec accepts only valid identifiers (package identifiers) as
//     namespace and id, so neither can reach outside /berth in the cgroup
//     path. The hostname is the id, cut to the kernel's 64 bytes.
//   - The default spec shares no slices or maps with package state: options
//     may change it in place.
//   - Options tolerate a spec built elsewhere: they create the Process,
//     Linux and Resources sections they need.
//   - Invalid input fails the option, never silently changes the spec; its
//     error names what is wrong and wraps errdefs.ErrInvalidArgument.
//   - A mount's destination is unique in the spec: a mount added for a
//     destination that already has one replaces it in place.
//   - User and group names (WithUser, WithImageConfig) are read from the
//     container's own /etc/passwd and /etc/group, opened inside its root
//     filesystem (no "..", symlink or rename race leads out of it; only
//     regular files are read, of bounded size); the package never mounts:
//     a client lends a mounted root through ContextWithRootFS.
//   - Security options never grant more than berthd holds: "ALL"
//     capabilities and WithPrivileged mean berthd's own effective set, and
//     WithOOMScoreAdj with restrict never goes below berthd's own score,
//     so a container never fails for a privilege the daemon lacks.
//   - What the host does not enforce is left to the host: an SELinux label
//     is dropped where SELinux is off; an AppArmor profile asked for by
//     name fails where AppArmor is off (it is a confinement the caller
//     relies on).
//   - berth's default seccomp profile (DefaultSeccomp) is an allowlist
//     fitted to the container's bounding set: a capability granted also
//     allows the syscalls it governs. A profile file is bounded (1 MiB),
//     read as a regular file only, and every unknown action or operator
//     fails with its place in the file.
package oci
