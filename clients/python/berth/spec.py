"""A minimal OCI runtime spec (config.json) for a container whose root
filesystem is a ready folder: the defaults berth's Go client generates
(oci.GenerateSpec), written out for clients without it."""

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
    """The spec of a process args in rootfs (an absolute folder), in the
    cgroup /berth/<namespace>/<container_id>, with its own pid, ipc, uts,
    mount and network namespaces."""
    return {
        "ociVersion": "1.3.0",
        "process": {
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + list(env or []),
            "cwd": cwd,
            "capabilities": {k: list(_CAPS) for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        },
        "root": {"path": rootfs, "readonly": readonly},
        "hostname": container_id,
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
