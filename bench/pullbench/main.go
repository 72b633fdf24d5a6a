// Command pullbench measures the fetch throughput of an image of
// incompressible layers from a loopback docker-registry that it starts:
// `berthctl images pull --plain-http` through a berthd it starts, beside
// curl of the same blobs (sequential in one curl, and parallel with -Z),
// each writing files and fsyncing them as berth does, and beside
// containerd's `ctr content fetch --plain-http` (a pull without unpack,
// as berth's is). Rounds are interleaved; it prints medians in MiB/s and
// the ratio berth/curl. Everything it starts is stopped, and its
// workspace removed, at the end.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthrt/berth/bench/internal/containerd"
	"github.com/berthrt/berth/bench/internal/daemon"
	"github.com/berthrt/berth/bench/internal/stats"
	"github.com/berthrt/berth/content"
	"github.com/berthrt/berth/distribution"
	"github.com/berthrt/berth/storage/content/local"
)

const (
	// goal is the ratio berth/curl the issue asks for.
	goal = 1.3
	// ns is the namespace of berth and containerd.
	ns = "pullbench"
)

type config struct {
	berthd, berthctl, registry, containerd, ctr, curl string
	rounds, layers, layerMiB                          int
}

func main() {
	var cfg config
	flag.StringVar(&cfg.berthd, "berthd", "bin/berthd", "berthd binary")
	flag.StringVar(&cfg.berthctl, "berthctl", "bin/berthctl", "berthctl binary")
	flag.StringVar(&cfg.registry, "registry", "docker-registry", "docker-registry binary")
	flag.StringVar(&cfg.containerd, "containerd", "containerd", "containerd binary (skipped when absent)")
	flag.StringVar(&cfg.ctr, "ctr", "ctr", "ctr binary")
	flag.StringVar(&cfg.curl, "curl", "curl", "curl binary")
	flag.IntVar(&cfg.rounds, "rounds", 5, "interleaved rounds")
	flag.IntVar(&cfg.layers, "layers", 4, "layers in the image")
	flag.IntVar(&cfg.layerMiB, "layer-mib", 64, "size of each layer in MiB")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "pullbench:", err)
		os.Exit(1)
	}
}

// contender is one way of fetching the image: fetch is timed, reset
// (not timed) makes the next fetch start from nothing.
type contender struct {
	name  string
	fetch func(ctx context.Context) error
	reset func(ctx context.Context) error
}

