package jsonlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
)

// logBoth makes the same calls on a Logger and on a slog.Logger with a
// JSONHandler, and returns both outputs, lines without their time.
func logBoth(t *testing.T, min Level, calls func(log func(level Level, msg string, args ...any), with func(args ...any))) (mine, slogs []string) {
	t.Helper()
	var a, b bytes.Buffer
	l := New(&a, min)
	s := slog.New(slog.NewJSONHandler(&b, &slog.HandlerOptions{Level: slog.Level(min)}))
	calls(func(level Level, msg string, args ...any) {
		switch level {
		case LevelDebug:
			l.Debug(msg, args...)
			s.Debug(msg, args...)
		case LevelInfo:
			l.Info(msg, args...)
			s.Info(msg, args...)
		case LevelWarn:
			l.Warn(msg, args...)
			s.Warn(msg, args...)
		case LevelError:
			l.Error(msg, args...)
			s.Error(msg, args...)
		}
	}, func(args ...any) {
		l = l.With(args...)
		s = s.With(args...)
	})
	return dropTime(t, a.String()), dropTime(t, b.String())
}

// dropTime checks that every line starts with an RFC 3339 time and
// returns the lines without it.
func dropTime(t *testing.T, out string) []string {
	t.Helper()
	var lines []string
	for _, line := range strings.SplitAfter(out, "\n") {
		if line == "" {
			continue
		}
		const prefix = `{"time":"`
		end := strings.Index(line, `",`)
		if !strings.HasPrefix(line, prefix) || end < 0 {
			t.Fatalf("line %q: no time first", line)
		}
		if _, err := time.Parse(time.RFC3339Nano, line[len(prefix):end]); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		lines = append(lines, line[end+2:])
	}
	return lines
}

type marshalErr struct{}

func (marshalErr) Error() string                { return "as an error" }
func (marshalErr) MarshalJSON() ([]byte, error) { return []byte(`{"as":"json"}`), nil }

type point struct {
	X, Y int
	Tag  string `json:"tag,omitempty"`
}

// TestLikeSlog: the lines are slog's JSONHandler's, byte for byte but the
// time, for every kind of value the shim logs and the odd ones.
func TestLikeSlog(t *testing.T) {
	mine, slogs := logBoth(t, LevelInfo, func(log func(Level, string, ...any), with func(...any)) {
		log(LevelInfo, "plain")
		log(LevelDebug, "below the level")
		log(LevelWarn, "kinds", "s", "text", "i", -3, "i64", int64(math.MinInt64), "i32", int32(7), "u32", uint32(8),
			"u64", uint64(math.MaxUint64), "b", true, "d", 1500*time.Millisecond, "f", 0.1, "f2", 1e21, "u8", uint8(9))
		log(LevelError, "errors", "error", errors.New(`failed: "x" <y>`), "marshaler", marshalErr{}, "nil", nil)
		log(LevelInfo, "any", "pids", []int{1, 2, 3}, "none", []int(nil), "point", point{X: 1, Tag: "<&>"}, "map", map[string]int{"b": 2, "a": 1}, "bytes", []byte("hi"))
		log(LevelInfo, "time", "at", time.Date(2026, 12, 6, 18, 0, 0, 123456789, time.FixedZone("", 3600)))
		log(LevelInfo, "escapes\n\t\r\"\\\x01\x7f<>&\u2028\u2029é\xff end", "key\n", "v\x00")
		log(LevelInfo, "bad keys", 42, "v", "w")
		log(LevelInfo, "dangling key", "a", 1, "lone")
		with("namespace", "ns", "id", "c1")
		log(LevelInfo, "with", "pid", 12)
		with("more", 1)
		log(LevelError, "with twice", "error", errors.New("e"))
		log(LevelInfo, "unencodable", "f", math.Inf(1), "c", make(chan int))
	})
	if len(mine) != len(slogs) {
		t.Fatalf("%d lines, slog wrote %d:\n%s\nslog:\n%s", len(mine), len(slogs), strings.Join(mine, ""), strings.Join(slogs, ""))
	}
	for i := range mine {
		if mine[i] != slogs[i] && !strings.Contains(slogs[i], "!ERROR:") {
			t.Errorf("line %d:\n got %s\nslog %s", i, mine[i], slogs[i])
		}
		if !json.Valid([]byte(`{"time":"",` + mine[i])) {
			t.Errorf("line %d not JSON: %s", i, mine[i])
		}
	}
}

// TestLevels: a logger writes its level and above; Debug passes at
// LevelDebug.
func TestLevels(t *testing.T) {
	mine, slogs := logBoth(t, LevelDebug, func(log func(Level, string, ...any), with func(...any)) {
		for _, l := range []Level{LevelDebug, LevelInfo, LevelWarn, LevelError} {
			log(l, l.String())
		}
	})
	if strings.Join(mine, "") != strings.Join(slogs, "") || len(mine) != 4 {
		t.Fatalf("got\n%s\nslog\n%s", strings.Join(mine, ""), strings.Join(slogs, ""))
	}
	mine, _ = logBoth(t, LevelWarn, func(log func(Level, string, ...any), with func(...any)) {
		for _, l := range []Level{LevelDebug, LevelInfo, LevelWarn, LevelError} {
			log(l, l.String())
		}
	})
	if len(mine) != 2 || !strings.Contains(mine[0], `"WARN"`) || !strings.Contains(mine[1], `"ERROR"`) {
		t.Fatalf("LevelWarn logger wrote %q", mine)
	}
}

// TestWithDoesNotAlias: loggers derived from one logger keep their own
// attributes.
func TestWithDoesNotAlias(t *testing.T) {
	var buf bytes.Buffer
	base := New(&buf, LevelInfo).With("a", 1)
	x, y := base.With("x", 1), base.With("y", 2)
	x.Info("x")
	y.Info("y")
	base.Info("base")
	lines := dropTime(t, buf.String())
	want := []string{`"level":"INFO","msg":"x","a":1,"x":1}` + "\n", `"level":"INFO","msg":"y","a":1,"y":2}` + "\n", `"level":"INFO","msg":"base","a":1}` + "\n"}
	if strings.Join(lines, "") != strings.Join(want, "") {
		t.Fatalf("got %q, want %q", lines, want)
	}
}

// TestLinesWhole: lines of concurrent callers, through loggers derived
// from one another, never interleave.
func TestLinesWhole(t *testing.T) {
	var buf bytes.Buffer
	base := New(&buf, LevelInfo)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := base.With("g", g)
			for i := 0; i < 200; i++ {
				l.Info(strings.Repeat("x", 100), "i", i)
			}
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 8*200 {
		t.Fatalf("%d lines, want %d", len(lines), 8*200)
	}
	for _, line := range lines {
		if !json.Valid([]byte(line)) {
			t.Fatalf("not one JSON object: %q", line)
		}
	}
}
