package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/berthrt/berth/identifiers"
	"github.com/berthrt/berth/oci"
	"github.com/berthrt/berth/shimapi"
	"github.com/berthrt/berth/version"
	"github.com/containerd/fifo"
	"github.com/spf13/cobra"
)

func versionString() string { return version.Version }

func shimCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "shim",
		Short: "drive a berth-shim directly, without the daemon (debugging)",
	}
	cmd.AddCommand(shimRunCommand())
	return cmd
}

type shimRunOptions struct {
	rootfs    string
	state     string
	runtime   string
	shimPath  string
	namespace string
	env       []string
}

func shimRunCommand() *cobra.Command {
	var o shimRunOptions
	cmd := &cobra.Command{
		Use:     "run --rootfs DIR ID [CMD...]",
		Short:   "run a container from a root filesystem through its own shim, and remove it after",
		Example: `  berthctl shim run --rootfs /tmp/busybox demo echo hello`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return shimRun(cmd.Context(), o, args[0], args[1:])
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false) // flags after ID belong to the container's command
	f.StringVar(&o.rootfs, "rootfs", "", "root filesystem folder (required)")
	f.StringVar(&o.state, "state", "/run/berth/shim-run", "folder for bundles")
	f.StringVar(&o.runtime, "runtime", "runc", "OCI runtime name or path")
	f.StringVar(&o.shimPath, "shim", "", "berth-shim binary (default: beside berthctl, else PATH)")
	f.StringVar(&o.namespace, "namespace", "default", "namespace")
	f.StringArrayVar(&o.env, "env", nil, "environment variable KEY=VALUE (repeatable)")
	cmd.MarkFlagRequired("rootfs")
	return cmd
}

func shimRun(ctx context.Context, o shimRunOptions, id string, args []string) (retErr error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := identifiers.Validate(id); err != nil {
		return fmt.Errorf("container id: %w", err)
	}
	rootfs, err := filepath.Abs(o.rootfs)
	if err != nil {
		return err
	}
	if st, err := os.Stat(rootfs); err != nil || !st.IsDir() {
		return fmt.Errorf("--rootfs %s: not a folder", o.rootfs)
	}
	shim, err := findShim(o.shimPath)
	if err != nil {
		return err
	}
	bundle := filepath.Join(o.state, o.namespace, id)
	if err := os.MkdirAll(filepath.Dir(bundle), 0o711); err != nil {
		return err
	}
	// 0700: the rootfs mounted in it is the container's, setuid files and
	// device nodes included, and no host user but root may reach it.
	if err := os.Mkdir(bundle, 0o700); err != nil {
		return fmt.Errorf("container %s: bundle %s: %w", id, bundle, err)
	}
	runtimeRoot := filepath.Join(o.state, "runc", o.namespace)
	shimCmd := func(verb string) *exec.Cmd {
		return exec.Command(shim, verb, "--namespace", o.namespace, "--id", id, "--bundle", bundle, "--runtime", o.runtime, "--runtime-root", runtimeRoot)
	}
	defer func() {
		out, err := shimCmd("delete").CombinedOutput()
		if err != nil {
			retErr = fmt.Errorf("%w; berth-shim delete: %v: %s", retErr, err, out)
		}
		os.RemoveAll(bundle)
	}()

	specOpts := []oci.SpecOpts{oci.WithRootFSPath(rootfs)}
	if len(args) > 0 {
		specOpts = append(specOpts, oci.WithProcessArgs(args...))
	}
	if len(o.env) > 0 {
		specOpts = append(specOpts, oci.WithEnv(o.env))
	}
	spec, err := oci.GenerateSpec(ctx, o.namespace, id, specOpts...)
	if err != nil {
		return err
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600); err != nil {
		return err
	}
	if out, err := shimCmd("start").Output(); err != nil {
		return fmt.Errorf("berth-shim start: %v: %s", err, stderr(err))
	} else if strings.TrimSpace(string(out)) == "" {
		return fmt.Errorf("berth-shim start printed no address")
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	client, task, err := shimapi.Connect(cctx, bundle)
	cancel()
	if err != nil {
		return err
	}
	defer client.Close()

	stdout, err := openOutput(ctx, filepath.Join(bundle, "stdout"), os.Stdout)
	if err != nil {
		return err
	}
	stderrDone, err := openOutput(ctx, filepath.Join(bundle, "stderr"), os.Stderr)
	if err != nil {
		return err
	}
	if _, err := task.Create(ctx, &shimapi.CreateRequest{Id: id, Stdio: &shimapi.Stdio{
		Stdout: filepath.Join(bundle, "stdout"), Stderr: filepath.Join(bundle, "stderr"),
	}}); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	if _, err := task.Start(ctx, &shimapi.StartRequest{Id: id}); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	// Forward Ctrl-C and SIGTERM to the container.
	sigc := make(chan os.Signal, 4)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)
	go func() {
		for s := range sigc {
			task.Kill(context.Background(), &shimapi.KillRequest{Id: id, Signal: uint32(s.(syscall.Signal))})
		}
	}()
	w, err := task.Wait(ctx, &shimapi.WaitRequest{Id: id})
	if err != nil {
		return fmt.Errorf("wait: %w", err)
	}
	<-stdout
	<-stderrDone
	if _, err := task.Delete(ctx, &shimapi.DeleteRequest{Id: id}); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	task.Shutdown(ctx, &shimapi.ShutdownRequest{Id: id})
	if w.ExitStatus != 0 {
		return exitError{int(w.ExitStatus)}
	}
	return nil
}

// openOutput creates a FIFO, opens its read side and copies it to w; the
// returned channel closes at EOF.
func openOutput(ctx context.Context, path string, w io.Writer) (<-chan struct{}, error) {
	f, err := fifo.OpenFifo(ctx, path, syscall.O_RDONLY|syscall.O_CREAT|syscall.O_NONBLOCK, 0o600)
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer f.Close()
		io.Copy(w, f)
	}()
	return done, nil
}

func findShim(path string) (string, error) {
	if path != "" {
		return path, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "berth-shim")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("berth-shim")
	if err != nil {
		return "", fmt.Errorf("berth-shim not found beside berthctl or in PATH (use --shim)")
	}
	return p, nil
}

func stderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return strings.TrimSpace(string(ee.Stderr))
	}
	return ""
}