func run(ctx context.Context, cfg config) (err error) {
	// On disk, not on a tmpfs: berth and curl both write and fsync there.
	dir, err := os.MkdirTemp("/var/tmp", "pullbench-")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(dir)) }()
	var procs []*daemon.Process
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			err = errors.Join(err, procs[i].Stop())
		}
	}()

	reg, err := daemon.StartRegistry(ctx, cfg.registry, dir)
	if err != nil {
		return err
	}
	procs = append(procs, reg.Process)
	ref := reg.Addr + "/bench/pull:1"
	blobs, err := pushImage(ctx, dir, ref, cfg.layers, cfg.layerMiB<<20)
	if err != nil {
		return err
	}
	var urls []string
	var total int64
	for _, b := range blobs[:len(blobs)-1] { // not the manifest
		urls = append(urls, "http://"+reg.Addr+"/v2/bench/pull/blobs/"+b.Digest.String())
		total += b.Size
	}

	berth, bp, err := startBerth(ctx, cfg, dir)
	if err != nil {
		return err
	}
	procs = append(procs, bp)
	contenders := []contender{
		// --no-unpack: the fetch is what is compared with curl and ctr
		// content fetch (the layers are random bytes, not tars).
		{name: "berthctl images pull", fetch: func(ctx context.Context) error {
			return berth.run(ctx, "images", "pull", "--no-unpack", "--plain-http", ref)
		}, reset: func(ctx context.Context) error {
			return berth.run(ctx, "images", "rm", "--sync", ref)
		}},
	}
	outDir := filepath.Join(dir, "curl")
	for _, parallel := range []bool{false, true} {
		name := "curl, sequential"
		if parallel {
			name = "curl -Z, parallel"
		}
		contenders = append(contenders, contender{name: name,
			fetch: func(ctx context.Context) error { return curlFetch(ctx, cfg.curl, outDir, urls, parallel) },
			reset: func(context.Context) error { return os.RemoveAll(outDir) },
		})
	}
	version := ""
	if _, lerr := exec.LookPath(cfg.containerd); lerr == nil {
		ctr, cp, v, err := startContainerd(ctx, cfg, dir)
		if err != nil {
			return err
		}
		procs = append(procs, cp)
		version = v
		contenders = append(contenders, contender{name: "ctr content fetch",
			fetch: func(ctx context.Context) error { return ctr.run(ctx, "content", "fetch", "--plain-http", ref) },
			reset: func(ctx context.Context) error {
				args := []string{"content", "rm"}
				for _, b := range blobs {
					args = append(args, b.Digest.String())
				}
				return ctr.run(ctx, args...)
			}})
	} else {
		fmt.Printf("containerd not found (%v): skipped\n", lerr)
	}

	times := make([]stats.Samples, len(contenders))
	for round := range cfg.rounds {
		// Interleaved, the order turned each round, so that neither a
		// noisy neighbour nor a warm cache favours one contender.
		for k := range contenders {
			i := (k + round) % len(contenders)
			c := contenders[i]
			start := time.Now()
			if err := c.fetch(ctx); err != nil {
				return fmt.Errorf("round %d: %s: %w", round, c.name, err)
			}
			times[i] = append(times[i], time.Since(start))
			if err := c.reset(ctx); err != nil {
				return fmt.Errorf("round %d: %s: reset: %w", round, c.name, err)
			}
		}
	}

	mib := float64(total) / (1 << 20)
	fmt.Printf("pull of %d incompressible layers of %d MiB (%.0f MiB) from a loopback docker-registry, %d interleaved rounds, medians\n",
		cfg.layers, cfg.layerMiB, mib, cfg.rounds)
	if version != "" {
		fmt.Printf("containerd: %s\n", version)
	}
	fmt.Printf("%-24s %10s %10s %10s\n", "", "median", "p90", "MiB/s")
	for i, c := range contenders {
		med := times[i].Median()
		fmt.Printf("%-24s %9.2fs %9.2fs %10.0f\n", c.name, med.Seconds(), times[i].P90().Seconds(), mib/med.Seconds())
	}
	for i := 1; i <= 2; i++ {
		r := stats.Ratio(times[0], times[i])
		verdict := "met"
		if r > goal {
			verdict = "MISSED"
		}
		fmt.Printf("berth/%s: %.2f (goal ≤ %.1f: %s)\n", contenders[i].name, r, goal, verdict)
	}
	if len(contenders) > 3 {
		fmt.Printf("berth/%s: %.2f\n", contenders[3].name, stats.Ratio(times[0], times[3]))
	}
	return nil
}

// curlFetch downloads urls into files of dir, in one curl (one after the
// other over one connection, or all at once with -Z), then fsyncs the
// files, as berth's content store does before a commit.
func curlFetch(ctx context.Context, curl, dir string, urls []string, parallel bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	args := []string{"-sSf"}
	if parallel {
		args = append(args, "-Z", "--parallel-max", fmt.Sprint(len(urls)))
	}
	var files []string
	for i, u := range urls {
		f := filepath.Join(dir, fmt.Sprintf("blob-%d", i))
		files = append(files, f)
		args = append(args, "-o", f, u)
	}
	if err := command(ctx, curl, args...); err != nil {
		return err
	}
	return command(ctx, "sync", files...)
}

