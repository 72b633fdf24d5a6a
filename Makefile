# berth: one target per job. Run `make deps` once on a fresh Debian machine (as root).

GO        ?= go
BIN       := bin
PROTOS    := $(shell find . -name '*.proto' -not -path './bin/*' -not -path './clients/*')
# API_PROTOS is the daemon API, the contract for clients in other languages:
# docs/API.md and the Python client's classes are generated from it.
API_PROTOS := $(sort $(wildcard proto/*/v1/*.proto))
PY_GEN    := clients/python/berth/gen
# PYTHON is Debian's python3, which python3-protobuf is installed for (a
# python3 earlier in PATH, from pyenv say, may lack it).
PYTHON    ?= /usr/bin/python3
PROTO_INC ?= /usr/include
DEB_PKGS  := runc busybox-static file protobuf-compiler libprotobuf-dev docker-registry skopeo containerd iproute2 psmisc curl python3 python3-protobuf bash-completion containernetworking-plugins iptables btrfs-progs e2fsprogs mount systemd umoci util-linux make
PREFIX    ?= /usr/local
# SYSTEMD_UNIT_DIR is where systemd looks for the units of software under
# PREFIX: /usr/local/lib/systemd/system, or /usr/lib/systemd/system for a
# package with PREFIX=/usr.
SYSTEMD_UNIT_DIR ?= $(PREFIX)/lib/systemd/system

.PHONY: all build deps protos check-protos docs check-docs test chaos bench install vet demo critest clean

all: build

# berth-shim runs once per container. Built without cgo (nothing in it
# needs cgo) it is static: no libc and loader mapped into each shim, 1.5 MiB
# less RSS when idle (bench/README.md). -s -w drops the symbol table and
# DWARF, which are never mapped: that saves disk, not memory; panics keep
# their stack traces. -trimpath keeps build paths out of the binary.
STATIC_BUILD := CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w"
# The shim's code is compiled without inlining, the Go runtime's too: the
# binary is 0.36 MB (7%) smaller, and since a shim maps nearly all of it
# (fault-around maps cached pages around each fault), each idle shim's RSS
# is about 0.25 MiB lower. Without inlining in its own code the shim's CPU
# time from start to a started container rose 4% (6.6 to 6.9 ms), mostly
# in the spare's start off the path of a run; in the runtime's it rose by
# nothing measurable (bench/README.md, shimbench). Functions are aligned to
# 16 bytes, as GCC and Clang do on x86-64, not to Go's 32: 72 KB less
# padding, and each idle shim's RSS 0.12 MiB lower (bench/README.md).
# cmd/shim's TestBuildFlags checks these flags.
SHIM_BUILD := CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -funcalign=16" -gcflags=all=-l
# berthctl is started for every command a user or script types, so its
# start is on the critical path of `berthctl run`: static and stripped it
# starts 3-5 ms (12-15%) sooner, with no dynamic loader to run and 4 MB less
# binary to map. Nothing in it needs cgo (the registry client resolves
# names with Go's own resolver).
CTL_BUILD := $(STATIC_BUILD)

build:
	$(GO) build -o $(BIN)/berthd ./cmd/daemon
	$(SHIM_BUILD) -o $(BIN)/berth-shim ./cmd/shim
	$(CTL_BUILD) -o $(BIN)/berthctl ./cmd/ctl
	$(STATIC_BUILD) -o $(BIN)/native-snapshotter ./cmd/native-snapshotter

# deps installs the Debian packages that building and testing need.
deps:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(DEB_PKGS)

# protos regenerates the Go code beside every .proto, with the generators
# pinned as tool dependencies in go.mod, and the Python client's classes
# (clients/python/berth/gen) from the daemon API.
protos:
	@for p in $(PROTOS); do \
		d=$$(dirname $$p); \
		protoc -I . -I $(PROTO_INC) \
			--plugin=protoc-gen-go="$$($(GO) tool -n protoc-gen-go)" \
			--plugin=protoc-gen-go-ttrpc="$$($(GO) tool -n protoc-gen-go-ttrpc)" \
			--go_out=paths=source_relative:. \
			--go-ttrpc_out=paths=source_relative:. \
			$$p || exit 1; \
	done
	rm -rf $(PY_GEN)/proto
	protoc -I . -I $(PROTO_INC) --python_out=$(PY_GEN) $(API_PROTOS)

# check-protos fails when the committed generated code differs from what
# the .proto files generate.
check-protos: protos
	@git diff --exit-code -- '*.pb.go' $(PY_GEN) || (echo "generated code is stale: run make protos and commit" >&2; exit 1)
	@test -z "$$(git status --porcelain -- '*.pb.go' $(PY_GEN))" || (echo "untracked generated code: commit it" >&2; git status --porcelain -- '*.pb.go' $(PY_GEN); exit 1)

# docs renders docs/API.md from the daemon API's .proto files and their
# comments (docs/apigen.py reads protoc's descriptor set with source info).
docs:
	@mkdir -p $(BIN)
	protoc -I . -I $(PROTO_INC) --include_source_info --descriptor_set_out=$(BIN)/api.pb $(API_PROTOS)
	$(PYTHON) docs/apigen.py $(BIN)/api.pb > $(BIN)/API.md
	mv $(BIN)/API.md docs/API.md

# check-docs fails when docs/API.md differs from what the .proto files give.
check-docs: docs
	@git diff --exit-code -- docs/API.md || (echo "docs/API.md is stale: run make docs and commit" >&2; exit 1)

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (echo "gofmt needed:" >&2; gofmt -l $$(git ls-files '*.go'); exit 1)

# test runs every test: static checks, then the whole suite as root with
# real runc. CI runs exactly this (see README and .ci/run).
test: build check-protos check-docs vet
	$(GO) test -count=1 -timeout 15m ./...

# chaos is the long form of the fault-injection run (integration/chaos_test.go):
# CHAOS_N SIGKILLs of berthd at random points of create, start, exec, pull,
# import, commit and delete (pulls through a throttling proxy, killed
# mid-layer, then repeated), then berthd check and a count of /tasks/exit
# events across the restarts (each exit once). make test runs a short form
# (6 kills). CHAOS_SEED replays a run; each run logs its seed.
CHAOS_N    ?= 50
CHAOS_SEED ?=
chaos: build
	CI=true BERTH_CHAOS_N=$(CHAOS_N) BERTH_CHAOS_SEED=$(CHAOS_SEED) $(GO) test -count=1 -timeout 60m -run '^TestChaos$$' -v ./integration

# demo is the main job: berthd in the background with its own root and
# state, a busybox root filesystem, `berthctl run --rm … echo hello`, and
# the daemon stopped again.
demo: build
	BIN=$(BIN) GO=$(GO) scripts/demo.sh

# critest runs the CRI conformance suite (cri-tools' critest, built from
# the Go module proxy) against a berthd of its own, offline, with the
# shared tooling in ../shared/cri (or $(BERTH_SHARED)/cri); it takes
# minutes. CRITEST_ARGS go to critest, e.g. -ginkgo.focus=PodSandbox.
critest: build
	BIN=$(BIN) scripts/critest.sh $(CRITEST_ARGS)

# bench runs every benchmark (see bench/README.md): the shim against runc,
# berthd against runc and containerd, pull throughput against curl and
# containerd, then pull with unpack and run from an image against
# containerd (bench/unpackbench/README.md).
bench: build
	$(GO) run ./bench/shimbench -shim $(BIN)/berth-shim
	$(GO) run ./bench/daemonbench -berthd $(BIN)/berthd -berthctl $(BIN)/berthctl -shim $(BIN)/berth-shim
	$(GO) run ./bench/pullbench -berthd $(BIN)/berthd -berthctl $(BIN)/berthctl
	$(GO) run ./bench/unpackbench -berthd $(BIN)/berthd -berthctl $(BIN)/berthctl -shim $(BIN)/berth-shim

install: build
	install -D -m 0755 $(BIN)/berthd $(DESTDIR)$(PREFIX)/bin/berthd
	install -D -m 0755 $(BIN)/berth-shim $(DESTDIR)$(PREFIX)/bin/berth-shim
	install -D -m 0755 $(BIN)/berthctl $(DESTDIR)$(PREFIX)/bin/berthctl
	# The systemd unit, its ExecStart the berthd installed above.
	install -d $(DESTDIR)$(SYSTEMD_UNIT_DIR)
	sed 's|@BINDIR@|$(PREFIX)/bin|g' contrib/systemd/berthd.service > $(DESTDIR)$(SYSTEMD_UNIT_DIR)/berthd.service
	chmod 0644 $(DESTDIR)$(SYSTEMD_UNIT_DIR)/berthd.service
	# berthctl's completion scripts, where each shell looks for them under
	# PREFIX; bash's needs the bash-completion package.
	install -d $(DESTDIR)$(PREFIX)/share/bash-completion/completions \
		$(DESTDIR)$(PREFIX)/share/zsh/site-functions \
		$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	$(BIN)/berthctl completion bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/berthctl
	$(BIN)/berthctl completion zsh > $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_berthctl
	$(BIN)/berthctl completion fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/berthctl.fish

clean:
	rm -rf $(BIN)
