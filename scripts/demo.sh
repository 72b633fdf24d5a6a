#!/usr/bin/env bash
# The main job, end to end: build a busybox OCI image archive from the host's
# busybox-static, start berthd in the background with its own root and state,
# import the archive with berthctl (which unpacks it into snapshots), run
# `echo hello` in a container of the image with berthctl, and stop the daemon.
# Run from the repository root after `make build`, as root.
set -euo pipefail

bin=${BIN:-bin}
work=$(mktemp -d /tmp/berth-demo.XXXXXX)
state=/run/berth-demo-$$
address=$state/berth.sock
pid=

cleanup() {
	if [ -n "$pid" ]; then
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$work" "$state"
}
trap cleanup EXIT

image=docker.io/library/busybox:latest
${GO:-go} run ./internal/testimage/cmd/busybox-archive -name "$image" "$work/busybox.tar"

"$bin/berthd" --root "$work/root" --state "$state" --address "$address" 2>"$work/berthd.log" &
pid=$!
for _ in $(seq 100); do
	if "$bin/berthctl" -a "$address" version >/dev/null 2>&1; then
		break
	fi
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "berthd exited:" >&2
		cat "$work/berthd.log" >&2
		exit 1
	fi
	sleep 0.05
done
"$bin/berthctl" -a "$address" version

set -x
"$bin/berthctl" -a "$address" images import "$work/busybox.tar"
"$bin/berthctl" -a "$address" run --rm "$image" demo echo hello
