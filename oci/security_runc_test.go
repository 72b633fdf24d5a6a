package oci

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// statusField returns the value of field in a /proc/PID/status dump.
func statusField(t *testing.T, status, field string) string {
	t.Helper()
	for _, l := range strings.Split(status, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && k == field {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in status:\n%s", field, status)
	return ""
}

// capBit is the bit of a capability in /proc/PID/status's masks.
var capBit = map[string]uint{"CAP_CHOWN": 0, "CAP_NET_RAW": 13, "CAP_SYS_ADMIN": 21}

func hasCap(t *testing.T, mask, name string) bool {
	t.Helper()
	m, err := strconv.ParseUint(mask, 16, 64)
	if err != nil {
		t.Fatalf("capability mask %q: %v", mask, err)
	}
	return m&(1<<capBit[name]) != 0
}

// TestRuncSecurity runs containers with security options under real runc
// and checks, from inside, that the kernel applies them.
func TestRuncSecurity(t *testing.T) {
	runc, busybox := requireRunc(t)
	const namespace = "berth-oci-sec-test"
	t.Cleanup(func() { removeCgroupParents(namespace) })
	run := func(t *testing.T, id, script string, opts ...SpecOpts) (string, error) {
		t.Helper()
		bundle := newBusyboxBundle(t, busybox)
		return runInRunc(t, runc, bundle, namespace, id, append([]SpecOpts{WithProcessArgs("sh", "-c", script)}, opts...)...)
	}

	t.Run("dropped capability is absent", func(t *testing.T) {
		out, err := run(t, "caps", "cat /proc/self/status", WithCapabilities([]string{"SYS_ADMIN"}, []string{"NET_RAW"}))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"CapBnd", "CapEff", "CapPrm"} {
			m := statusField(t, out, f)
			if hasCap(t, m, "CAP_NET_RAW") || !hasCap(t, m, "CAP_SYS_ADMIN") || !hasCap(t, m, "CAP_CHOWN") {
				t.Errorf("%s %s: want CAP_CHOWN and CAP_SYS_ADMIN without CAP_NET_RAW", f, m)
			}
		}
	})

	t.Run("no new privileges", func(t *testing.T) {
		for _, nnp := range []bool{false, true} {
			var opts []SpecOpts
			if nnp {
				opts = append(opts, WithNoNewPrivileges)
			}
			out, err := run(t, fmt.Sprintf("nnp-%v", nnp), "cat /proc/self/status", opts...)
			if err != nil {
				t.Fatal(err)
			}
			want := map[bool]string{false: "0", true: "1"}[nnp]
			if got := statusField(t, out, "NoNewPrivs"); got != want {
				t.Errorf("NoNewPrivs %s, want %s", got, want)
			}
		}
	})

	// unshare(CLONE_NEWUSER) needs no capability, so only the filter can
	// refuse it: it works unconfined and fails under the default profile.
	t.Run("seccomp default profile denies", func(t *testing.T) {
		script := "grep Seccomp: /proc/self/status; unshare -U true && echo unshared || echo refused"
		out, err := run(t, "seccomp-unconfined", script, WithSeccompUnconfined)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "Seccomp:\t0") || !strings.Contains(out, "unshared") {
			t.Fatalf("unconfined: %q, want no filter and unshare working (does this kernel allow user namespaces?)", out)
		}
		out, err = run(t, "seccomp-default", script, WithDefaultSeccomp)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "Seccomp:\t2") || !strings.Contains(out, "refused") {
			t.Errorf("default profile: %q, want a filter and unshare refused", out)
		}
		// Granting CAP_SYS_ADMIN lifts the filter on unshare.
		out, err = run(t, "seccomp-admin", script, WithCapabilities([]string{"SYS_ADMIN"}, nil), WithDefaultSeccomp)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "unshared") {
			t.Errorf("default profile with CAP_SYS_ADMIN: %q, want unshare to work", out)
		}
	})

	t.Run("seccomp localhost profile", func(t *testing.T) {
		profile := filepath.Join(t.TempDir(), "deny-chmod.json")
		if err := os.WriteFile(profile, []byte(`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["chmod", "fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}`), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := run(t, "seccomp-localhost", "touch /tmp/f && busybox chmod 600 /tmp/f 2>&1; echo rc=$?", WithSeccompProfileFile(profile))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "Permission denied") || !strings.Contains(out, "rc=1") {
			t.Errorf("chmod under a profile that denies it: %q", out)
		}
	})

	t.Run("masked and read-only paths", func(t *testing.T) {
		script := "wc -c < /proc/timer_list; echo x > /proc/sys/kernel/hostname 2>/dev/null && echo wrote || echo read-only"
		out, err := run(t, "masked", script)
		if err != nil {
			t.Fatal(err)
		}
		if f := strings.Fields(out); len(f) != 2 || f[0] != "0" || f[1] != "read-only" {
			t.Errorf("default: %q, want /proc/timer_list empty and /proc/sys read-only", out)
		}
		out, err = run(t, "unmasked", script, WithMaskedPaths(nil), WithReadonlyPaths(nil), WithCapabilities([]string{"SYS_ADMIN"}, nil))
		if err != nil {
			t.Fatal(err)
		}
		if f := strings.Fields(out); len(f) != 2 || f[0] == "0" || f[1] != "wrote" {
			t.Errorf("unmasked: %q, want /proc/timer_list readable and the uts hostname writable", out)
		}
	})

	t.Run("privileged", func(t *testing.T) {
		out, err := run(t, "privileged", "grep -E 'CapBnd|Seccomp:' /proc/self/status; wc -c < /proc/timer_list; ls /dev | grep -c .",
			WithDefaultSeccomp, WithPrivileged, WithHostDevices)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "Seccomp:\t0") || !hasCap(t, statusField(t, out, "CapBnd"), "CAP_SYS_ADMIN") {
			t.Errorf("privileged: %q, want no filter and CAP_SYS_ADMIN", out)
		}
		if f := strings.Fields(out); len(f) < 2 || f[len(f)-2] == "0" {
			t.Errorf("privileged: %q, want /proc/timer_list readable", out)
		}
	})

	t.Run("run as username", func(t *testing.T) {
		bundle := newBusyboxBundle(t, busybox)
		etc := filepath.Join(bundle, "rootfs/etc")
		if err := os.WriteFile(filepath.Join(etc, "passwd"), []byte("root:x:0:0::/root:/bin/sh\napp:x:1234:2345::/:/bin/sh\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(etc, "group"), []byte("root:x:0:\napp:x:2345:\nextra:x:3456:root,app\nother:x:4567:root\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := runInRunc(t, runc, bundle, namespace, "username",
			WithProcessArgs("sh", "-c", "echo $(id -u) $(id -g) $(id -G)"), WithUser("app"), WithAdditionalGIDs(42))
		if err != nil {
			t.Fatal(err)
		}
		if out != "1234 2345 2345 42 3456\n" {
			t.Errorf("id: %q, want uid 1234, gid 2345, groups 2345 42 3456 (the kernel sorts them)", out)
		}
	})

	t.Run("oom score adj restricted", func(t *testing.T) {
		_, own, err := ClampOOMScoreAdj(0)
		if err != nil {
			t.Fatal(err)
		}
		out, err := run(t, "oom", "cat /proc/self/oom_score_adj", WithOOMScoreAdj(-1000, true))
		if err != nil {
			t.Fatalf("a restricted score must never fail the container: %v", err)
		}
		if strings.TrimSpace(out) != strconv.Itoa(max(own, -1000)) {
			t.Errorf("oom_score_adj %q, want %d", out, own)
		}
	})
}
