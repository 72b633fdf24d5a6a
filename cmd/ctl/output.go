package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/template"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// formatHelp documents --format once for every command that has it.
const formatHelp = `output: "table" (for people: sizes in binary units, times as "3 minutes ago"),
"json" (exact: a list is one array, a single object one object; field names
are the API's snake_case names; sizes are numbers of bytes; times RFC 3339
in UTC, null when unset), or a Go template run on each object's JSON form,
one line per object: '{{.id}} {{index .labels "team"}}' (functions: json,
join, labels, lower, upper, size, ago)`

// outputFlags are --format and, for lists, -q/--quiet: how a command that
// prints API objects prints them. A command converts the API's objects to
// views (structs with json tags, see utcTime and nonNilLabels) and hands
// them to printList or printObject.
type outputFlags struct {
	format outputFormat
	quiet  bool
}

// register adds --format and -q/--quiet to a list command.
func (o *outputFlags) register(cmd *cobra.Command) {
	o.registerFormat(cmd)
	cmd.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "print ids only, one a line (wins over --format)")
}

// registerFormat adds --format alone, to a command that prints one object.
func (o *outputFlags) registerFormat(cmd *cobra.Command) {
	cmd.Flags().Var(&o.format, "format", formatHelp)
}

// outputFormat is the value of --format: its Set parses a template, so a
// bad one is a usage error before any call to the daemon.
type outputFormat struct {
	text string             // as given; "" is table
	tmpl *template.Template // when text is a template
}

const (
	formatTable = "table"
	formatJSON  = "json"
)

func (f *outputFormat) String() string {
	if f.text == "" {
		return formatTable
	}
	return f.text
}

func (f *outputFormat) Type() string { return "table|json|TEMPLATE" }

func (f *outputFormat) Set(s string) error {
	switch {
	case s == formatTable || s == formatJSON:
		f.text, f.tmpl = s, nil
		return nil
	case strings.Contains(s, "{{"):
		t, err := template.New("format").Funcs(templateFuncs).Parse(s)
		if err != nil {
			return fmt.Errorf("template: %w", err)
		}
		f.text, f.tmpl = s, t
		return nil
	}
	return fmt.Errorf("%q: want table, json or a Go template such as '{{.id}}'", s)
}

func (f *outputFormat) isTable() bool { return f.text == "" || f.text == formatTable }
func (f *outputFormat) isJSON() bool  { return f.text == formatJSON }

// columns say how a list of views prints as a table and with -q.
type columns[T any] struct {
	headers []string
	row     func(T) []any
	id      func(T) string
}

// printList prints items to cmd's stdout as --format and -q ask: a table
// with headers, one JSON array, the template once per item, or ids.
func printList[T any](cmd *cobra.Command, o *outputFlags, items []T, cols columns[T]) error {
	w := cmd.OutOrStdout()
	switch {
	case o.quiet:
		for _, it := range items {
			fmt.Fprintln(w, cols.id(it))
		}
		return nil
	case o.format.isJSON():
		if items == nil {
			items = []T{} // [] rather than null
		}
		return writeJSON(w, items)
	case o.format.tmpl != nil:
		for _, it := range items {
			if err := o.format.execute(w, it); err != nil {
				return err
			}
		}
		return nil
	}
	t := newTable(w, cols.headers...)
	for _, it := range items {
		t.row(cols.row(it)...)
	}
	return t.flush()
}

// printObject prints one view: table calls the command's own rendering
// for people, json one indented object, a template once.
func printObject[T any](cmd *cobra.Command, o *outputFlags, item T, table func(io.Writer, T) error) error {
	w := cmd.OutOrStdout()
	switch {
	case o.format.isJSON():
		return writeJSON(w, item)
	case o.format.tmpl != nil:
		return o.format.execute(w, item)
	}
	return table(w, item)
}

// printLine prints one item of a stream (such as events): json as one
// compact line, a template once, else the table line given.
func printLine[T any](w io.Writer, o *outputFlags, item T, line func(T) string) error {
	switch {
	case o.format.isJSON():
		b, err := json.Marshal(item)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case o.format.tmpl != nil:
		return o.format.execute(w, item)
	}
	_, err := fmt.Fprintln(w, line(item))
	return err
}

