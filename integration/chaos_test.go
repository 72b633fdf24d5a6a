package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthrt/berth/client"
	"github.com/berthrt/berth/errdefs"
	"github.com/berthrt/berth/images/archive"
	"github.com/berthrt/berth/internal/testutil"
	"github.com/berthrt/berth/io/cio"
	"github.com/berthrt/berth/oci"
	eventsv1 "github.com/berthrt/berth/proto/events/v1"
	"github.com/berthrt/berth/shimapi"
)

// The fault-injection run: berthd is SIGKILLed at a random moment of a
// random operation (create, start, exec, pull, import, commit, delete), N
// times, and restarted each time. Then: every container whose start
// returned runs (or, if its command ended, reports its own exit code) and
// is listed, and `berthd check` finds nothing wrong, with the containers
// running and again once everything is deleted and collected.
//
// Exits are counted across the whole run: a subscriber to /tasks/exit,
// connected again after each restart and replaying what the new daemon
// published before it connected, must see the init exit of every
// container that ran exactly once, and no exit twice.
//
// Pulls go through a proxy that sends blobs at about 8 MiB/s, and the
// kill waits until a layer is partly fetched: after the restart the ingest
// is still there, and a repeated pull resumes it and succeeds.
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
	// exits are the /tasks/exit subscriptions, one per daemon life.
	exits []*subscription
	// sent counts the blob bytes the throttling proxy sent.
	sent *atomic.Int64
	// pullCut is the offset at which a pull's layer ingest stood when the
	// daemon was killed; -1 when no pull was cut mid-layer.
	pullCut int64
}

// chaosLayerSize is the size of the pulled image's one layer: at the
// proxy's 8 MiB/s a pull takes about a second, so a kill lands in it.
const chaosLayerSize = 8 << 20

// chaosOp is one kind of operation the run kills the daemon in. ready,
// when set, returns once the operation is far enough along to be worth
// killing (false: it never got there); after runs once the daemon is
// back.
type chaosOp struct {
	name  string
	run   func(*client.Client) error
	ready func(*client.Client) bool
	after func(*client.Client)
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
	proxy, sent := slowBlobProxy(t, reg.Addr)
	pushTestImage(t, reg.Addr+"/chaos/pulled:1", chaosLayerSize)
	arch, _ := layeredArchive(t)
	r := &chaosRun{t: t, d: newDaemon(t), rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), arch: arch,
		pullOf: proxy + "/chaos/pulled:1", sent: sent, pullCut: -1}
	r.subscribeExits()
	c := r.client()
	imgs, err := c.Import(r.ctx(), bytes.NewReader(arch), archive.WithUnpack("overlayfs"))
	if err != nil {
		t.Fatal(err)
	}
	r.img = imgs[0]

	ops := []chaosOp{
		{name: "create", run: r.create}, {name: "start", run: r.start}, {name: "exec", run: r.exec},
		{name: "pull", run: r.pull, ready: r.pullUnderWay, after: r.pullResumes},
		{name: "import", run: r.importArchive}, {name: "commit", run: r.commit}, {name: "delete", run: r.delete},
	}
	// A few containers made without a kill, so that every run has tasks
	// to start, exec in, commit and delete, and exits to count.
	for range 3 {
		if err := r.create(c); err != nil {
			t.Fatal(err)
		}
		if err := r.start(c); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		op := ops[r.rng.IntN(len(ops))]
		// Up to the time a create and start take on a loaded machine.
		delay := time.Duration(r.rng.IntN(800)) * time.Millisecond
		done := make(chan error, 1)
		go func() { done <- op.run(c) }()
		if op.ready != nil && !op.ready(c) {
			t.Logf("kill %d: %s never got under way", i+1, op.name)
		}
		time.Sleep(delay)
		r.d.kill()
		err := <-done
		t.Logf("kill %d: %s, after %v: %v", i+1, op.name, delay, err)
		c.Close()
		r.d.start()
		r.subscribeExits()
		c = r.client()
		if op.after != nil {
			op.after(c)
		}
		// Kills land mostly in the slow first steps of a create: make a
		// container now and then without one, so that there are tasks
		// to start, exec in and delete, and exits to count.
		if r.rng.IntN(3) == 0 {
			if err := r.create(c); err != nil {
				t.Fatalf("create after the restart: %v", err)
			}
		}
	}

	r.verifyContainers(c)
	if _, err := c.GarbageCollect(r.ctx()); err != nil {
		t.Fatalf("GC: %v", err)
	}
	inconsistencies := r.check("with the containers")
	r.d.start()
	r.subscribeExits()
	c = r.client()
	r.deleteAll(c)
	if _, err := c.GarbageCollect(r.ctx()); err != nil {
		t.Fatalf("GC: %v", err)
	}
	counted, expected, bad := r.verifyExits()
	inconsistencies += bad
	inconsistencies += r.fifoFoldersLeft()
	inconsistencies += r.check("after deleting everything")
	t.Logf("chaos: %d kills, %d inconsistencies, %d exits counted, %d expected exactly once (seed %d)", n, inconsistencies, counted, expected, seed)
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
	// Loaded through this client: an Image reads through the client that
	// made it, whose connection a kill closed.
	img, err := c.GetImage(ctx, r.img.Name())
	if err != nil {
		return err
	}
	ctr, err := c.NewContainer(ctx, x.id, client.WithImage(img), client.WithSnapshotter("overlayfs"),
		client.WithNewSnapshot(x.id, img), client.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs("sh", "-c", cmd)))
	if err != nil {
		return err
	}
	// Some with a stdout FIFO, some without stdio.
	var stdout io.Writer
	if r.rng.IntN(2) == 0 {
		stdout = io.Discard
	}
	task, err := ctr.NewTask(ctx, r.d.creator(nil, stdout, nil))
	if err != nil {
		return err
	}
	x.created = true
	// Half of them started at once, so that kills land in starts too.
	if r.rng.IntN(2) == 0 {
		return nil
	}
	if err := task.Start(ctx); err != nil {
		return err
	}
	x.started = true
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
	// Half of them with an output FIFO, so that kills cut the deletes of
	// execs with FIFOs too.
	var stdout io.Writer
	if r.rng.IntN(2) == 0 {
		stdout = io.Discard
	}
	p, err := task.Exec(ctx, fmt.Sprintf("e%d", r.seq), &pspec, r.d.creator(nil, stdout, nil))
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
	// The pushed layer is random bytes, not a tar: fetch only (import
	// unpacks).
	_, err := c.Pull(r.ctx(), r.pullOf, client.WithPlainHTTP())
	return err
}