// command runs name with args and says what failed with its output.
func command(ctx context.Context, name string, args ...string) error {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// pushImage builds an image of n layers of size random bytes in a content
// store under dir and pushes it to ref; it returns the config and layers
// (the blobs to fetch) and, last, the manifest.
func pushImage(ctx context.Context, dir, ref string, n, size int) ([]ocispec.Descriptor, error) {
	store, err := local.NewStore(filepath.Join(dir, "build"))
	if err != nil {
		return nil, err
	}
	add := func(mediaType string, data []byte) (ocispec.Descriptor, error) {
		d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
		return d, content.WriteBlob(ctx, store, "build-"+d.Digest.Encoded(), bytes.NewReader(data), d)
	}
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, RootFS: ocispec.RootFS{Type: "layers"}}
	var layers []ocispec.Descriptor
	data := make([]byte, size)
	for range n {
		if _, err := rand.Read(data); err != nil {
			return nil, err
		}
		l, err := add(ocispec.MediaTypeImageLayer, data)
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.Digest)
	}
	cfgData, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cd, err := add(ocispec.MediaTypeImageConfig, cfgData)
	if err != nil {
		return nil, err
	}
	m, err := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cd, Layers: layers})
	if err != nil {
		return nil, err
	}
	md, err := add(ocispec.MediaTypeImageManifest, m)
	if err != nil {
		return nil, err
	}
	r, err := distribution.NewResolver(distribution.ResolverOptions{PlainHTTP: true, DockerConfig: filepath.Join(dir, "no-config.json")})
	if err != nil {
		return nil, err
	}
	if err := distribution.Push(ctx, r, store, ref, md); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(filepath.Join(dir, "build")); err != nil {
		return nil, err
	}
	return append(layers, cd, md), nil
}

// cli runs a daemon's command-line client with its global flags first.
type cli struct {
	bin    string
	global []string
}

func (c cli) run(ctx context.Context, args ...string) error {
	return command(ctx, c.bin, append(append([]string(nil), c.global...), args...)...)
}

// startBerth starts berthd with its root under dir and its state and
// socket in a folder of its own under /run, removed when it stops.
func startBerth(ctx context.Context, cfg config, dir string) (cli, *daemon.Process, error) {
	run, err := os.MkdirTemp("/run", "pullbench-")
	if err != nil {
		return cli{}, nil, err
	}
	address := filepath.Join(run, "berth.sock")
	p, err := daemon.Start("berthd", filepath.Join(dir, "berthd.log"), cfg.berthd,
		"--root", filepath.Join(dir, "berth"), "--state", run, "--address", address)
	if err != nil {
		return cli{}, nil, errors.Join(err, os.RemoveAll(run))
	}
	p.OnStop(func() error { return os.RemoveAll(run) })
	c := cli{bin: cfg.berthctl, global: []string{"-a", address, "-n", ns}}
	if err := p.WaitReady(ctx, func() error { return c.run(ctx, "images", "ls", "-q") }); err != nil {
		return cli{}, nil, errors.Join(err, p.Stop())
	}
	return c, p, nil
}

// startContainerd starts containerd with its root under dir and its state
// and socket in a folder of its own under /run, removed when it stops; it
// returns containerd's version too.
func startContainerd(ctx context.Context, cfg config, dir string) (cli, *daemon.Process, string, error) {
	run, err := os.MkdirTemp("/run", "pullbench-c-")
	if err != nil {
		return cli{}, nil, "", err
	}
	address := filepath.Join(run, "c.sock")
	setup, err := containerd.Configure(cfg.containerd, filepath.Join(dir, "containerd.toml"), filepath.Join(dir, "containerd"), run, address)
	if err != nil {
		return cli{}, nil, "", errors.Join(err, os.RemoveAll(run))
	}
	p, err := daemon.Start("containerd", filepath.Join(dir, "containerd.log"), setup.Args...)
	if err != nil {
		return cli{}, nil, "", errors.Join(err, os.RemoveAll(run))
	}
	p.OnStop(func() error { return os.RemoveAll(run) })
	c := cli{bin: cfg.ctr, global: []string{"-a", address, "-n", ns}}
	if err := p.WaitReady(ctx, func() error { return c.run(ctx, "version") }); err != nil {
		return cli{}, nil, "", errors.Join(err, p.Stop())
	}
	return c, p, setup.Version, nil
}
