package oci

import (
	"runtime"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// berth's default seccomp profile is an allowlist: every syscall not named
// here fails with EPERM. It is berth's own list, grouped by what a
// syscall is for, in the shape of the profile Docker made well known:
// what ordinary programs need is allowed; what reaches outside the
// container's view (mounts, namespaces, kernel modules, the clock,
// tracing of other processes, BPF) is allowed only to a container whose
// bounding set holds the capability that governs it, so that granting the
// capability also lifts the filter; and a few families with a history of
// kernel bugs that containers rarely need (keyrings, io_uring,
// userfaultfd) are left out. A syscall newer than the profile's libseccomp
// gets ENOSYS from runc, so that libc falls back.

// seccompAllowed are allowed to every container.
var seccompAllowed = [][]string{
	// files and folders
	{
		"access", "chdir", "chmod", "chown", "chown32", "close", "close_range", "copy_file_range", "creat",
		"dup", "dup2", "dup3", "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate",
		"fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64",
		"fdatasync", "flock", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync",
		"ftruncate", "ftruncate64", "futimesat", "getcwd", "getdents", "getdents64", "lchown", "lchown32",
		"link", "linkat", "_llseek", "lseek", "lstat", "lstat64", "mkdir", "mkdirat", "mknod", "mknodat",
		"newfstatat", "open", "openat", "openat2", "pread64", "preadv", "preadv2", "pwrite64", "pwritev",
		"pwritev2", "read", "readahead", "readlink", "readlinkat", "readv", "rename", "renameat",
		"renameat2", "rmdir", "sendfile", "sendfile64", "splice", "stat", "stat64", "statfs", "statfs64",
		"statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "tee", "truncate",
		"truncate64", "umask", "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes",
		"vmsplice", "write", "writev", "name_to_handle_at", "cachestat",
	},
	// extended attributes
	{
		"fgetxattr", "flistxattr", "fremovexattr", "fsetxattr", "getxattr", "lgetxattr", "listxattr",
		"llistxattr", "lremovexattr", "lsetxattr", "removexattr", "setxattr",
		"getxattrat", "listxattrat", "removexattrat", "setxattrat",
	},
	// waiting on files, events and timers
	{
		"epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2",
		"epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "inotify_add_watch", "inotify_init",
		"inotify_init1", "inotify_rm_watch", "fanotify_mark", "poll", "ppoll", "ppoll_time64", "pselect6",
		"pselect6_time64", "select", "_newselect", "signalfd", "signalfd4", "timerfd_create",
		"timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64",
		"io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64", "io_setup",
		"io_submit", "ioctl", "pipe", "pipe2",
	},
	// memory
	{
		"brk", "madvise", "membarrier", "memfd_create", "memfd_secret", "mincore", "mlock", "mlock2",
		"mlockall", "mmap", "mmap2", "mprotect", "mremap", "msync", "munlock", "munlockall", "munmap",
		"pkey_alloc", "pkey_free", "pkey_mprotect", "remap_file_pages", "map_shadow_stack", "mseal",
	},
	// processes, threads and signals
	{
		"capget", "capset", "execve", "execveat", "exit", "exit_group", "fork", "vfork", "futex",
		"futex_requeue", "futex_time64", "futex_wait", "futex_waitv", "futex_wake", "get_robust_list",
		"set_robust_list", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "setpriority",
		"getrlimit", "setrlimit", "ugetrlimit", "prlimit64", "getrusage", "getsid", "setsid", "setpgid",
		"gettid", "kill", "tgkill", "tkill", "pause", "pidfd_open", "pidfd_send_signal", "prctl",
		"restart_syscall", "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo",
		"rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo",
		"sigaltstack", "sigprocmask", "sigreturn", "seccomp", "set_tid_address", "get_thread_area",
		"set_thread_area", "wait4", "waitid", "waitpid", "process_mrelease", "times",
		"ioprio_get", "ioprio_set", "getcpu",
		"sched_getaffinity", "sched_getattr", "sched_getparam", "sched_get_priority_max",
		"sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval",
		"sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr", "sched_setparam",
		"sched_setscheduler", "sched_yield",
		"landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self",
	},
	// users and groups (the capability set decides what a change may do)
	{
		"getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32",
		"getresgid", "getresgid32", "getresuid", "getresuid32", "getuid", "getuid32", "setfsgid",
		"setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32",
		"setregid", "setregid32", "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid",
		"setreuid32", "setuid", "setuid32",
	},
	// time (reading it, and timers)
	{
		"alarm", "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64",
		"clock_nanosleep", "clock_nanosleep_time64", "getitimer", "setitimer", "gettimeofday",
		"nanosleep", "time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
		"timer_gettime64", "timer_settime", "timer_settime64", "adjtimex",
	},
	// sockets (the network namespace decides what they reach)
	{
		"accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt", "listen",
		"recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "send", "sendmmsg", "sendmsg",
		"sendto", "setsockopt", "shutdown", "socket", "socketcall", "socketpair",
	},
	// System V and POSIX IPC (the ipc namespace bounds them)
	{
		"ipc", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
		"mq_timedsend", "mq_timedsend_time64", "mq_unlink", "msgctl", "msgget", "msgrcv", "msgsnd",
		"semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "shmat", "shmctl", "shmdt",
		"shmget",
	},
	// the system, read only
	{"getrandom", "sysinfo", "uname"},
}

// seccompAllowedArch are allowed on one architecture only.
var seccompAllowedArch = map[string][]string{
	"amd64": {"arch_prctl", "modify_ldt"},
	"386":   {"arch_prctl", "modify_ldt"},
	"arm64": {},
	"arm":   {"arm_fadvise64_64", "arm_sync_file_range", "breakpoint", "cacheflush", "set_tls", "sync_file_range2"},
}

// seccompByCapability are allowed when the container's bounding set holds
// the capability that governs them.
var seccompByCapability = []struct {
	caps  []string // any of them
	names []string
}{
	{[]string{"CAP_SYS_ADMIN"}, []string{
		"clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick", "lookup_dcookie",
		"mount", "mount_setattr", "move_mount", "open_tree", "pivot_root", "quotactl", "quotactl_fd",
		"setdomainname", "sethostname", "setns", "umount", "umount2", "unshare", "listmount", "statmount",
	}},
	{[]string{"CAP_SYS_ADMIN", "CAP_BPF"}, []string{"bpf"}},
	{[]string{"CAP_SYS_ADMIN", "CAP_PERFMON"}, []string{"perf_event_open"}},
	{[]string{"CAP_SYS_ADMIN", "CAP_SYSLOG"}, []string{"syslog"}},
	{[]string{"CAP_SYS_BOOT"}, []string{"reboot", "kexec_load", "kexec_file_load"}},
	{[]string{"CAP_SYS_CHROOT"}, []string{"chroot"}},
	{[]string{"CAP_SYS_MODULE"}, []string{"delete_module", "init_module", "finit_module"}},
	{[]string{"CAP_SYS_PACCT"}, []string{"acct"}},
	{[]string{"CAP_SYS_PTRACE"}, []string{
		"kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace",
	}},
	{[]string{"CAP_SYS_RAWIO"}, []string{"iopl", "ioperm"}},
	{[]string{"CAP_SYS_TIME"}, []string{"settimeofday", "stime", "clock_settime", "clock_settime64", "clock_adjtime", "clock_adjtime64"}},
	{[]string{"CAP_SYS_TTY_CONFIG"}, []string{"vhangup"}},
	{[]string{"CAP_SYS_NICE"}, []string{"get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node", "move_pages", "migrate_pages"}},
	{[]string{"CAP_DAC_READ_SEARCH"}, []string{"open_by_handle_at"}},
}

// cloneNamespaceFlags are the clone flags that make new namespaces
// (CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET).
const cloneNamespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS |
	unix.CLONE_NEWIPC | unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET

// personalities are the personality(2) values allowed without
// CAP_SYS_ADMIN: the default, PER_LINUX32, UNAME26 variants and the
// query (0xffffffff).
var personalities = []uint64{0x0, 0x8, 0x20000, 0x20008, 0xffffffff}

// DefaultSeccomp returns berth's default seccomp profile for a container
// whose bounding capability set is caps, for the architecture berth runs
// on (and its 32-bit companions).
func DefaultSeccomp(caps []string) *specs.LinuxSeccomp {
	allow := []string{}
	for _, g := range seccompAllowed {
		allow = append(allow, g...)
	}
	allow = append(allow, seccompAllowedArch[runtime.GOARCH]...)
	for _, c := range seccompByCapability {
		if slices.ContainsFunc(c.caps, func(n string) bool { return slices.Contains(caps, n) }) {
			allow = append(allow, c.names...)
		}
	}
	slices.Sort(allow)
	allow = slices.Compact(allow)

	eperm, enosys := uint(unix.EPERM), uint(unix.ENOSYS)
	sc := &specs.LinuxSeccomp{
		DefaultAction:   specs.ActErrno,
		DefaultErrnoRet: &eperm,
		Architectures:   seccompArchitectures(runtime.GOARCH),
		Syscalls:        []specs.LinuxSyscall{{Names: allow, Action: specs.ActAllow}},
	}
	for _, p := range personalities {
		sc.Syscalls = append(sc.Syscalls, specs.LinuxSyscall{
			Names: []string{"personality"}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: p, Op: specs.OpEqualTo}},
		})
	}
	if !slices.Contains(caps, "CAP_SYS_ADMIN") {
		// clone without namespace flags; clone3 passes its flags in
		// memory a filter cannot read, so it reports ENOSYS and libc
		// falls back to clone.
		sc.Syscalls = append(sc.Syscalls,
			specs.LinuxSyscall{
				Names: []string{"clone"}, Action: specs.ActAllow,
				Args: []specs.LinuxSeccompArg{{Index: cloneFlagsArg(), Value: cloneNamespaceFlags, ValueTwo: 0, Op: specs.OpMaskedEqual}},
			},
			specs.LinuxSyscall{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &enosys},
		)
	}
	return sc
}

// cloneFlagsArg is the index of clone's flags argument: the second on
// s390, the first elsewhere.
func cloneFlagsArg() uint {
	if runtime.GOARCH == "s390x" {
		return 1
	}
	return 0
}

// seccompArchitectures are the seccomp architectures a process of goarch
// may use: its own and the 32-bit ABIs it can run.
func seccompArchitectures(goarch string) []specs.Arch {
	switch goarch {
	case "amd64":
		return []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}
	case "386":
		return []specs.Arch{specs.ArchX86}
	case "arm64":
		return []specs.Arch{specs.ArchAARCH64, specs.ArchARM}
	case "arm":
		return []specs.Arch{specs.ArchARM}
	case "ppc64le":
		return []specs.Arch{specs.ArchPPC64LE}
	case "s390x":
		return []specs.Arch{specs.ArchS390X, specs.ArchS390}
	case "riscv64":
		return []specs.Arch{specs.ArchRISCV64}
	}
	return nil
}
