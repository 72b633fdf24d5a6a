// Package jsonlog is berth-shim's logger: one JSON object a line, as
// log/slog's JSONHandler writes them ({"time":…,"level":…,"msg":…, then
// the attributes in order), with the few methods the shim calls.
//
// # Why it is not log/slog
//
// A shim maps nearly its whole binary, so every byte of it is RSS in every
// shim (bench/README.md, "Where an idle shim's memory goes"). log/slog,
// its handlers and what only they reach were 0.1 MB of the shim's 5.3 MB;
// the shim logs a handful of lines in its life, none of them on a path
// where slog's speed would count. Values are written as slog's
// JSONHandler writes them (strings, numbers, booleans, errors as their
// message, durations as nanoseconds, times in RFC 3339, anything else
// through encoding/json without HTML escaping),
// so a reader of shim.log sees no difference.
//
// # Invariants
//
//   - One call writes one line with one Write, under a mutex shared by a
//     logger and every logger derived from it by With, so lines never
//     interleave.
//   - A key that is not a string is written as "!BADKEY" with the value, as
//     slog does; a key without a value is written with none: "!BADKEY" and
//     the key as its value.
//   - A write error is dropped: logging never fails the caller.
package jsonlog

import (
	"bytes"
	"encoding/json"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Level is a line's severity; its values are slog's.
type Level int

// The levels, as in log/slog.
const (
	LevelDebug Level = -4
	LevelInfo  Level = 0
	LevelWarn  Level = 4
	LevelError Level = 8
)

// String is the level's name as slog writes it.
func (l Level) String() string {
	switch l {
	case LevelDebug:
		return "DEBUG"
	case LevelInfo:
		return "INFO"
	case LevelWarn:
		return "WARN"
	case LevelError:
		return "ERROR"
	}
	return "LEVEL(" + strconv.Itoa(int(l)) + ")"
}

// Logger writes lines at or above its minimum level to its writer.
type Logger struct {
	out   *output
	min   Level
	attrs []byte // the attributes of With, formatted: `,"k":v…`
}

type output struct {
	mu sync.Mutex
	w  io.Writer
}

// New returns a logger writing the lines of level min and above to w.
func New(w io.Writer, min Level) *Logger {
	return &Logger{out: &output{w: w}, min: min}
}

// With returns a logger that adds the attributes args (key, value, …) to
// every line, after the message and before the line's own attributes.
func (l *Logger) With(args ...any) *Logger {
	return &Logger{out: l.out, min: l.min, attrs: appendAttrs(l.attrs[:len(l.attrs):len(l.attrs)], args)}
}

// Debug logs msg and the attributes args at LevelDebug.
func (l *Logger) Debug(msg string, args ...any) { l.log(LevelDebug, msg, args) }

// Info logs msg and the attributes args at LevelInfo.
func (l *Logger) Info(msg string, args ...any) { l.log(LevelInfo, msg, args) }

// Warn logs msg and the attributes args at LevelWarn.
func (l *Logger) Warn(msg string, args ...any) { l.log(LevelWarn, msg, args) }

// Error logs msg and the attributes args at LevelError.
func (l *Logger) Error(msg string, args ...any) { l.log(LevelError, msg, args) }

func (l *Logger) log(level Level, msg string, args []any) {
	if level < l.min {
		return
	}
	b := make([]byte, 0, 256)
	b = append(b, `{"time":`...)
	b = appendString(b, time.Now().Format(time.RFC3339Nano))
	b = append(b, `,"level":`...)
	b = appendString(b, level.String())
	b = append(b, `,"msg":`...)
	b = appendString(b, msg)
	b = append(b, l.attrs...)
	b = appendAttrs(b, args)
	b = append(b, "}\n"...)
	l.out.mu.Lock()
	defer l.out.mu.Unlock()
	l.out.w.Write(b)
}

const badKey = "!BADKEY"

// appendAttrs appends the pairs of args as `,"key":value`.
func appendAttrs(b []byte, args []any) []byte {
	for len(args) > 0 {
		key, ok := args[0].(string)
		switch {
		case !ok:
			b = appendAttr(b, badKey, args[0])
			args = args[1:]
		case len(args) == 1:
			b = appendAttr(b, badKey, key)
			args = args[1:]
		default:
			b = appendAttr(b, key, args[1])
			args = args[2:]
		}
	}
	return b
}

func appendAttr(b []byte, key string, v any) []byte {
	b = append(b, ',')
	b = appendString(b, key)
	b = append(b, ':')
	return appendValue(b, v)
}

// appendValue appends v as slog's JSONHandler writes it.
func appendValue(b []byte, v any) []byte {
	switch v := v.(type) {
	case string:
		return appendString(b, v)
	case int:
		return strconv.AppendInt(b, int64(v), 10)
	case int64:
		return strconv.AppendInt(b, v, 10)
	case int32:
		return strconv.AppendInt(b, int64(v), 10)
	case uint32:
		return strconv.AppendUint(b, uint64(v), 10)
	case uint64:
		return strconv.AppendUint(b, v, 10)
	case bool:
		return strconv.AppendBool(b, v)
	case time.Duration:
		return strconv.AppendInt(b, int64(v), 10)
	case time.Time:
		return appendString(b, v.Format(time.RFC3339Nano))
	case json.Marshaler:
	case error:
		return appendString(b, v.Error())
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return appendString(b, "!ERROR:"+err.Error())
	}
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}

// appendString appends s as a JSON string, escaped as slog escapes it:
// quotes, backslashes and control characters; invalid UTF-8 becomes
// U+FFFD; U+2028 and U+2029 are escaped, HTML characters are not.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
