#!/usr/bin/env bash
# CRI conformance: start berthd with its own root and state and the CRI
# configured for the offline critest setup of the shared tooling (images
# from images.sh in a loopback registry on 127.0.0.1:5000, pulled over
# plain HTTP through a hosts.toml; sandbox image 127.0.0.1:5000/pause:3.9;
# the CNI bridge config), run critest.sh against it, and stop everything.
# Run from the repository root after `make build`, as root. Extra
# arguments go to critest (e.g. -ginkgo.focus='PodSandbox').
# The shared tooling is found in $BERTH_SHARED/cri, by default the
# folder `shared` beside the repository; critest's output is in
# $CRITEST_DIR/critest.out (default /tmp/critest).
set -euo pipefail

bin=${BIN:-bin}
shared=${BERTH_SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/shared}/cri
for f in images.sh critest.sh cni-bridge.conflist; do
	if [ ! -e "$shared/$f" ]; then
		echo "critest: $shared/$f not found; set BERTH_SHARED to the folder that holds cri/" >&2
		exit 1
	fi
done
registry=127.0.0.1:5000
# The images and the registry's storage outlive this run (images.sh
# reuses a registry that answers); a registry this run starts is stopped
# at its end.
images=${CRI_IMAGES_DIR:-/tmp/cri-images}
registry_up=
if curl -sf "http://$registry/v2/" >/dev/null; then
	registry_up=1
fi
work=$(mktemp -d /tmp/berth-critest.XXXXXX)
state=/run/berth-critest-$$
pid=

cleanup() {
	if [ -n "$pid" ]; then
		# Pods first, through the CRI, so that CNI releases their
		# addresses; then the daemon, then whatever shims remain.
		crictl=${CRITEST_DIR:-/tmp/critest}/crictl
		if [ -x "$crictl" ]; then
			timeout 120 "$crictl" -r "unix://$state/cri.sock" rmp -fa >/dev/null 2>&1 || true
		fi
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	for cfg in "$state"/*/*/config.json; do
		[ -e "$cfg" ] || continue
		b=$(dirname "$cfg") ns=$(basename "$(dirname "$(dirname "$cfg")")")
		"$bin/berth-shim" delete --namespace "$ns" --id "$(basename "$b")" --bundle "$b" \
			--runtime-root "$state/.runc/$ns" >/dev/null 2>&1 || true
	done
	if [ -d "$state" ]; then
		grep -o " $state[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
	fi
	rm -rf "$work" "$state"
	if [ -z "$registry_up" ]; then
		for p in $(pgrep -x docker-registry || true); do
			if [ "$(readlink "/proc/$p/cwd")" = "$images" ]; then
				kill "$p" 2>/dev/null || true
			fi
		done
	fi
}
trap cleanup EXIT

bash "$shared/images.sh" "$images" "$registry"

mkdir -p "$work/certs.d/$registry" "$work/net.d"
printf 'server = "http://%s"\ncapabilities = ["pull", "resolve", "push"]\n' "$registry" > "$work/certs.d/$registry/hosts.toml"
cp "$shared/cni-bridge.conflist" "$work/net.d/"
cat > "$work/config.toml" <<TOML
version = 1
root = "$work/root"
state = "$state"
[api]
address = "$state/berth.sock"
[registry]
config_path = "$work/certs.d"
[cri]
address = "$state/cri.sock"
sandbox_image = "$registry/pause:3.9"
[cri.cni]
conf_dir = "$work/net.d"
TOML

"$bin/berthd" --config "$work/config.toml" 2>"$work/berthd.log" &
pid=$!
for _ in $(seq 200); do
	[ -S "$state/cri.sock" ] && break
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "berthd exited:" >&2
		cat "$work/berthd.log" >&2
		exit 1
	fi
	sleep 0.05
done
if [ ! -S "$state/cri.sock" ]; then
	echo "berthd serves no CRI socket:" >&2
	cat "$work/berthd.log" >&2
	exit 1
fi

bash "$shared/critest.sh" "unix://$state/cri.sock" "$@"
if [ -n "${CRITEST_KEEP_LOG:-}" ]; then
	cp "$work/berthd.log" "$CRITEST_KEEP_LOG"
fi
