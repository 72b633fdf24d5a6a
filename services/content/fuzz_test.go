package content

import (
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/proto"

	"github.com/berthrt/berth/content"
	api "github.com/berthrt/berth/proto/content/v1"
	"github.com/berthrt/berth/storage/content/local"
)

// Any sequence of write requests, however malformed, ends in an error or a
// blob whose bytes match its digest; never a panic or a wrong blob.
func FuzzWriteRequests(f *testing.F) {
	seed := func(reqs ...*api.WriteContentRequest) {
		var raw [3][]byte
		for i, req := range reqs {
			raw[i], _ = proto.Marshal(req)
		}
		f.Add(raw[0], raw[1], raw[2])
	}
	data := []byte("hello")
	seed(&api.WriteContentRequest{Ref: "r"}, &api.WriteContentRequest{Action: api.WriteAction_WRITE_ACTION_WRITE, Data: data},
		&api.WriteContentRequest{Action: api.WriteAction_WRITE_ACTION_COMMIT, Offset: 5, Expected: digest.FromBytes(data).String()})
	seed(&api.WriteContentRequest{Ref: "r", Total: 3}, &api.WriteContentRequest{Action: api.WriteAction_WRITE_ACTION_COMMIT, Data: data}, nil)
	seed(&api.WriteContentRequest{Ref: "r"}, &api.WriteContentRequest{Action: api.WriteAction_WRITE_ACTION_WRITE, Offset: 9}, nil)
	f.Fuzz(func(t *testing.T, a, b, c []byte) {
		store, err := local.NewStore(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		var reqs []*api.WriteContentRequest
		for _, raw := range [][]byte{a, b, c} {
			req := &api.WriteContentRequest{}
			if proto.Unmarshal(raw, req) != nil {
				return
			}
			reqs = append(reqs, req)
		}
		first := reqs[0]
		w, err := store.Writer(t.Context(), content.WithRef(first.GetRef()))
		if err != nil {
			return
		}
		defer w.Close()
		for _, req := range reqs {
			if _, done, err := handleWrite(t.Context(), w, req); err != nil || done {
				break
			}
		}
		err = store.Walk(t.Context(), func(info content.Info) error {
			p, err := content.ReadBlob(t.Context(), store, ocispec.Descriptor{Digest: info.Digest, Size: info.Size})
			if err != nil {
				return err
			}
			if info.Digest.Algorithm().FromBytes(p) != info.Digest {
				t.Fatalf("blob %s holds other bytes", info.Digest)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
