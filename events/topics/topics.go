// Package topics names the topics of berth's events, in the containerd
// style ("/tasks/exit"). Every publisher and subscriber uses these
// constants, so that a subscriber's filter names the same string as the
// publisher. It imports nothing: the shim publishes task events under these
// topics without linking the daemon's exchange or the filter language.
package topics

// Topics of task events, in the containerd style.
const (
	TaskCreate      = "/tasks/create"
	TaskStart       = "/tasks/start"
	TaskExit        = "/tasks/exit"
	TaskDelete      = "/tasks/delete"
	TaskOOM         = "/tasks/oom"
	TaskExecAdded   = "/tasks/exec-added"
	TaskExecStarted = "/tasks/exec-started"
	TaskPaused      = "/tasks/paused"
	TaskResumed     = "/tasks/resumed"
)

// Topics of metadata events.
const (
	ContainerCreate = "/containers/create"
	ContainerUpdate = "/containers/update"
	ContainerDelete = "/containers/delete"
	NamespaceCreate = "/namespaces/create"
	NamespaceUpdate = "/namespaces/update"
	NamespaceDelete = "/namespaces/delete"
)

// Topics of image events; their payloads are images.v1's ImageCreate,
// ImageUpdate and ImageDelete.
const (
	ImageCreate = "/images/create"
	ImageUpdate = "/images/update"
	ImageDelete = "/images/delete"
)
