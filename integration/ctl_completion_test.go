package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berthrt/berth/internal/testutil"
)

// bashCompletion is the bash-completion package's entry, which cobra's
// bash script needs.
const bashCompletion = "/usr/share/bash-completion/bash_completion"

// completeScript sources bash-completion and berthctl's script, then
// does what bash does on TAB at the end of the line $1: the words in
// COMP_WORDS, the last one the word being typed ("" after a space), and
// prints COMPREPLY, one a line.
const completeScript = `
source ` + bashCompletion + `
source <(berthctl completion bash)
COMP_LINE=$1
COMP_POINT=${#COMP_LINE}
read -ra COMP_WORDS <<< "$COMP_LINE"
[[ $COMP_LINE == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
__start_berthctl
printf '%s\n' "${COMPREPLY[@]}"
`

// complete runs completeScript for line with berthctl in PATH and
// BERTH_ADDRESS set to address; it returns the completions offered,
// sorted.
func (c *ctl) complete(address, line string) []string {
	c.t.Helper()
	cmd := exec.Command("bash", "-c", completeScript, "complete", line)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(c.bin)+":"+os.Getenv("PATH"), "BERTH_ADDRESS="+address)
	out, err := cmd.Output()
	if err != nil {
		c.t.Fatalf("completing %q: %v", line, err)
	}
	got := strings.Fields(string(out))
	slices.Sort(got)
	return got
}

// TestCtlCompletion loads the bash script and completes names from a real
// daemon, and checks that zsh and fish scripts are made (and load, where
// those shells are installed).
func TestCtlCompletion(t *testing.T) {
	_, err := os.Stat(bashCompletion)
	testutil.Require(t, err == nil, "the bash-completion package ("+bashCompletion+") is not installed")
	d := newDaemon(t)
	d.nsContext("default")
	d.nsContext("compl-ns")
	c := newCtl(t, d)
	rootfs := busyboxLower(t)
	for _, id := range []string{"compl-web", "compl-db"} {
		c.ok("containers", "create", "--rootfs", rootfs, "--read-only", id, "true")
	}
	t.Cleanup(func() { c.run("containers", "rm", "compl-web", "compl-db") })
	c.ok("-n", "compl-ns", "containers", "create", "--rootfs", rootfs, "--read-only", "compl-other", "true")
	t.Cleanup(func() { c.run("-n", "compl-ns", "containers", "rm", "compl-other") })
	c.ok("leases", "create", "--id", "compl-lease")
	t.Cleanup(func() { c.run("leases", "rm", "compl-lease") })

	for _, tc := range []struct {
		line string
		want []string
	}{
		{"berthctl containers info ", []string{"compl-db", "compl-web"}},
		{"berthctl containers info compl-w", []string{"compl-web"}},
		{"berthctl containers rm compl-web ", []string{"compl-db"}},
		{"berthctl tasks kill ", []string{"compl-db", "compl-web"}},
		{"berthctl -n compl-ns containers info ", []string{"compl-other"}},
		{"berthctl -n compl-", []string{"compl-ns"}},
		{"berthctl leases rm ", []string{"compl-lease"}},
		{"berthctl containers info compl-web ", nil}, // it takes one ID
		{"berthctl contai", []string{"containers"}},
	} {
		if got := c.complete(d.address, tc.line); !slices.Equal(got, tc.want) {
			t.Errorf("%s<TAB>: %q, want %q", tc.line, got, tc.want)
		}
	}

	// With no daemon, nothing is offered and nothing is said.
	if got := c.complete(filepath.Join(t.TempDir(), "none.sock"), "berthctl containers info "); len(got) != 0 {
		t.Errorf("completion without a daemon: %q", got)
	}

	for _, shell := range []string{"zsh", "fish"} {
		script := c.ok("completion", shell)
		if !strings.Contains(script, "berthctl") || !strings.Contains(script, "__complete") {
			t.Errorf("completion %s: not a completion script:\n%.300s", shell, script)
		}
		path, err := exec.LookPath(shell)
		if err != nil {
			t.Logf("%s is not installed: its script is not loaded", shell)
			continue
		}
		file := filepath.Join(t.TempDir(), "berthctl."+shell)
		if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
		load := "source " + file
		if shell == "zsh" {
			load = "autoload -U compinit && compinit -u && " + load
		}
		if out, err := exec.Command(path, "-c", load).CombinedOutput(); err != nil {
			t.Errorf("%s does not load the script: %v\n%s", shell, err, out)
		}
	}
	c.fails(2, []string{`shell "tcsh"`}, "completion", "tcsh")
}
