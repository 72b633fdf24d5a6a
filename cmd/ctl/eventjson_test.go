package main

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"

	eventsv1 "github.com/berthrt/berth/proto/events/v1"
)

// TestMessageJSON holds messageJSON to protojson's output, byte for byte
// once protojson's random whitespace is compacted away, for every message
// type berthctl knows, filled with values of every shape (escapes, 64-bit
// integers, NaN, unknown enum numbers, timestamps and durations of each
// precision, Any, maps), in both naming modes. Every event payload type
// must be encodable; other types may be refused only for a well-known
// type without a JSON form here.
func TestMessageJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var events, all int
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		name := mt.Descriptor().FullName()
		if strings.HasPrefix(string(name), "google.protobuf.") {
			return true
		}
		isEvent := strings.HasPrefix(string(name), "berth.services.events.v1.")
		all++
		for i := range 20 {
			m := mt.New()
			if i > 0 { // the first is empty
				fill(r, m, 0)
			}
			for _, protoNames := range []bool{false, true} {
				got, err := messageJSON(m, protoNames)
				if err != nil {
					if isEvent || !strings.Contains(err.Error(), "JSON form not implemented") {
						t.Errorf("%s: %v", name, err)
					}
					return true
				}
				want, err := protojson.MarshalOptions{UseProtoNames: protoNames}.Marshal(m.Interface())
				if err != nil {
					t.Fatalf("%s: protojson: %v", name, err)
				}
				var compact bytes.Buffer
				if err := json.Compact(&compact, want); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, compact.Bytes()) {
					t.Errorf("%s (proto names %v):\n got %s\nwant %s", name, protoNames, got, compact.Bytes())
					return true
				}
			}
		}
		if isEvent {
			events++
		}
		return true
	})
	if events < 10 || all < 100 {
		t.Errorf("checked %d event types of %d types: the registry lacks berth's messages", events, all)
	}
	// The payload of a real event, as the events command prints it.
	a, err := anypb.New(&eventsv1.TaskExit{ContainerId: "web", Pid: 42, ExitStatus: 137})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(payload(a, true)), `{"container_id":"web","pid":42,"exit_status":137}`; got != want {
		t.Errorf("payload: %s, want %s", got, want)
	}
	if got, want := string(payload(a, false)), `{"containerId":"web","pid":42,"exitStatus":137}`; got != want {
		t.Errorf("payload: %s, want %s", got, want)
	}
}

var strs = []string{"", "a", "web-1", "quote\" back\\slash", "ctl\n\t\r\b\f\x01\x1f", "<html>&amp;", "é \u2028 ☃ 𝄞"}

// fill sets every field of m to a random value; messages nest 3 deep.
func fill(r *rand.Rand, m protoreflect.Message, depth int) {
	d := m.Descriptor()
	switch d.FullName() {
	case "google.protobuf.Timestamp", "google.protobuf.Duration":
		secs := r.Int64N(4e9)
		nanos := []int64{0, 5e8, 123e6, 123456e3, 123456789}[r.IntN(5)]
		if d.FullName() == "google.protobuf.Duration" && r.IntN(2) == 0 {
			secs, nanos = -secs, -nanos
		}
		m.Set(d.Fields().ByName("seconds"), protoreflect.ValueOfInt64(secs))
		m.Set(d.Fields().ByName("nanos"), protoreflect.ValueOfInt32(int32(nanos)))
		return
	case "google.protobuf.Any":
		inner := &eventsv1.TaskOOM{ContainerId: strs[r.IntN(len(strs))]}
		b, _ := proto.Marshal(inner)
		m.Set(d.Fields().ByName("type_url"), protoreflect.ValueOfString("type.googleapis.com/"+string(inner.ProtoReflect().Descriptor().FullName())))
		m.Set(d.Fields().ByName("value"), protoreflect.ValueOfBytes(b))
		return
	}
	fields := d.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		switch {
		case fd.IsList():
			l := m.Mutable(fd).List()
			for range r.IntN(3) {
				if fd.Kind() == protoreflect.MessageKind {
					if depth < 3 {
						v := l.NewElement()
						fill(r, v.Message(), depth+1)
						l.Append(v)
					}
					continue
				}
				l.Append(scalar(r, fd))
			}
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for range r.IntN(4) {
				k := scalar(r, fd.MapKey()).MapKey()
				if fd.MapValue().Kind() == protoreflect.MessageKind {
					if depth < 3 {
						v := mp.NewValue()
						fill(r, v.Message(), depth+1)
						mp.Set(k, v)
					}
					continue
				}
				mp.Set(k, scalar(r, fd.MapValue()))
			}
		case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
			if depth < 3 && r.IntN(4) > 0 {
				fill(r, m.Mutable(fd).Message(), depth+1)
			}
		default:
			if r.IntN(4) > 0 {
				m.Set(fd, scalar(r, fd))
			}
		}
	}
}

func scalar(r *rand.Rand, fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(r.IntN(2) == 0)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(r.Uint32()))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(r.Uint32())
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(r.Uint64()))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(r.Uint64())
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		f := []float64{0.5, -3, 1e21, 1e-7, 123456789.25, math.NaN(), math.Inf(1), math.Inf(-1), r.NormFloat64()}[r.IntN(9)]
		if fd.Kind() == protoreflect.FloatKind {
			return protoreflect.ValueOfFloat32(float32(f))
		}
		return protoreflect.ValueOfFloat64(f)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(strs[r.IntN(len(strs))])
	case protoreflect.BytesKind:
		b := make([]byte, r.IntN(8))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return protoreflect.ValueOfBytes(b)
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		if r.IntN(4) == 0 {
			return protoreflect.ValueOfEnum(99) // no name
		}
		return protoreflect.ValueOfEnum(vals.Get(r.IntN(vals.Len())).Number())
	}
	panic("kind " + fd.Kind().String())
}
