package cri

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/io/cio"
)

// execOutputMax bounds what ExecSync keeps of each of stdout and stderr,
// in bytes: the reply must fit the kubelet's 16 MiB message limit.
const execOutputMax = 4 << 20

// ExecSync runs a command in a running container and returns its output
// and exit code. When the timeout expires, the process is killed and the
// call fails with DeadlineExceeded.
func (s *Server) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	ctx = nsContext(ctx)
	if len(req.GetCmd()) == 0 || req.GetCmd()[0] == "" {
		return nil, fmt.Errorf("exec: a command is required: %w", errdefs.ErrInvalidArgument)
	}
	c, err := s.containerByID(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	ctr, task, err := s.runningTask(ctx, c)
	if err != nil {
		return nil, err
	}
	spec, err := ctr.Spec(ctx)
	if err != nil {
		return nil, err
	}
	pspec := *spec.Process
	pspec.Args, pspec.Terminal = req.GetCmd(), false
	var stdout, stderr limitedBuffer
	creator := cio.NewCreator(cio.WithStreams(nil, &stdout, &stderr), cio.WithFIFODir(filepath.Join(s.cfg.StateDir, "fifo")))
	b := make([]byte, 8)
	rand.Read(b)
	proc, err := task.Exec(ctx, "exec-sync-"+hex.EncodeToString(b), &pspec, creator)
	if err != nil {
		return nil, err
	}
	cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	exitc, err := proc.Wait(cleanup)
	if err != nil {
		_, derr := proc.Delete(cleanup)
		return nil, errors.Join(err, derr)
	}
	if err := proc.Start(ctx); err != nil {
		_, derr := proc.Delete(cleanup)
		return nil, errors.Join(err, derr)
	}
	var expired <-chan time.Time
	if t := req.GetTimeout(); t > 0 {
		timer := time.NewTimer(time.Duration(t) * time.Second)
		defer timer.Stop()
		expired = timer.C
	}
	var st client.ExitStatus
	select {
	case st = <-exitc:
	case <-expired:
		err = fmt.Errorf("exec in %s: timeout %ds exceeded: %w", c.rec.ID, req.GetTimeout(), context.DeadlineExceeded)
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		if kerr := proc.Kill(cleanup, syscall.SIGKILL); kerr != nil && !errdefs.IsNotFound(kerr) {
			err = errors.Join(err, kerr)
		}
		<-exitc
		if _, derr := proc.Delete(cleanup); derr != nil {
			err = errors.Join(err, derr)
		}
		return nil, err
	}
	if st.Error() != nil {
		return nil, st.Error()
	}
	if _, err := proc.Delete(cleanup); err != nil {
		return nil, err
	}
	return &runtimeapi.ExecSyncResponse{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: int32(st.ExitCode())}, nil
}

// limitedBuffer keeps the first execOutputMax bytes written to it and
// drops the rest.
type limitedBuffer struct {
	mu  sync.Mutex // guards buf
	buf []byte
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := execOutputMax - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (b *limitedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf
}
