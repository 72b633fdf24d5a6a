package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/images"
	"github.com/berthrt/berth/leases"
	containersv1 "github.com/berthrt/berth/proto/containers/v1"
	imagesv1 "github.com/berthrt/berth/proto/images/v1"
	leasesv1 "github.com/berthrt/berth/proto/leases/v1"
	namespacesv1 "github.com/berthrt/berth/proto/namespaces/v1"
)

// The records of TestListsBeyondMessageLimit: each close to its bounds
// (storage/metadata: labels 256 of 4096 bytes, spec 1 MiB), five of them
// together well past ttrpc's 4 MiB message limit.
const (
	bigRecords    = 5
	bigLabels     = 256
	bigLabelValue = 4096 - len("pad.000")
)

// fullLabels returns labels that take about 1 MiB, the most an object may
// carry.
func fullLabels() map[string]string {
	labels := make(map[string]string, bigLabels)
	for i := range bigLabels {
		labels[fmt.Sprintf("pad.%03d", i)] = strings.Repeat(string(rune('a'+i%26)), bigLabelValue)
	}
	return labels
}

// bigSpec returns a valid OCI runtime spec of nearly 1 MiB (an annotation
// fills it).
func bigSpec(t *testing.T) []byte {
	t.Helper()
	s := specs.Spec{Version: specs.Version, Annotations: map[string]string{"pad": strings.Repeat("s", 1<<20-200)}}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestListsBeyondMessageLimit: containers, images, leases and namespaces
// whose list takes more than one ttrpc message all come back through the
// client library, berthctl and the Python client's ListStream; the unary
// List fails alone with ResourceExhausted naming ListStream, and the very
// connection serves on. Records over a bound are refused naming it.
func TestListsBeyondMessageLimit(t *testing.T) {
	d := newDaemon(t)
	const ns = "biglists"
	c := d.client(t, ns)
	ctx, cancel := context.WithTimeout(d.nsContext(ns), 5*time.Minute)
	defer cancel()
	labels, spec := fullLabels(), bigSpec(t)

	var ctrIDs, imgNames, leaseIDs, nsNames []string
	for i := range bigRecords {
		id := fmt.Sprintf("big-%d", i)
		_, err := c.ContainerService().Create(ctx, &containersv1.CreateContainerRequest{Container: &containersv1.Container{
			Id: id, Labels: labels, Spec: spec, Runtime: &containersv1.Container_Runtime{Name: "runc"},
		}})
		if err != nil {
			t.Fatalf("create container %s: %v", id, err)
		}
		ctrIDs = append(ctrIDs, id)

		name := fmt.Sprintf("example.test/big:%d", i)
		_, err = c.ImageService().Create(ctx, images.Image{Name: name, Labels: labels, Target: ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString(name), Size: 1,
		}})
		if err != nil {
			t.Fatalf("create image %s: %v", name, err)
		}
		imgNames = append(imgNames, name)

		if _, err := c.LeasesService().Create(ctx, leases.Lease{ID: id, Labels: labels}); err != nil {
			t.Fatalf("create lease %s: %v", id, err)
		}
		leaseIDs = append(leaseIDs, id)

		nsName := fmt.Sprintf("%s-%d", ns, i)
		if _, err := c.NamespaceService().Create(ctx, &namespacesv1.CreateNamespaceRequest{Namespace: &namespacesv1.Namespace{Name: nsName, Labels: labels}}); err != nil {
			t.Fatalf("create namespace %s: %v", nsName, err)
		}
		nsNames = append(nsNames, nsName)
	}

	// The client library streams: every record, whole.
	infos, err := c.ListContainerInfos(ctx)
	if err != nil {
		t.Fatalf("list containers: %v", err)
	}
	if got := idsOf(infos, func(i client.ContainerInfo) string { return i.ID }); !slices.Equal(got, ctrIDs) {
		t.Fatalf("containers listed: %v, want %v", got, ctrIDs)
	}
	for _, info := range infos {
		if len(info.Spec) != len(spec) || len(info.Labels) != bigLabels {
			t.Fatalf("container %s came back with a %d-byte spec and %d labels, want %d and %d", info.ID, len(info.Spec), len(info.Labels), len(spec), bigLabels)
		}
	}
	if ctrs, err := c.Containers(ctx); err != nil || len(ctrs) != bigRecords {
		t.Fatalf("Containers: %d, %v; want %d", len(ctrs), err, bigRecords)
	}
	imgs, err := c.ImageService().List(ctx)
	if err != nil {
		t.Fatalf("list images: %v", err)
	}
	if got := idsOf(imgs, func(i images.Image) string { return i.Name }); !slices.Equal(got, imgNames) {
		t.Fatalf("images listed: %v, want %v", got, imgNames)
	}
	ls, err := c.LeasesService().List(ctx)
	if err != nil {
		t.Fatalf("list leases: %v", err)
	}
	if got := idsOf(ls, func(l leases.Lease) string { return l.ID }); !slices.Equal(got, leaseIDs) {
		t.Fatalf("leases listed: %v, want %v", got, leaseIDs)
	}
	nss, err := c.ListNamespaces(ctx, "labels.\"pad.000\"")
	if err != nil {
		t.Fatalf("list namespaces: %v", err)
	}
	if got := idsOf(nss, (*namespacesv1.Namespace).GetName); !slices.Equal(got, nsNames) {
		t.Fatalf("namespaces listed: %v, want %v", got, nsNames)
	}

	// The unary Lists fail alone and say what to call instead; the
	// connections they came over still serve.
	a := d.api()
	unary := map[string]func() error{
		"containers": func() error {
			_, err := c.ContainerService().List(ctx, &containersv1.ListContainersRequest{})
			return err
		},
		"images": func() error {
			_, err := imagesv1.NewImagesClient(a.conn).List(ctx, &imagesv1.ListImagesRequest{})
			return err
		},
		"leases": func() error {
			_, err := leasesv1.NewLeasesClient(a.conn).List(ctx, &leasesv1.ListRequest{})
			return err
		},
		"namespaces": func() error {
			_, err := c.NamespaceService().List(ctx, &namespacesv1.ListNamespacesRequest{})
			return err
		},
	}
	for svc, list := range unary {
		err := list()
		if !errdefs.IsResourceExhausted(err) || !strings.Contains(err.Error(), svc+" ListStream") {
			t.Errorf("unary %s List of %d large records: %v, want ResourceExhausted naming ListStream", svc, bigRecords, err)
		}
	}
	if _, err := c.ContainerService().Get(ctx, &containersv1.GetContainerRequest{Id: ctrIDs[0]}); err != nil {
		t.Fatalf("the client's connection after the refused Lists: %v", err)
	}
	if _, err := c.Version(ctx); err != nil {
		t.Fatalf("the client's connection after the refused Lists: %v", err)
	}
	if _, err := a.version.Version(ctx, &emptypb.Empty{}); err != nil {
		t.Fatalf("the API connection after the refused Lists: %v", err)
	}

	// berthctl lists them all.
	ctl := newCtl(t, d)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"-n", ns, "containers", "ls", "-q"}, ctrIDs},
		{[]string{"-n", ns, "images", "ls", "-q"}, imgNames},
		{[]string{"-n", ns, "leases", "ls", "-q"}, leaseIDs},
		{[]string{"namespaces", "ls", "-q", "labels.\"pad.000\""}, nsNames},
	} {
		if got := strings.Fields(ctl.ok(tc.args...)); !slices.Equal(got, tc.want) {
			t.Errorf("berthctl %s: %v, want %v", strings.Join(tc.args, " "), got, tc.want)
		}
	}

	// A record over a bound is refused, naming what was too big.
	for _, tc := range []struct {
		name string
		ctr  *containersv1.Container
		want string
	}{
		{"label", &containersv1.Container{Id: "over-label", Spec: []byte("{}"), Labels: map[string]string{"big": strings.Repeat("l", 4096)}}, `label "big"`},
		{"labels", &containersv1.Container{Id: "over-labels", Spec: []byte("{}"), Labels: func() map[string]string {
			l := map[string]string{"one-more": "x"}
			for k, v := range labels {
				l[k] = v[:1]
			}
			return l
		}()}, "257 labels"},
		{"spec", &containersv1.Container{Id: "over-spec", Spec: append(spec, make([]byte, 1<<10)...)}, "spec: "},
	} {
		tc.ctr.Runtime = &containersv1.Container_Runtime{Name: "runc"}
		_, err := c.ContainerService().Create(ctx, &containersv1.CreateContainerRequest{Container: tc.ctr})
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("a container with too large a %s: %v, want InvalidArgument naming %q", tc.name, err, tc.want)
		}
	}
}

func idsOf[T any](items []T, id func(T) string) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = id(it)
	}
	return out
}