// writeJSON writes v indented, with a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// execute runs the template on v's JSON form, so that a template names
// the fields json prints, and ends the output with a newline.
func (f *outputFormat) execute(w io.Writer, v any) error {
	data, err := jsonData(v)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := f.tmpl.Execute(&b, data); err != nil {
		return fmt.Errorf("--format: %w", err)
	}
	if !bytes.HasSuffix(b.Bytes(), []byte("\n")) {
		b.WriteByte('\n')
	}
	_, err = w.Write(b.Bytes())
	return err
}

// jsonData is v as encoding/json sees it: maps, slices, strings, bools,
// nil and json.Number, which prints exact sizes.
func jsonData(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var data any
	err = dec.Decode(&data)
	return data, err
}

// templateFuncs are the functions a --format template may call besides
// text/template's own.
var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"join": func(v any, sep string) (string, error) {
		list, ok := v.([]any)
		if v != nil && !ok {
			return "", fmt.Errorf("join: %T is no list", v)
		}
		parts := make([]string, len(list))
		for i, e := range list {
			parts[i] = fmt.Sprint(e)
		}
		return strings.Join(parts, sep), nil
	},
	"labels": func(v any) (string, error) {
		m, ok := v.(map[string]any)
		if v != nil && !ok {
			return "", fmt.Errorf("labels: %T is no map", v)
		}
		labels := make(map[string]string, len(m))
		for k, e := range m {
			labels[k] = fmt.Sprint(e)
		}
		return formatLabels(labels), nil
	},
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	"size": func(v any) (string, error) {
		n, ok := v.(json.Number)
		if !ok {
			return "", fmt.Errorf("size: %v is no number", v)
		}
		i, err := n.Int64()
		if err != nil {
			return "", fmt.Errorf("size: %w", err)
		}
		return humanSize(i), nil
	},
	"ago": func(v any) (string, error) {
		if v == nil {
			return "-", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("ago: %v is no time", v)
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return "", fmt.Errorf("ago: %w", err)
		}
		return ago(time.Now(), t), nil
	},
}

// utcTime is t for a view: UTC, and nil (JSON null) when t is unset.
func utcTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// protoTime is utcTime of a protobuf timestamp.
func protoTime(ts *timestamppb.Timestamp) *time.Time {
	if ts == nil {
		return nil
	}
	return utcTime(ts.AsTime())
}

// nonNilLabels is labels for a view: {} rather than null when empty.
func nonNilLabels(labels map[string]string) map[string]string {
	if labels == nil {
		return map[string]string{}
	}
	return labels
}

// ago is how long before now t was, for people: "3 minutes ago", "in 2
// hours" for a time to come, "-" when t is unset.
func ago(now time.Time, t time.Time) string {
	switch {
	case t.IsZero():
		return "-"
	case t.After(now):
		return "in " + humanDuration(t.Sub(now))
	}
	return humanDuration(now.Sub(t)) + " ago"
}

// agoOf is ago for a view's time.
func agoOf(now time.Time, t *time.Time) string {
	if t == nil {
		return "-"
	}
	return ago(now, *t)
}

// humanDuration is d rounded down to its largest sensible unit: "1
// second", "45 seconds", "3 minutes", "5 hours", "2 days", "3 weeks", "4
// months", "2 years".
func humanDuration(d time.Duration) string {
	const (
		day   = 24 * time.Hour
		week  = 7 * day
		month = 30 * day
		year  = 365 * day
	)
	var n int64
	var unit string
	switch {
	case d < time.Second:
		return "less than a second"
	case d < time.Minute:
		n, unit = int64(d/time.Second), "second"
	case d < time.Hour:
		n, unit = int64(d/time.Minute), "minute"
	case d < 2*day:
		n, unit = int64(d/time.Hour), "hour"
	case d < 2*week:
		n, unit = int64(d/day), "day"
	case d < 2*month:
		n, unit = int64(d/week), "week"
	case d < 2*year:
		n, unit = int64(d/month), "month"
	default:
		n, unit = int64(d/year), "year"
	}
	if n != 1 {
		unit += "s"
	}
	return fmt.Sprintf("%d %s", n, unit)
}
