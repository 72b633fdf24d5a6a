package metadata

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/berthrt/berth/errdefs"
)

func TestNamespaceLifecycle(t *testing.T) {
	db, _ := newTestDB(t)
	ctx := context.Background()
	nss := db.Namespaces()

	requireNoErr(t, nss.Create(ctx, "ci", map[string]string{"team": "infra", "empty": ""}))
	requireNoErr(t, nss.Create(ctx, "builds", nil))
	err := nss.Create(ctx, "ci", nil)
	requireClass(t, err, errdefs.ErrAlreadyExists)
	errorContains(t, err, `namespace "ci"`)

	list, err := nss.List(ctx)
	requireNoErr(t, err)
	if want := []string{"builds", "ci"}; !slices.Equal(list, want) {
		t.Errorf("List = %q, want %q", list, want)
	}

	labels, err := nss.Labels(ctx, "ci")
	requireNoErr(t, err)
	if want := map[string]string{"team": "infra"}; !maps.Equal(labels, want) {
		t.Errorf("Labels = %v, want %v (an empty value is no label)", labels, want)
	}
	labels, err = nss.Labels(ctx, "builds")
	requireNoErr(t, err)
	if labels == nil || len(labels) != 0 {
		t.Errorf("Labels of a namespace without labels = %#v, want an empty map", labels)
	}

	requireNoErr(t, nss.SetLabel(ctx, "ci", "owner", "ana"))
	requireNoErr(t, nss.SetLabel(ctx, "ci", "team", ""))
	labels, err = nss.Labels(ctx, "ci")
	requireNoErr(t, err)
	if want := map[string]string{"owner": "ana"}; !maps.Equal(labels, want) {
		t.Errorf("Labels after SetLabel = %v, want %v", labels, want)
	}

	requireNoErr(t, nss.Delete(ctx, "ci"))
	requireClass(t, nss.Delete(ctx, "ci"), errdefs.ErrNotFound)
	_, err = nss.Labels(ctx, "ci")
	requireClass(t, err, errdefs.ErrNotFound)
	requireClass(t, nss.SetLabel(ctx, "ci", "a", "b"), errdefs.ErrNotFound)
	list, err = nss.List(ctx)
	requireNoErr(t, err)
	if want := []string{"builds"}; !slices.Equal(list, want) {
		t.Errorf("List after Delete = %q, want %q", list, want)
	}
}

func TestNamespaceListEmpty(t *testing.T) {
	db, _ := newTestDB(t)
	list, err := db.Namespaces().List(context.Background())
	requireNoErr(t, err)
	if len(list) != 0 {
		t.Errorf("List of a new database = %q", list)
	}
}

func TestNamespaceDeleteRefusedWhileNotEmpty(t *testing.T) {
	db, _ := newTestDB(t)
	ctx := nsCtx("ci")
	for i := range 3 {
		_, err := db.Containers().Create(ctx, testContainer(t, fmt.Sprintf("c%d", i)))
		requireNoErr(t, err)
	}

	err := refusedUnchanged(t, db, errdefs.ErrFailedPrecondition, func() error {
		return db.Namespaces().Delete(ctx, "ci")
	})
	errorContains(t, err, `namespace "ci": holds 3 containers`)

	for i := range 3 {
		requireNoErr(t, db.Containers().Delete(ctx, fmt.Sprintf("c%d", i)))
	}
	// The containers bucket is left empty; that does not count.
	requireNoErr(t, db.Namespaces().Delete(ctx, "ci"))
	requireClass(t, db.Namespaces().Delete(ctx, "ci"), errdefs.ErrNotFound)
}

// TestNamespaceContents covers the buckets that later stores will fill, as
// the kinds table describes them.
func TestNamespaceContents(t *testing.T) {
	db, _ := newTestDB(t)
	ctx := context.Background()
	requireNoErr(t, db.Namespaces().Create(ctx, "ci", map[string]string{"a": "b"}))
	requireNoErr(t, db.Update(func(tx *bolt.Tx) error {
		put := func(path ...string) {
			b, err := createKindBucket(tx, "ci", []byte(path[0]))
			requireNoErr(t, err)
			for _, p := range path[1 : len(path)-1] {
				b, err = b.CreateBucketIfNotExists([]byte(p))
				requireNoErr(t, err)
			}
			_, err = b.CreateBucket([]byte(path[len(path)-1]))
			requireNoErr(t, err)
		}
		put("images", "docker.io/library/redis:7")
		put("snapshots", "overlayfs", "s1")
		put("snapshots", "overlayfs", "s2")
		put("snapshots", "native", "s3")
		_, err := createKindBucket(tx, "ci", bucketLeases) // empty: not mentioned
		requireNoErr(t, err)
		put("future", "x")
		put("future", "y")
		return nil
	}))

	err := db.Namespaces().Delete(ctx, "ci")
	requireClass(t, err, errdefs.ErrFailedPrecondition)
	errorContains(t, err, `holds 2 entries in "future", 1 image, 3 snapshots`)
	if strings.Contains(err.Error(), "lease") || strings.Contains(err.Error(), "label") {
		t.Errorf("error %v mentions an empty bucket or the labels", err)
	}
}

