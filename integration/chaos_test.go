package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/images/archive"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/oci"
)

// The fault-injection run: berthd is SIGKILLed at a random moment of a
// random operation (create, start, exec, pull, import, commit, delete), N
// times, and restarted each time. Then: every container whose start
// returned runs (or, if its command ended, reports its own exit code) and
// is listed, and `berthd check` finds nothing wrong, with the containers
// running and again once everything is deleted and collected.
//
// BERTH_CHAOS_N sets N (default 6, the short form in make test; make chaos
// runs CHAOS_N, 50 by default), BERTH_CHAOS_SEED replays a run: the seed
// is logged first.

// chaosCtr is what the run knows of one container.
type chaosCtr struct {
	id      string
	exit    uint32 // what its command exits with; long ones sleep
	long    bool
	created bool // NewContainer and NewTask returned: it exists
	started bool // Start returned: it ran
	deleted bool // a delete was attempted: it may be gone
}

type chaosRun struct {
	t      *testing.T
	d      *daemon
	rng    *rand.Rand
	img    *client.Image
	arch   []byte
	pullOf string
	ctrs   []*chaosCtr
	seq    int
}

const chaosNS = "chaos"

func TestChaos(t *testing.T) {
	testutil.RequireRoot(t, "runc", "busybox", "docker-registry")
	n := 6
	if s := os.Getenv("BERTH_CHAOS_N"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			t.Fatalf("BERTH_CHAOS_N=%q: want a positive number", s)
		}
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("BERTH_CHAOS_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("BERTH_CHAOS_SEED=%q: %v", s, err)
		}
	}
	t.Logf("chaos: %d kills, seed %d (BERTH_CHAOS_SEED=%d replays it)", n, seed, seed)

	reg := testutil.StartRegistry(t, testutil.RegistryConfig{})
	pushTestImage(t, reg.Addr+"/chaos/pulled:1", 1<<20, 2<<20)
	arch, _ := layeredArchive(t)
	r := &chaosRun{t: t, d: newDaemon(t), rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), arch: arch, pullOf: reg.Addr + "/chaos/pulled:1"}
	c := r.client()
	imgs, err := c.Import(r.ctx(), bytes.NewReader(arch), archive.WithUnpack("overlayfs"))
	if err != nil {
		t.Fatal(err)
	}
	r.img = imgs[0]

	ops := []struct {
		name string
		run  func(*client.Client) error
	}{
		{"create", r.create}, {"start", r.start}, {"exec", r.exec}, {"pull", r.pull},
		{"import", r.importArchive}, {"commit", r.commit}, {"delete", r.delete},
	}
	for i := range n {
		op := ops[r.rng.IntN(len(ops))]
		delay := time.Duration(r.rng.IntN(200)) * time.Millisecond
		done := make(chan error, 1)
		go func() { done <- op.run(c) }()
		time.Sleep(delay)
		r.d.kill()
		err := <-done
		t.Logf("kill %d: %s, after %v: %v", i+1, op.name, delay, err)
		c.Close()
		r.d.start()
		c = r.client()
	}

	r.verifyContainers(c)
	if _, err := c.GarbageCollect(r.ctx()); err != nil {
		t.Fatalf("GC: %v", err)
	}
	inconsistencies := r.check("with the containers")
	r.d.start()
	c = r.client()
	r.deleteAll(c)
	if _, err := c.GarbageCollect(r.ctx()); err != nil {
		t.Fatalf("GC: %v", err)
	}
	inconsistencies += r.check("after deleting everything")
	t.Logf("chaos: %d kills, %d inconsistencies (seed %d)", n, inconsistencies, seed)
}

// ctx is a context in the run's namespace, with a bound for a hung call.
func (r *chaosRun) ctx() context.Context { return r.d.nsContext(chaosNS) }

func (r *chaosRun) client() *client.Client { return r.d.client(r.t, chaosNS) }

