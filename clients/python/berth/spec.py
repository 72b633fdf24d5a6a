"""A minimal OCI runtime spec (config.json): the defaults berth's Go client
generates (oci.GenerateSpec), written out for clients without it, and the
process an image's config asks for (oci.WithImageConfig)."""

import posixpath

from .ttrpc import InvalidArgument, NotImplemented_

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# IMAGE_ROOT is the root path of a container whose root filesystem the
# task's mounts build in the bundle (a snapshot of an image).
IMAGE_ROOT = "rootfs"
_HOSTNAME_MAX = 64  # bytes, the kernel's

_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
         "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
         "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]


def _mount(dest, typ, source, *options):
    return {"destination": dest, "type": typ, "source": source, "options": list(options)}


def _dev(major, minor=None):
    d = {"allow": True, "type": "c", "major": major, "access": "rwm"}
    if minor is not None:
        d["minor"] = minor
    return d


def generate(namespace, container_id, rootfs, args, readonly=True, env=None, cwd="/"):
    """The spec of a process args in rootfs (an absolute folder, or
    IMAGE_ROOT for one the task's mounts build), in the cgroup
    /berth/<namespace>/<container_id>, with its own pid, ipc, uts, mount
    and network namespaces. env entries (KEY=VALUE) replace the default
    of the same key."""
    process_env = [DEFAULT_PATH]
    for e in env or []:
        process_env = set_env(process_env, e)
    return {
        "ociVersion": "1.3.0",
        "process": {
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": process_env,
            "cwd": cwd,
            "capabilities": {k: list(_CAPS) for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        },
        "root": {"path": rootfs, "readonly": readonly},
        "hostname": container_id[:_HOSTNAME_MAX],
        "mounts": [
            _mount("/proc", "proc", "proc", "nosuid", "noexec", "nodev"),
            _mount("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
            _mount("/dev/pts", "devpts", "devpts", "nosuid", "noexec", "newinstance",
                   "ptmxmode=0666", "mode=0620", "gid=5"),
            _mount("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777", "size=65536k"),
            _mount("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
            _mount("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
            _mount("/sys/fs/cgroup", "cgroup", "cgroup", "nosuid", "noexec", "nodev", "relatime", "ro"),
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}, _dev(1, 3), _dev(1, 5),
                                      _dev(1, 7), _dev(1, 8), _dev(1, 9), _dev(5, 0), _dev(5, 2),
                                      _dev(136)]},
            "cgroupsPath": "/berth/%s/%s" % (namespace, container_id),
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                            "/proc/latency_stats", "/proc/sched_debug", "/proc/scsi",
                            "/proc/timer_list", "/proc/timer_stats",
                            "/sys/devices/virtual/powercap", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }


def set_env(env, kv):
    """env with kv (KEY=VALUE) in place of the entry of the same key, or
    appended; InvalidArgument for an entry without a key."""
    key, eq, _ = kv.partition("=")
    if not key or not eq:
        raise InvalidArgument("env %r: want KEY=VALUE" % kv)
    out = list(env)
    for i, e in enumerate(out):
        if e.partition("=")[0] == key:
            out[i] = kv
            return out
    return out + [kv]


def with_image_config(spec, config):
    """Sets spec's process from an image's runtime config (the "config" of
    the image's config blob) as oci.WithImageConfig does: args from
    Entrypoint then Cmd (when there are any), Env over the spec's, the
    WorkingDir (absolute), and User when it is numeric ("uid" or
    "uid:gid"; a name is NotImplemented_, as resolving it needs the
    image's /etc/passwd). Returns spec."""
    p = spec.setdefault("process", {})
    args = list(config.get("Entrypoint") or []) + list(config.get("Cmd") or [])
    if args:
        p["args"] = args
    env = p.get("env", [])
    for e in config.get("Env") or []:
        try:
            env = set_env(env, e)
        except InvalidArgument as err:
            raise InvalidArgument("image config: %s" % err) from None
    p["env"] = env
    cwd = config.get("WorkingDir") or ""
    if cwd:
        if not posixpath.isabs(cwd):
            raise InvalidArgument("image config: process cwd %r: must be absolute" % cwd)
        p["cwd"] = cwd
    user = config.get("User") or ""
    if user:
        p["user"] = numeric_user(user)
    return spec


def numeric_user(user):
    """{"uid", "gid"} of "uid" or "uid:gid" (gid 0 when left out)."""
    u, colon, g = user.partition(":")
    ids = {"uid": u, "gid": g if colon else "0"}
    for k, v in ids.items():
        if not v.isdigit() or int(v) >= 1 << 32:
            raise NotImplemented_("image user %r: only numeric users and groups are supported" % user)
        ids[k] = int(v)
    return ids
