package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// testView is an API object as a command hands it to printList.
type testView struct {
	ID        string            `json:"id"`
	Size      int64             `json:"size"`
	CreatedAt *time.Time        `json:"created_at"`
	Labels    map[string]string `json:"labels"`
	Tags      []string          `json:"tags"`
}

var testColumns = columns[testView]{
	headers: []string{"ID", "SIZE", "LABELS"},
	row:     func(v testView) []any { return []any{v.ID, humanSize(v.Size), formatLabels(v.Labels)} },
	id:      func(v testView) string { return v.ID },
}

// runList parses args as the command line of a list command and prints
// items; it returns stdout.
func runList(t *testing.T, items []testView, args ...string) (string, error) {
	t.Helper()
	var o outputFlags
	var out bytes.Buffer
	cmd := &cobra.Command{
		Use:  "ls",
		RunE: func(cmd *cobra.Command, _ []string) error { return printList(cmd, &o, items, testColumns) },
	}
	o.register(cmd)
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	return out.String(), err
}

func TestPrintList(t *testing.T) {
	created := time.Date(2024, 5, 1, 12, 0, 0, 123, time.FixedZone("CEST", 2*3600))
	items := []testView{
		{ID: "a", Size: 1 << 40, CreatedAt: utcTime(created), Labels: map[string]string{"team": "ci", "berth.io/gc.root": "1"}, Tags: []string{"x", "y"}},
		{ID: "b", Size: 512, Labels: nonNilLabels(nil)},
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"table", nil, "ID  SIZE     LABELS\na   1.0 TiB  berth.io/gc.root=1,team=ci\nb   512 B    -\n"},
		{"table named", []string{"--format", "table"}, "ID  SIZE     LABELS\na   1.0 TiB  berth.io/gc.root=1,team=ci\nb   512 B    -\n"},
		{"quiet", []string{"-q"}, "a\nb\n"},
		{"quiet wins", []string{"-q", "--format", "json"}, "a\nb\n"},
		{"template", []string{"--format", "{{.id}} {{.size}} {{index .labels \"berth.io/gc.root\"}}"}, "a 1099511627776 1\nb 512 <no value>\n"},
		{"template funcs", []string{"--format", `{{upper .id}} {{size .size}} {{join .tags ","}} {{labels .labels}} {{json .created_at}}`},
			"A 1.0 TiB x,y berth.io/gc.root=1,team=ci \"2024-05-01T10:00:00.000000123Z\"\nB 512 B  - null\n"},
		{"template ago", []string{"--format", "{{ago .created_at}}"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := runList(t, items, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if tc.name == "template ago" {
				// The first line depends on today; its shape does not.
				if !strings.HasSuffix(got, " ago\n-\n") {
					t.Errorf("got %q, want an age and -", got)
				}
				return
			}
			if got != tc.want {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestPrintListJSON(t *testing.T) {
	created := time.Date(2024, 5, 1, 12, 0, 0, 123, time.FixedZone("CEST", 2*3600))
	items := []testView{{ID: "a", Size: 1<<53 + 1, CreatedAt: utcTime(created), Labels: nonNilLabels(nil)}}
	out, err := runList(t, items, "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	dec.UseNumber()
	var got []map[string]any
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("not a JSON array: %v\n%s", err, out)
	}
	if len(got) != 1 {
		t.Fatalf("got %d objects, want 1", len(got))
	}
	if n := got[0]["size"].(json.Number).String(); n != "9007199254740993" {
		t.Errorf("size %s, want the exact 9007199254740993", n)
	}
	if ts := got[0]["created_at"]; ts != "2024-05-01T10:00:00.000000123Z" {
		t.Errorf("created_at %v, want RFC 3339 in UTC with nanoseconds", ts)
	}
	if l, ok := got[0]["labels"].(map[string]any); !ok || len(l) != 0 {
		t.Errorf("labels %v, want {}", got[0]["labels"])
	}

	out, err = runList(t, nil, "--format", "json")
	if err != nil || out != "[]\n" {
		t.Errorf("empty list: %q, %v; want []", out, err)
	}
}

func TestFormatErrors(t *testing.T) {
	for _, tc := range []struct {
		format, want string
	}{
		{"yaml", `"yaml": want table, json or a Go template`},
		{"{{.id", "template:"},
		{"{{nosuchfunc .id}}", `function "nosuchfunc" not defined`},
	} {
		_, err := runList(t, nil, "--format", tc.format)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--format %q: error %v, want one saying %q", tc.format, err, tc.want)
		}
	}
	// A template that fails on an object names --format.
	_, err := runList(t, []testView{{ID: "a"}}, "--format", "{{size .id}}")
	if err == nil || !strings.Contains(err.Error(), "--format") || !strings.Contains(err.Error(), "no number") {
		t.Errorf("size of a string: error %v", err)
	}
}

func TestPrintObject(t *testing.T) {
	item := testView{ID: "a", Size: 3}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "id: a\n"},
		{[]string{"--format", "json"}, "{\n  \"id\": \"a\",\n  \"size\": 3,\n  \"created_at\": null,\n  \"labels\": null,\n  \"tags\": null\n}\n"},
		{[]string{"--format", "{{.id}}/{{.size}}"}, "a/3\n"},
	} {
		var o outputFlags
		var out bytes.Buffer
		cmd := &cobra.Command{
			Use: "info",
			RunE: func(cmd *cobra.Command, _ []string) error {
				return printObject(cmd, &o, item, func(w io.Writer, v testView) error {
					_, err := fmt.Fprintf(w, "id: %s\n", v.ID)
					return err
				})
			},
		}
		o.registerFormat(cmd)
		cmd.SetArgs(tc.args)
		cmd.SetOut(&out)
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
		if out.String() != tc.want {
			t.Errorf("%v: got %q, want %q", tc.args, out.String(), tc.want)
		}
	}
}

func TestPrintLine(t *testing.T) {
	var o outputFlags
	item := testView{ID: "a", Size: 3}
	line := func(v testView) string { return "line " + v.ID }
	var out bytes.Buffer
	for _, format := range []string{"table", "json", "{{.id}}"} {
		if err := o.format.Set(format); err != nil {
			t.Fatal(err)
		}
		if err := printLine(&out, &o, item, line); err != nil {
			t.Fatal(err)
		}
	}
	want := "line a\n" + `{"id":"a","size":3,"created_at":null,"labels":null,"tags":null}` + "\na\n"
	if out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

func TestHumanDuration(t *testing.T) {
	const day = 24 * time.Hour
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "less than a second"},
		{time.Second, "1 second"},
		{59 * time.Second, "59 seconds"},
		{time.Minute + 30*time.Second, "1 minute"},
		{3 * time.Minute, "3 minutes"},
		{time.Hour, "1 hour"},
		{47 * time.Hour, "47 hours"},
		{2 * day, "2 days"},
		{13 * day, "13 days"},
		{14 * day, "2 weeks"},
		{60 * day, "2 months"},
		{729 * day, "24 months"},
		{3 * 365 * day, "3 years"},
	} {
		if got := humanDuration(tc.d); got != tc.want {
			t.Errorf("humanDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
	now := time.Now()
	if got := ago(now, now.Add(-3*time.Minute)); got != "3 minutes ago" {
		t.Errorf("ago 3m: %q", got)
	}
	if got := ago(now, now.Add(2*time.Hour)); got != "in 2 hours" {
		t.Errorf("ago -2h: %q", got)
	}
	if got := ago(now, time.Time{}); got != "-" {
		t.Errorf("ago unset: %q", got)
	}
}
