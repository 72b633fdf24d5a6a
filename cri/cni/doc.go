// Package cni wires pods' network namespaces through CNI plugins, on
// containerd's go-cni over libcni.
//
// A Network holds the loopback network and the first network config (by
// file name) in Config.ConfDir. Setup runs CNI ADD for loopback and then
// for that network, in that order, with the pod's Kubernetes CNI_ARGS
// (K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_UID,
// K8S_POD_INFRA_CONTAINER_ID), its port mappings as the portMappings
// capability (for the portmap plugin) and its cgroup parent as cgroupPath.
//
// Invariants a caller relies on:
//   - The conf dir is read again when it changed (names, sizes and times of
//     its config files), at Status and at Setup, so a config dropped in
//     after berthd started makes the network ready without a restart.
//   - Setup leaves nothing behind when it fails: what the plugins added is
//     deleted again (CNI DEL on a context of its own).
//   - Teardown is idempotent and works when the namespace is gone: the
//     plugins then get no CNI_NETNS, and IPAM reservations are released
//     all the same. Plugins that learn what to undo from the interface in
//     the namespace cannot undo it then: Debian's bridge plugin (1.1.1)
//     leaves its ipMasq chain behind. Tear down before removing the
//     namespace; Teardown after it is the recovery path (a crash).
//   - Every plugin run is bounded: a context without a deadline gets
//     pluginTimeout.
package cni
