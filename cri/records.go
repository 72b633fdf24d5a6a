package cri

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/cri/netns"
	"github.com/berthrt/berth/errdefs"
)

const (
	// RecordExtension is the extension of a berth container that holds the
	// CRI's record of it, JSON in a BytesValue.
	RecordExtension = "berth.cri.v1.record"
	// KindLabel marks the berth containers of the CRI: KindSandbox or
	// KindContainer.
	KindLabel     = "berth.cri.kind"
	KindSandbox   = "sandbox"
	KindContainer = "container"
	// SandboxLabel names the sandbox of a CRI container (and of a sandbox,
	// itself), so that `berthctl -n k8s.io containers ls` can filter by pod.
	SandboxLabel = "berth.cri.sandbox-id"
)

// sandboxRecord is the durable state of a pod sandbox.
type sandboxRecord struct {
	ID string `json:"id"`
	// Config is the RunPodSandbox request's config, proto-encoded.
	Config    []byte    `json:"config"`
	CreatedAt time.Time `json:"created_at"`
	// Stopped is set once StopPodSandbox has torn the pod down.
	Stopped bool `json:"stopped,omitempty"`
	// NetNS is the path of the pod's pinned network namespace, empty with
	// host networking or when the runtime made it.
	NetNS string   `json:"netns,omitempty"`
	IPs   []string `json:"ips,omitempty"`
	// NetworkPending is set, before the CNI ADD, until RunPodSandbox has
	// recorded the pod's network: a record that has it after a crash may
	// hold an IP that no record names, which stop (and berthd's start)
	// release with a CNI DEL.
	NetworkPending bool `json:"network_pending,omitempty"`
	// Dir holds resolv.conf, hostname, hosts and the shm mount.
	Dir            string `json:"dir"`
	RuntimeHandler string `json:"runtime_handler,omitempty"`
}

// containerRecord is the durable state of a CRI container.
type containerRecord struct {
	ID        string `json:"id"`
	SandboxID string `json:"sandbox_id"`
	// Config is the CreateContainer request's config, proto-encoded.
	Config []byte `json:"config"`
	// ImageID is the id of the image the container was made from, ImageName
	// the reference the request gave.
	ImageID    string    `json:"image_id"`
	ImageName  string    `json:"image_name"`
	LogPath    string    `json:"log_path,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Exited is set once the exit is recorded (ExitCode, Reason).
	Exited   bool   `json:"exited,omitempty"`
	ExitCode int32  `json:"exit_code,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Message  string `json:"message,omitempty"`
	// Starting is set while StartContainer runs: a container that has it
	// after a crash did not start.
	Starting bool `json:"starting,omitempty"`
	// ImageMounts are the container's image mounts, in the order of the
	// config's mounts that have an image (imagemounts.go).
	ImageMounts []imageMountRecord `json:"image_mounts,omitempty"`
}

// sandbox is a pod sandbox in the index.
type sandbox struct {
	mu     sync.Mutex // serialises the sandbox's lifecycle calls; guards rec
	rec    sandboxRecord
	config *runtimeapi.PodSandboxConfig // decoded rec.Config; immutable
	netns  *netns.NetNS                 // nil when rec.NetNS is empty
	// removed is set under mu once RemovePodSandbox finished: a call that
	// waited for mu sees the sandbox gone.
	removed bool
}

// container is a CRI container in the index.
type container struct {
	mu      sync.Mutex // serialises the container's lifecycle calls; guards rec
	rec     containerRecord
	config  *runtimeapi.ContainerConfig // decoded rec.Config; immutable
	removed bool
	// oomKilled is closed (once, by markOOM) when the task reported an
	// OOM kill; read when the exit is recorded.
	oomKilled chan struct{}
	oomOnce   sync.Once
	// killing is set under mu once berth sends the task SIGKILL: its exit
	// by that signal is then no OOM.
	killing bool
	// exited is closed once the exit is recorded.
	exited chan struct{}
}

// newContainer returns a container of the index for a record.
func newContainer(rec containerRecord, cfg *runtimeapi.ContainerConfig) *container {
	c := &container{rec: rec, config: cfg, exited: make(chan struct{}), oomKilled: make(chan struct{})}
	if rec.Exited {
		close(c.exited)
	}
	return c
}

// newID returns a random id of 64 hex digits, the CRI's usual form.
func newID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// recordExtension encodes rec for the container's extension.
func recordExtension(rec any) (proto.Message, error) {
	data, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	return wrapperspb.Bytes(data), nil
}

// saveRecord writes rec into the extension of berth container id.
func (s *Server) saveRecord(ctx context.Context, id string, rec any) error {
	ext, err := recordExtension(rec)
	if err != nil {
		return err
	}
	ctr, err := s.client.LoadContainer(ctx, id)
	if err != nil {
		return err
	}
	if err := ctr.Update(ctx, client.WithContainerExtension(RecordExtension, ext)); err != nil {
		return fmt.Errorf("save the CRI record of %s: %w", id, err)
	}
	return nil
}

// decodeRecord decodes the CRI record of a berth container into rec.
func decodeRecord(info client.ContainerInfo, rec any) error {
	a := info.Extensions[RecordExtension]
	if a == nil {
		return fmt.Errorf("container %s has no CRI record: %w", info.ID, errdefs.ErrNotFound)
	}
	var b wrapperspb.BytesValue
	if err := a.UnmarshalTo(&b); err != nil {
		return fmt.Errorf("container %s: CRI record: %w", info.ID, err)
	}
	if err := json.Unmarshal(b.Value, rec); err != nil {
		return fmt.Errorf("container %s: CRI record: %w", info.ID, err)
	}
	return nil
}

// reserveName reserves a sandbox or container name for id; a name held
// by another id is ErrAlreadyExists, naming the holder.
func (s *Server) reserveName(name, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if holder, ok := s.names[name]; ok && holder != id {
		return fmt.Errorf("name %q is reserved for %s: %w", name, holder, errdefs.ErrAlreadyExists)
	}
	s.names[name] = id
	return nil
}

// releaseName frees name if id holds it.
func (s *Server) releaseName(name, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.names[name] == id {
		delete(s.names, name)
	}
}

// sandboxName is the unique name of a pod sandbox, from its metadata.
func sandboxName(m *runtimeapi.PodSandboxMetadata) string {
	return fmt.Sprintf("%s_%s_%s_%d", m.GetName(), m.GetNamespace(), m.GetUid(), m.GetAttempt())
}

// containerName is the unique name of a container, from its metadata and
// its sandbox's.
func containerName(c *runtimeapi.ContainerMetadata, p *runtimeapi.PodSandboxMetadata) string {
	return fmt.Sprintf("%s_%s_%s_%s_%d", c.GetName(), p.GetName(), p.GetNamespace(), p.GetUid(), c.GetAttempt())
}
