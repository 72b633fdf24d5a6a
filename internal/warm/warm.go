// Package warm does ahead of time the one-time work that Go's encoding
// libraries leave to the first use of a type, so that a process whose
// first request is the one it exists for (a spare shim's Create, the
// calls of one berthctl command) does not do that work while the request
// waits.
//
// google.golang.org/protobuf builds the marshal and unmarshal tables of a
// message type on its first Marshal, Unmarshal or Size; encoding/json
// builds the encoder of a type on its first Marshal and the field table of
// a struct type the first time it decodes into one. On a 2-CPU machine
// these cost berth-shim about 1.5 ms and berthctl about 3 ms per process,
// on the path of the first calls (bench/README.md). Done beside the
// process's start, or while it waits for its first call, they cost that
// path nothing; done again by the first use they cost nothing either,
// since each is done once per type and process.
//
// Warm only what the process would use anyway: each type's tables stay in
// its heap for its life.
package warm

import (
	"encoding/json"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Protos builds the protobuf tables of the types of msgs and of every
// message type their fields hold, at any depth (map values included), in
// that order; a type of google.protobuf.Any's content is not reachable
// that way and is named in msgs itself. A field type missing from the
// global registry is skipped: its first use then builds it, as without
// Protos.
func Protos(msgs ...proto.Message) {
	protos(map[protoreflect.FullName]bool{}, msgs...)
}

// protos is Protos, which skips and adds to seen the types it visits.
func protos(seen map[protoreflect.FullName]bool, msgs ...proto.Message) {
	for _, m := range msgs {
		warmType(m.ProtoReflect().Type(), seen)
	}
}

func warmType(mt protoreflect.MessageType, seen map[protoreflect.FullName]bool) {
	md := mt.Descriptor()
	if seen[md.FullName()] {
		return
	}
	seen[md.FullName()] = true
	// Size asks for the type's methods, which builds its tables; the
	// types of its fields build theirs on their own first use, so each is
	// visited in turn.
	proto.Size(mt.New().Interface())
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.IsMap() {
			fd = fd.MapValue()
		}
		if fd.Message() == nil {
			continue
		}
		if ft, err := protoregistry.GlobalTypes.FindMessageByName(fd.Message().FullName()); err == nil {
			warmType(ft, seen)
		}
	}
}

// JSON builds encoding/json's encoder of v's type (v is a pointer) and,
// by decoding sample into v, the field tables of the struct types that
// sample's objects reach: a sample should hold every object the process
// will decode into the type. A sample that does not decode only leaves
// tables unbuilt.
func JSON(v any, sample string) {
	_, _ = json.Marshal(v)
	if sample != "" {
		_ = json.Unmarshal([]byte(sample), v)
	}
}
