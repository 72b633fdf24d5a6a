package main

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// messageJSON encodes an event's payload as protojson.Marshal does
// (proto3's JSON mapping): field names as lowerCamelCase JSON names, or as
// the .proto's names with protoNames; unpopulated fields left out; 64-bit
// integers as strings; enums by name; bytes in base64; Timestamp,
// Duration, Empty and Any in their JSON forms. berthctl's own encoder,
// not protojson, because protojson's package init (a regular expression
// compiled, with its JSON tokenizer) ran in every berthctl command for
// the one that prints events. Other well-known types (Struct, Value,
// wrappers, FieldMask) are refused: no event payload has them, and
// TestMessageJSON holds every event type to protojson's output.
func messageJSON(m protoreflect.Message, protoNames bool) ([]byte, error) {
	return appendMessage(nil, m, protoNames)
}

func appendMessage(b []byte, m protoreflect.Message, protoNames bool) ([]byte, error) {
	d := m.Descriptor()
	switch d.FullName() {
	case "google.protobuf.Timestamp":
		return appendTimestamp(b, m)
	case "google.protobuf.Duration":
		return appendDuration(b, m)
	case "google.protobuf.Any":
		return appendAny(b, m, protoNames)
	case "google.protobuf.Empty":
		return append(b, "{}"...), nil
	}
	if d.FullName().Parent() == "google.protobuf" {
		return nil, fmt.Errorf("%s: JSON form not implemented", d.FullName())
	}
	b = append(b, '{')
	first := true
	fields := d.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		name := fd.JSONName()
		if protoNames {
			name = string(fd.Name())
		}
		b = appendString(b, name)
		b = append(b, ':')
		var err error
		if b, err = appendField(b, fd, m.Get(fd), protoNames); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

func appendField(b []byte, fd protoreflect.FieldDescriptor, v protoreflect.Value, protoNames bool) ([]byte, error) {
	var err error
	switch {
	case fd.IsList():
		l := v.List()
		b = append(b, '[')
		for i := range l.Len() {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendSingular(b, fd, l.Get(i), protoNames); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case fd.IsMap():
		type entry struct {
			key protoreflect.MapKey
			val protoreflect.Value
		}
		var entries []entry
		v.Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
			entries = append(entries, entry{k, v})
			return true
		})
		// In protojson's order: false before true, numbers by value,
		// strings by bytes.
		slices.SortFunc(entries, func(a, b entry) int {
			switch fd.MapKey().Kind() {
			case protoreflect.BoolKind:
				return cmp.Compare(boolInt(a.key.Bool()), boolInt(b.key.Bool()))
			case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
				protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
				return cmp.Compare(a.key.Int(), b.key.Int())
			case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
				return cmp.Compare(a.key.Uint(), b.key.Uint())
			}
			return strings.Compare(a.key.String(), b.key.String())
		})
		b = append(b, '{')
		for i, e := range entries {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, e.key.String())
			b = append(b, ':')
			if b, err = appendSingular(b, fd.MapValue(), e.val, protoNames); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	}
	return appendSingular(b, fd, v, protoNames)
}

func appendSingular(b []byte, fd protoreflect.FieldDescriptor, v protoreflect.Value, protoNames bool) ([]byte, error) {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return strconv.AppendBool(b, v.Bool()), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return strconv.AppendInt(b, v.Int(), 10), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return strconv.AppendUint(b, v.Uint(), 10), nil
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return appendString(b, strconv.FormatInt(v.Int(), 10)), nil
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return appendString(b, strconv.FormatUint(v.Uint(), 10)), nil
	case protoreflect.FloatKind:
		return appendFloat(b, v.Float(), 32), nil
	case protoreflect.DoubleKind:
		return appendFloat(b, v.Float(), 64), nil
	case protoreflect.StringKind:
		return appendString(b, v.String()), nil
	case protoreflect.BytesKind:
		return appendString(b, base64.StdEncoding.EncodeToString(v.Bytes())), nil
	case protoreflect.EnumKind:
		if fd.Enum().FullName() == "google.protobuf.NullValue" {
			return append(b, "null"...), nil
		}
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return appendString(b, string(ev.Name())), nil
		}
		return strconv.AppendInt(b, int64(v.Enum()), 10), nil
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return appendMessage(b, v.Message(), protoNames)
	}
	return nil, fmt.Errorf("%s: kind %v not implemented", fd.FullName(), fd.Kind())
}

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}

