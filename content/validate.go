package content

import (
	"fmt"
	"maps"
	"strings"
	"unicode"
	"unicode/utf8"

	digest "github.com/opencontainers/go-digest"

	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/filters"
)

// Bounds of what callers pass in.
const (
	// MaxRefLength bounds an ingest's ref, in bytes.
	MaxRefLength = 1024
	// MaxLabelSize bounds len(key)+len(value) of one label, in bytes, as
	// for containers.
	MaxLabelSize = 4096
	// MaxLabels bounds the labels of one blob.
	MaxLabels = 256
	// ChunkSize is the most data one message of the content API carries
	// (1 MiB, well below ttrpc's 4 MiB message limit).
	ChunkSize = 1 << 20
)

// ValidateRef checks an ingest ref: 1 to MaxRefLength bytes of valid
// UTF-8 without control characters. Any such ref is safe: it names no path
// (the store hashes it).
func ValidateRef(ref string) error {
	switch {
	case ref == "":
		return fmt.Errorf("ingest ref must not be empty: %w", errdefs.ErrInvalidArgument)
	case len(ref) > MaxRefLength:
		return fmt.Errorf("ingest ref %.40q…: %d bytes, more than %d: %w", ref, len(ref), MaxRefLength, errdefs.ErrInvalidArgument)
	case !utf8.ValidString(ref):
		return fmt.Errorf("ingest ref %q is not valid UTF-8: %w", ref, errdefs.ErrInvalidArgument)
	case strings.IndexFunc(ref, unicode.IsControl) >= 0:
		return fmt.Errorf("ingest ref %q holds a control character: %w", ref, errdefs.ErrInvalidArgument)
	}
	return nil
}

// ValidateDigest checks that dgst is well formed, of an algorithm this
// build can compute.
func ValidateDigest(dgst digest.Digest) error {
	if err := dgst.Validate(); err != nil {
		return fmt.Errorf("digest %.80q: %w: %w", dgst, err, errdefs.ErrInvalidArgument)
	}
	return nil
}

// ValidateLabels checks labels against the bounds: non-empty keys, valid
// UTF-8, MaxLabelSize per label, MaxLabels with a value.
func ValidateLabels(labels map[string]string) error {
	n := 0
	for k, v := range labels {
		switch {
		case k == "":
			return fmt.Errorf("label key must not be empty: %w", errdefs.ErrInvalidArgument)
		case !utf8.ValidString(k) || !utf8.ValidString(v):
			return fmt.Errorf("label %q: not valid UTF-8: %w", k, errdefs.ErrInvalidArgument)
		case len(k)+len(v) > MaxLabelSize:
			return fmt.Errorf("label %.64q: %d bytes, more than %d: %w", k, len(k)+len(v), MaxLabelSize, errdefs.ErrInvalidArgument)
		case v != "":
			n++
		}
	}
	if n > MaxLabels {
		return fmt.Errorf("%d labels, more than %d: %w", n, MaxLabels, errdefs.ErrInvalidArgument)
	}
	return nil
}

// UpdateLabels returns the labels of current after an Update with
// update's labels and fieldpaths (see Manager.Update), validated; labels
// with an empty value are dropped. Any field path but labels and
// labels.<key> is ErrInvalidArgument.
func UpdateLabels(current map[string]string, update Info, fieldpaths []string) (map[string]string, error) {
	next := maps.Clone(current)
	if next == nil {
		next = map[string]string{}
	}
	if len(fieldpaths) == 0 {
		fieldpaths = []string{"labels"}
	}
	for _, p := range fieldpaths {
		if p == "labels" {
			next = maps.Clone(update.Labels)
			if next == nil {
				next = map[string]string{}
			}
			continue
		}
		key, ok := strings.CutPrefix(p, "labels.")
		if !ok || key == "" {
			return nil, fmt.Errorf("blob %s: field path %q: only labels and labels.<key> can change: %w", update.Digest, p, errdefs.ErrInvalidArgument)
		}
		if v := update.Labels[key]; v != "" {
			next[key] = v
		} else {
			delete(next, key)
		}
	}
	maps.DeleteFunc(next, func(_, v string) bool { return v == "" })
	if err := ValidateLabels(next); err != nil {
		return nil, fmt.Errorf("blob %s: %w", update.Digest, err)
	}
	if len(next) == 0 {
		return nil, nil
	}
	return next, nil
}

// ParseFilters parses filters for Walk or ListStatuses; a bad one is
// ErrInvalidArgument.
func ParseFilters(fs []string) (filters.Filter, error) {
	f, err := filters.ParseAll(fs...)
	if err != nil && !errdefs.IsInvalidArgument(err) {
		err = fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	return f, err
}

// InfoAdaptor exposes a blob's fields to filters: digest, size,
// labels.<key>.
func InfoAdaptor(info Info) filters.Adaptor {
	return filters.AdapterFunc(func(fieldpath []string) (string, bool) {
		switch fieldpath[0] {
		case "digest":
			return filters.Value(info.Digest.String(), fieldpath[1:])
		case "size":
			return filters.Value(fmt.Sprint(info.Size), fieldpath[1:])
		case "labels":
			return filters.Labels(info.Labels, fieldpath[1:])
		}
		return "", false
	})
}

// StatusAdaptor exposes an ingest's fields to filters: ref, expected.
func StatusAdaptor(st Status) filters.Adaptor {
	return filters.AdapterFunc(func(fieldpath []string) (string, bool) {
		switch fieldpath[0] {
		case "ref":
			return filters.Value(st.Ref, fieldpath[1:])
		case "expected":
			return filters.Value(st.Expected.String(), fieldpath[1:])
		}
		return "", false
	})
}
