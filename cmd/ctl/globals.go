package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/namespaces"
)

const defaultAddress = "/run/berth/berth.sock"

// globals are the flags of every command.
type globals struct {
	address   string
	namespace string
	timeout   time.Duration
	debug     bool
}

func (g *globals) register(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringVarP(&g.address, "address", "a", envOr("BERTH_ADDRESS", defaultAddress), "berthd's socket (env BERTH_ADDRESS)")
	f.StringVarP(&g.namespace, "namespace", "n", envOr("BERTH_NAMESPACE", namespaces.Default), "namespace (env BERTH_NAMESPACE)")
	f.DurationVar(&g.timeout, "timeout", 0, "time limit of each call to the daemon (0: none)")
	f.BoolVar(&g.debug, "debug", false, "log debug information to stderr")
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// connect returns a client and a context in the chosen namespace. The
// caller closes the client.
func (g *globals) connect(cmd *cobra.Command) (*client.Client, context.Context, error) {
	if g.debug {
		slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}
	c, err := client.New(g.address, client.WithDefaultNamespace(g.namespace))
	if err != nil {
		return nil, nil, hint(err, g.address)
	}
	return c, namespaces.WithNamespace(cmd.Context(), g.namespace), nil
}

// call returns a context for one call, bounded by --timeout.
func (g *globals) call(ctx context.Context) (context.Context, context.CancelFunc) {
	if g.timeout > 0 {
		return context.WithTimeout(ctx, g.timeout)
	}
	return context.WithCancel(ctx)
}

// clientFunc is the body of a command that calls the daemon.
type clientFunc func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error

// withClient is a RunE that connects, bounds the command's calls by
// --timeout and runs fn.
func (g *globals) withClient(fn clientFunc) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, ctx, err := g.connect(cmd)
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, cancel := g.call(ctx)
		defer cancel()
		return fn(ctx, c, cmd, args)
	}
}

// hint adds what a user can do about common errors.
func hint(err error, address string) error {
	switch {
	case errdefs.IsUnavailable(err) || errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w (is berthd running at %s? start it, or pass --address)", err, address)
	case errdefs.IsPermissionDenied(err) || errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%w (the socket %s admits root and its group only)", err, address)
	}
	return err
}

// table writes aligned columns.
type table struct{ w *tabwriter.Writer }

func newTable(out io.Writer, headers ...string) *table {
	t := &table{w: tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)}
	if len(headers) > 0 {
		t.row(toAny(headers)...)
	}
	return t
}

func (t *table) row(cells ...any) {
	parts := make([]string, len(cells))
	for i, c := range cells {
		parts[i] = fmt.Sprint(c)
	}
	fmt.Fprintln(t.w, strings.Join(parts, "\t"))
}

func (t *table) flush() error { return t.w.Flush() }

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// parseLabels parses KEY=VALUE arguments; a KEY alone (or KEY=) removes
// the label when used for an update.
func parseLabels(args []string) (map[string]string, error) {
	labels := map[string]string{}
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		if k == "" {
			return nil, usageError{fmt.Errorf("label %q: want KEY=VALUE", a)}
		}
		labels[k] = v
	}
	return labels, nil
}

func formatLabels(labels map[string]string) string {
	if len(labels) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(labels))
	for k, v := range labels {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}