// appendFloat writes NaN and the infinities as protojson's strings, and
// other values as JSON numbers.
func appendFloat(b []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Infinity"`...)
	}
	var q []byte
	if bits == 32 {
		q, _ = json.Marshal(float32(f)) // finite: always encodes
	} else {
		q, _ = json.Marshal(f)
	}
	return append(b, q...) // encoding/json's number format, which protojson follows
}

// appendString quotes s as protojson does: only '"', '\\' and control
// characters escaped (no HTML escapes, unlike encoding/json). s is valid
// UTF-8: proto3 strings are checked when they are unmarshalled.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r == '\b':
			b = append(b, `\b`...)
		case r == '\f':
			b = append(b, `\f`...)
		case r == '\n':
			b = append(b, `\n`...)
		case r == '\r':
			b = append(b, `\r`...)
		case r == '\t':
			b = append(b, `\t`...)
		case r < ' ':
			b = fmt.Appendf(b, `\u%04x`, r)
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}

// secondsAndNanos reads a Timestamp's or Duration's fields.
func secondsAndNanos(m protoreflect.Message) (int64, int32) {
	fields := m.Descriptor().Fields()
	return m.Get(fields.ByName("seconds")).Int(), int32(m.Get(fields.ByName("nanos")).Int())
}

// appendTimestamp writes RFC 3339 in UTC with 0, 3, 6 or 9 fractional
// digits, as protojson does.
func appendTimestamp(b []byte, m protoreflect.Message) ([]byte, error) {
	secs, nanos := secondsAndNanos(m)
	const minSecs, maxSecs = -62135596800, 253402300799 // 0001-01-01, 9999-12-31
	if secs < minSecs || secs > maxSecs || nanos < 0 || nanos > 999999999 {
		return nil, fmt.Errorf("timestamp (%d, %d) out of range", secs, nanos)
	}
	s := time.Unix(secs, int64(nanos)).UTC().Format("2006-01-02T15:04:05.000000000")
	s = strings.TrimSuffix(s, "000")
	s = strings.TrimSuffix(s, "000")
	s = strings.TrimSuffix(s, ".000")
	return appendString(b, s+"Z"), nil
}

// appendDuration writes seconds with 0, 3, 6 or 9 fractional digits and
// an "s", as protojson does.
func appendDuration(b []byte, m protoreflect.Message) ([]byte, error) {
	secs, nanos := secondsAndNanos(m)
	const maxSecs = 315576000000 // 10,000 years
	if secs < -maxSecs || secs > maxSecs || nanos <= -1e9 || nanos >= 1e9 || (secs > 0 && nanos < 0) || (secs < 0 && nanos > 0) {
		return nil, fmt.Errorf("duration (%d, %d) out of range", secs, nanos)
	}
	sign := ""
	if secs < 0 || nanos < 0 {
		sign, secs, nanos = "-", -secs, -nanos
	}
	s := fmt.Sprintf("%s%d.%09d", sign, secs, nanos)
	s = strings.TrimSuffix(s, "000")
	s = strings.TrimSuffix(s, "000")
	s = strings.TrimSuffix(s, ".000")
	return appendString(b, s+"s"), nil
}

// appendAny writes {"@type": URL, the fields of the message it holds},
// or {"@type": URL, "value": JSON form} for a well-known type.
func appendAny(b []byte, m protoreflect.Message, protoNames bool) ([]byte, error) {
	fields := m.Descriptor().Fields()
	url := m.Get(fields.ByName("type_url")).String()
	value := m.Get(fields.ByName("value")).Bytes()
	if url == "" && len(value) == 0 {
		return append(b, "{}"...), nil
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(url)
	if err != nil {
		return nil, fmt.Errorf("any %q: %w", url, err)
	}
	inner := mt.New()
	if err := proto.Unmarshal(value, inner.Interface()); err != nil {
		return nil, fmt.Errorf("any %q: %w", url, err)
	}
	body, err := appendMessage(nil, inner, protoNames)
	if err != nil {
		return nil, err
	}
	b = append(b, `{"@type":`...)
	b = appendString(b, url)
	if inner.Descriptor().FullName().Parent() == "google.protobuf" {
		b = append(b, `,"value":`...)
		b = append(b, body...)
		return append(b, '}'), nil
	}
	if len(body) > 2 { // not {}
		b = append(b, ',')
		b = append(b, body[1:len(body)-1]...)
	}
	return append(b, '}'), nil
}