// pick returns a container that keep accepts, nil when none does.
func (r *chaosRun) pick(keep func(*chaosCtr) bool) *chaosCtr {
	var cands []*chaosCtr
	for _, x := range r.ctrs {
		if keep(x) {
			cands = append(cands, x)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	return cands[r.rng.IntN(len(cands))]
}

func (r *chaosRun) create(c *client.Client) error {
	r.seq++
	x := &chaosCtr{id: fmt.Sprintf("c%d", r.seq), long: r.rng.IntN(2) == 0, exit: uint32(r.seq % 7)}
	r.ctrs = append(r.ctrs, x)
	cmd := "sleep 600"
	if !x.long {
		cmd = fmt.Sprintf("sleep 0.%d; exit %d", r.rng.IntN(5), x.exit)
	}
	ctx := r.ctx()
	ctr, err := c.NewContainer(ctx, x.id, client.WithImage(r.img), client.WithSnapshotter("overlayfs"),
		client.WithNewSnapshot(x.id, r.img), client.WithNewSpec(oci.WithImageConfig(r.img), oci.WithProcessArgs("sh", "-c", cmd)))
	if err != nil {
		return err
	}
	// Some with a stdout FIFO, some without stdio.
	var stdout io.Writer
	if r.rng.IntN(2) == 0 {
		stdout = io.Discard
	}
	if _, err := ctr.NewTask(ctx, r.d.creator(nil, stdout, nil)); err != nil {
		return err
	}
	x.created = true
	return nil
}

func (r *chaosRun) start(c *client.Client) error {
	x := r.pick(func(x *chaosCtr) bool { return x.created && !x.started && !x.deleted })
	if x == nil {
		return r.create(c)
	}
	ctx := r.ctx()
	task, err := r.task(c, x)
	if err != nil {
		return err
	}
	if err := task.Start(ctx); err != nil {
		return err
	}
	x.started = true
	return nil
}

func (r *chaosRun) task(c *client.Client, x *chaosCtr) (client.Task, error) {
	ctr, err := c.LoadContainer(r.ctx(), x.id)
	if err != nil {
		return nil, err
	}
	return ctr.Task(r.ctx(), nil)
}

func (r *chaosRun) exec(c *client.Client) error {
	x := r.pick(func(x *chaosCtr) bool { return x.started && x.long && !x.deleted })
	if x == nil {
		return r.start(c)
	}
	ctx := r.ctx()
	ctr, err := c.LoadContainer(ctx, x.id)
	if err != nil {
		return err
	}
	spec, err := ctr.Spec(ctx)
	if err != nil {
		return err
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return err
	}
	pspec := *spec.Process
	pspec.Args = []string{"sh", "-c", "exit 5"}
	r.seq++
	p, err := task.Exec(ctx, fmt.Sprintf("e%d", r.seq), &pspec, r.d.creator(nil, nil, nil))
	if err != nil {
		return err
	}
	defer p.Delete(context.WithoutCancel(ctx), client.WithProcessKill)
	exitc, err := p.Wait(ctx)
	if err != nil {
		return err
	}
	if err := p.Start(ctx); err != nil {
		return err
	}
	select {
	case st := <-exitc:
		if st.ExitCode() != 5 {
			return fmt.Errorf("exec exited %d, want 5", st.ExitCode())
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

func (r *chaosRun) pull(c *client.Client) error {
	// The pushed layers are random bytes, not tars: fetch only (import
	// unpacks).
	_, err := c.Pull(r.ctx(), r.pullOf, client.WithPlainHTTP())
	return err
}

func (r *chaosRun) importArchive(c *client.Client) error {
	_, err := c.Import(r.ctx(), bytes.NewReader(r.arch), archive.WithUnpack("native"))
	return err
}

func (r *chaosRun) commit(c *client.Client) error {
	x := r.pick(func(x *chaosCtr) bool { return x.created && !x.deleted })
	if x == nil {
		return r.create(c)
	}
	r.seq++
	_, err := c.Commit(r.ctx(), x.id, fmt.Sprintf("example.com/chaos/commit:%d", r.seq))
	return err
}

func (r *chaosRun) delete(c *client.Client) error {
	x := r.pick(func(x *chaosCtr) bool { return !x.deleted })
	if x == nil {
		return r.create(c)
	}
	x.deleted = true
	return r.deleteOne(c, x.id)
}

func (r *chaosRun) deleteOne(c *client.Client, id string) error {
	ctx := r.ctx()
	ctr, err := c.LoadContainer(ctx, id)
	if err != nil {
		return err
	}
	if task, err := ctr.Task(ctx, nil); err == nil {
		if _, err := task.Delete(ctx, client.WithProcessKill); err != nil {
			return err
		}
	}
	return ctr.Delete(ctx, client.WithSnapshotCleanup)
}

// verifyContainers: every container whose Start returned and that no
// delete touched is listed and runs, or reports its command's exit code.
func (r *chaosRun) verifyContainers(c *client.Client) {
	ctx := r.ctx()
	list, err := c.Containers(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	var listed []string
	for _, ctr := range list {
		listed = append(listed, ctr.ID())
	}
	for _, x := range r.ctrs {
		if !x.created || x.deleted {
			continue
		}
		if !slices.Contains(listed, x.id) {
			r.t.Errorf("container %s is not listed after the kills", x.id)
			continue
		}
		if !x.started {
			continue
		}
		task, err := r.task(c, x)
		if err != nil {
			r.t.Errorf("container %s: task: %v", x.id, err)
			continue
		}
		want := client.Running
		if !x.long {
			want = client.Stopped
		}
		var st client.Status
		eventually(r.t, 10*time.Second, x.id+" "+string(want), func() bool {
			st, err = task.Status(ctx)
			return err == nil && st.Status == want
		})
		if !x.long && st.ExitStatus != x.exit {
			r.t.Errorf("container %s exited %d, want %d", x.id, st.ExitStatus, x.exit)
		}
	}
}

// deleteAll deletes every container the daemon lists and every image.
func (r *chaosRun) deleteAll(c *client.Client) {
	ctx := r.ctx()
	list, err := c.Containers(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	for _, ctr := range list {
		if err := r.deleteOne(c, ctr.ID()); err != nil {
			r.t.Errorf("delete %s: %v", ctr.ID(), err)
		}
	}
	imgs, err := c.ListImages(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	for _, img := range imgs {
		if err := c.DeleteImage(ctx, img.Name()); err != nil {
			r.t.Errorf("delete image %s: %v", img.Name(), err)
		}
	}
}

// check stops the daemon, runs berthd check, logs what it found and
// returns how many problems; each one fails the test.
func (r *chaosRun) check(when string) int {
	r.d.kill()
	out, code := r.d.check(r.t)
	if code == 0 {
		return 0
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	r.t.Errorf("berthd check %s: %d problems:\n%s", when, len(lines), out)
	return len(lines)
}
