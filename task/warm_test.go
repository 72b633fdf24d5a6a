package task

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/berthrt/berth/shimapi"
)

// TestWarmSamples holds Warm's JSON samples to the types they warm: a
// field renamed or removed would leave its tables to a task's Create.
func TestWarmSamples(t *testing.T) {
	Warm()
	for _, c := range []struct {
		sample string
		v      any
	}{{bundleSpecSample, &bundleSpec{}}, {exitStatusSample, &shimapi.ExitStatus{}}} {
		dec := json.NewDecoder(bytes.NewReader([]byte(c.sample)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(c.v); err != nil {
			t.Errorf("sample for %T: %v", c.v, err)
		}
	}
	var spec bundleSpec
	if err := json.Unmarshal([]byte(bundleSpecSample), &spec); err != nil {
		t.Fatal(err)
	}
	if spec.Process == nil || spec.Hooks == nil || len(spec.Hooks.Poststop) == 0 || spec.Linux == nil || len(spec.Linux.Namespaces) == 0 {
		t.Errorf("sample leaves an object of bundleSpec out: %+v", spec)
	}
}