func TestNamespaceBadIdentifiers(t *testing.T) {
	db, _ := newTestDB(t)
	ctx := context.Background()
	nss := db.Namespaces()
	requireNoErr(t, nss.Create(ctx, "ok", nil))
	for name, ns := range badIdentifiers {
		t.Run(name, func(t *testing.T) {
			for op, fn := range map[string]func() error{
				"Create":   func() error { return nss.Create(ctx, ns, nil) },
				"SetLabel": func() error { return nss.SetLabel(ctx, ns, "a", "b") },
				"Delete":   func() error { return nss.Delete(ctx, ns) },
				"Labels":   func() error { _, err := nss.Labels(ctx, ns); return err },
			} {
				t.Run(op, func(t *testing.T) {
					err := refusedUnchanged(t, db, errdefs.ErrInvalidArgument, fn)
					errorContains(t, err, "namespace")
				})
			}
		})
	}
}

func TestNamespaceLabelBounds(t *testing.T) {
	db, _ := newTestDB(t)
	ctx := context.Background()
	nss := db.Namespaces()
	requireNoErr(t, nss.Create(ctx, "ci", nil))

	tooMany := map[string]string{}
	for i := range MaxLabels + 1 {
		tooMany[fmt.Sprintf("k%d", i)] = "v"
	}
	atMost := maps.Clone(tooMany)
	delete(atMost, "k0")

	for _, tc := range []struct {
		name   string
		labels map[string]string
		ok     bool
	}{
		{"empty key", map[string]string{"": "v"}, false},
		{"largest", map[string]string{"k": strings.Repeat("v", MaxLabelSize-1)}, true},
		{"one byte too large", map[string]string{"k": strings.Repeat("v", MaxLabelSize)}, false},
		{"key not UTF-8", map[string]string{"\xff": "v"}, false},
		{"value not UTF-8", map[string]string{"k": "\xff"}, false},
		{"most labels", atMost, true},
		{"one label too many", tooMany, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.ok {
				requireNoErr(t, nss.Create(ctx, "bounds", tc.labels))
				requireNoErr(t, nss.Delete(ctx, "bounds"))
				return
			}
			refusedUnchanged(t, db, errdefs.ErrInvalidArgument, func() error { return nss.Create(ctx, "bounds", tc.labels) })
			for k, v := range tc.labels {
				if len(tc.labels) == 1 {
					refusedUnchanged(t, db, errdefs.ErrInvalidArgument, func() error { return nss.SetLabel(ctx, "ci", k, v) })
				}
			}
		})
	}

	// SetLabel counts the labels already there.
	for k, v := range atMost {
		requireNoErr(t, nss.SetLabel(ctx, "ci", k, v))
	}
	refusedUnchanged(t, db, errdefs.ErrInvalidArgument, func() error { return nss.SetLabel(ctx, "ci", "one-more", "v") })
	requireNoErr(t, nss.SetLabel(ctx, "ci", "k1", "changed")) // replacing is no new label

	// SetLabels is all or nothing: a change set that removes one label
	// and adds two goes over the bound as a whole, and changes none.
	refusedUnchanged(t, db, errdefs.ErrInvalidArgument, func() error {
		return nss.SetLabels(ctx, "ci", map[string]string{"k1": "", "new-a": "v", "new-b": "v"})
	})
	refusedUnchanged(t, db, errdefs.ErrInvalidArgument, func() error {
		return nss.SetLabels(ctx, "ci", map[string]string{"k1": "", "bad": strings.Repeat("v", MaxLabelSize)})
	})
	requireNoErr(t, nss.SetLabels(ctx, "ci", map[string]string{"k1": "", "k2": "", "new-a": "v"}))
	labels, err := nss.Labels(ctx, "ci")
	requireNoErr(t, err)
	if _, ok := labels["k1"]; ok || labels["new-a"] != "v" || len(labels) != MaxLabels-1 {
		t.Fatalf("after SetLabels: %d labels, k1 %q, new-a %q", len(labels), labels["k1"], labels["new-a"])
	}
}