// pullUnderWay waits until the pull has written part of its layer, and
// remembers how much.
func (r *chaosRun) pullUnderWay(c *client.Client) bool {
	r.pullCut = -1
	ctx := r.ctx()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		sts, _ := c.ContentStore().ListStatuses(ctx)
		for _, st := range sts {
			if st.Total == chaosLayerSize && st.Offset > 0 {
				r.pullCut = st.Offset
				return true
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

// pullResumes checks, after a kill that cut a pull mid-layer, that the
// layer's ingest survived the restart and that the same pull, repeated,
// resumes it rather than fetching the layer again, and succeeds. The
// image is then deleted and collected, so that the next pull starts
// afresh.
func (r *chaosRun) pullResumes(c *client.Client) {
	if r.pullCut < 0 {
		return
	}
	ctx := r.ctx()
	var kept int64 = -1
	sts, err := c.ContentStore().ListStatuses(ctx)
	if err != nil {
		r.t.Fatalf("list ingests after the restart: %v", err)
	}
	for _, st := range sts {
		if st.Total == chaosLayerSize {
			kept = st.Offset
		}
	}
	// The kill came at least at pullCut; the layer may also have been
	// committed meanwhile, leaving no ingest.
	before := r.sent.Load()
	if _, err := c.Pull(ctx, r.pullOf, client.WithPlainHTTP()); err != nil {
		r.t.Errorf("the pull repeated after a kill at %d bytes of its layer: %v", r.pullCut, err)
		return
	}
	again := r.sent.Load() - before
	r.t.Logf("pull cut at %d of %d layer bytes, ingest kept %d; the repeated pull fetched %d blob bytes", r.pullCut, chaosLayerSize, kept, again)
	if kept > 0 && again > chaosLayerSize-kept+kept/2 {
		r.t.Errorf("the repeated pull fetched %d blob bytes though the ingest kept %d of %d: it started over", again, kept, chaosLayerSize)
	}
	if err := c.DeleteImage(ctx, r.pullOf, client.SynchronousDelete()); err != nil {
		r.t.Errorf("delete the pulled image: %v", err)
	}
	r.pullCut = -1
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
	} else if !errdefs.IsNotFound(err) {
		return fmt.Errorf("task of %s: %w", id, err)
	}
	err = ctr.Delete(ctx, client.WithSnapshotCleanup)
	// A task whose create a kill cut is removed by the restarted daemon
	// in the background: until that is done, Task finds no task but the
	// container's delete still sees one. Bounded: the removal ends.
	for deadline := time.Now().Add(time.Minute); errdefs.IsFailedPrecondition(err) && time.Now().Before(deadline); {
		r.t.Logf("delete %s: %v; trying again", id, err)
		time.Sleep(100 * time.Millisecond)
		err = ctr.Delete(ctx, client.WithSnapshotCleanup)
	}
	return err
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

// subscribeExits subscribes to the /tasks/exit events of the run's
// namespace on the daemon just started, from the first the daemon holds:
// what shims reported to it before the subscription is replayed.
func (r *chaosRun) subscribeExits() {
	r.exits = append(r.exits, r.d.api().subscribe(r.t, &eventsv1.SubscribeRequest{
		Filters: []string{fmt.Sprintf(`topic=="/tasks/exit",namespace==%q`, chaosNS)},
		Since:   timestamppb.New(time.Unix(1, 0)),
	}))
}

// exitCounts returns how many /tasks/exit events every init process and
// every exec process had, over all the daemon's lives.
func (r *chaosRun) exitCounts() (inits, execs map[string]int) {
	inits, execs = map[string]int{}, map[string]int{}
	for _, sub := range r.exits {
		for _, env := range sub.matching(func(*eventsv1.Envelope) bool { return true }) {
			var exit shimapi.TaskExit
			if err := env.Event.UnmarshalTo(&exit); err != nil {
				r.t.Fatalf("/tasks/exit payload: %v", err)
			}
			if exit.ExecId == "" {
				inits[exit.ContainerId]++
			} else {
				execs[exit.ContainerId+"/"+exit.ExecId]++
			}
		}
	}
	return inits, execs
}

// verifyExits runs once every container is deleted: the init exit of each
// container whose Start returned was reported exactly once; no other
// process's exit twice (a container whose create or start a kill cut may
// have run or not). It returns the init exits counted, how many were
// expected exactly once, and the number of exits lost or repeated.
func (r *chaosRun) verifyExits() (counted, expected, bad int) {
	var inits, execs map[string]int
	for _, x := range r.ctrs {
		if x.started {
			expected++
		}
	}
	// Bounded: an exit still on its way arrives within it, a lost one
	// never does.
	deadline := time.Now().Add(time.Minute)
	for {
		inits, execs = r.exitCounts()
		missing := 0
		for _, x := range r.ctrs {
			if x.started && inits[x.id] == 0 {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, x := range r.ctrs {
		counted += inits[x.id]
		switch n := inits[x.id]; {
		case x.started && n != 1, n > 1:
			r.t.Errorf("container %s (started %v): its exit was reported %d times, want once", x.id, x.started, n)
			bad++
		}
	}
	for id, n := range execs {
		if n > 1 {
			r.t.Errorf("exec %s: its exit was reported %d times", id, n)
			bad++
		}
	}
	return counted, expected, bad
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

// fifoFoldersLeft runs once every task is deleted: the daemon removed the
// FIFO folders of every task and exec, whether or not the client's delete
// got through a kill (berthd check cannot tell: this process still holds
// the FIFOs of a cut delete open). It returns how many are left.
func (r *chaosRun) fifoFoldersLeft() int {
	entries, _ := os.ReadDir(filepath.Join(r.d.state, filepath.Base(cio.DefaultFIFODir)))
	for _, e := range entries {
		r.t.Errorf("FIFO folder %s left after every task was deleted", e.Name())
	}
	return len(entries)
}

// check stops the daemon, runs berthd check, logs what it found and
// returns how many problems; each one fails the test. The daemon is
// killed once its Restore has finished: a kill while Restore undoes a
// create that the daemon before did not finish (its shim killed, the
// bundle not yet removed) leaves that bundle, still marked creating, for
// the next Restore (TestRestoreKilledWhileUndoingCreate), and check,
// which sees the state folder as a crash left it, reports it.
func (r *chaosRun) check(when string) int {
	r.d.waitRestored()
	r.d.kill()
	out, code := r.d.check(r.t)
	if code == 0 {
		return 0
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	r.t.Errorf("berthd check %s: %d problems:\n%s", when, len(lines), out)
	return len(lines)
}
