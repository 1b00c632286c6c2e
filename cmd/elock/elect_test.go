package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/elock/elock/testcluster"
	"github.com/elock/elock/testcluster/wait"
)

// elock elect runs one leader at a time, its term in ELOCK_TOKEN;
// elock leader tells the term and the value; the next candidate takes
// over when the leader's command ends.
func TestElect(t *testing.T) {
	t.Parallel()
	srv := testcluster.Start(t)
	dir := t.TempDir()
	leader := func() (int, string) {
		t.Helper()
		code, out, stderr := elock(t, 20*time.Second, "-addr", srv.Addr, "leader", "svc")
		if stderr != "" {
			t.Fatalf("elock leader: stderr %q", stderr)
		}
		return code, out
	}
	if code, out := leader(); code != exitNoLeader || out != "no leader\n" {
		t.Fatalf("leader of a free name: exit %d, %q; want %d, no leader", code, out, exitNoLeader)
	}
	a := holdInBackground(t, dir, "a", "-addr", srv.Addr, "elect", "svc", "-value", "host-a:8080")
	ta := tokenOf(t, dir, "a")
	if code, out := leader(); code != exitOK || out != fmt.Sprintf("%d host-a:8080\n", ta) {
		t.Fatalf("leader: exit %d, %q; want term %d host-a:8080", code, out, ta)
	}
	if code, _, stderr := elock(t, 20*time.Second, "-addr", srv.Addr, "elect", "svc", "-value", "host-b", "-wait", "0", "--", "true"); code != exitNotAcquired || !strings.Contains(stderr, "not elected") {
		t.Fatalf("elect -wait 0 against a leader: exit %d, want %d; stderr: %s", code, exitNotAcquired, stderr)
	}
	b := holdInBackground(t, dir, "b", "-addr", srv.Addr, "elect", "-value", "host-b", "-wait", "20s", "-quiet", "svc")
	c := dialRaw(t, srv.Addr)
	wait.For(t, 15*time.Second, "b to campaign", func() bool { return c.info("svc")["waiters"] == "1" })
	if code := a(); code != 0 {
		t.Fatalf("a: exit %d", code)
	}
	tb := tokenOf(t, dir, "b")
	if tb <= ta {
		t.Fatalf("b's term %d after a's %d", tb, ta)
	}
	if code, out := leader(); code != exitOK || out != fmt.Sprintf("%d host-b\n", tb) {
		t.Fatalf("leader after the takeover: exit %d, %q; want term %d host-b", code, out, tb)
	}
	if code := b(); code != 0 {
		t.Fatalf("b: exit %d", code)
	}
	if code, out := leader(); code != exitNoLeader || out != "no leader\n" {
		t.Fatalf("leader after both resigned: exit %d, %q", code, out)
	}
	// A plain lock leads with no value.
	if r := c.do("lock svc"); r != "200 Acquired" {
		t.Fatal(r)
	}
	if code, out := leader(); code != exitOK || !strings.HasSuffix(out, " -\n") {
		t.Fatalf("leader of a plain lock: exit %d, %q; want TOKEN -", code, out)
	}
	// A value the protocol cannot carry is a usage error.
	if code, _, stderr := elock(t, 20*time.Second, "-addr", srv.Addr, "elect", "v", "-value", "a b", "--", "true"); code != exitUsage {
		t.Fatalf("elect -value 'a b': exit %d, want %d; stderr: %s", code, exitUsage, stderr)
	}
	// A semaphore cannot be led.
	if r := c.do("acquire pool 2"); r != "200 Acquired" {
		t.Fatal(r)
	}
	if code, _, stderr := elock(t, 20*time.Second, "-addr", srv.Addr, "elect", "pool", "-value", "x", "-wait", "0", "--", "true"); code != exitSoftware {
		t.Fatalf("elect of a semaphore: exit %d, want %d; stderr: %s", code, exitSoftware, stderr)
	}
}

// Usage errors of elect and leader are found before any server is asked:
// the address here is closed.
func TestElectUsage(t *testing.T) {
	t.Parallel()
	closed := deadAddr(t)
	for _, args := range [][]string{
		{"elect"},
		{"elect", "x", "--", "true"},
		{"elect", "x", "-value", "", "--", "true"},
		{"elect", "x", "-value", "v"},
		{"elect", "x", "-shared", "-value", "v", "--", "true"},
		{"elect", "x", "-limit", "2", "-value", "v", "--", "true"},
		{"leader"},
		{"leader", "a", "b"},
	} {
		if code, _, stderr := elock(t, 20*time.Second, append([]string{"-addr", closed}, args...)...); code != exitUsage {
			t.Errorf("elock %q: exit %d, want %d; stderr: %s", args, code, exitUsage, stderr)
		}
	}
	for _, args := range [][]string{
		{"elect", "x", "-value", "v", "--", "true"},
		{"elect", "-value", "v", "-wait", "1s", "x", "--", "true"},
		{"leader", "x"},
	} {
		if code, _, stderr := elock(t, 20*time.Second, append([]string{"-addr", closed}, args...)...); code != exitUnavailable {
			t.Errorf("elock %q: exit %d, want %d; stderr: %s", args, code, exitUnavailable, stderr)
		}
	}
	var o, e strings.Builder
	run([]string{"-h"}, &o, &e)
	for _, s := range []string{"elect NAME -value V", "leader NAME", "75 no leader"} {
		if !strings.Contains(e.String(), s) {
			t.Errorf("the usage does not say %q:\n%s", s, e.String())
		}
	}
	e.Reset()
	run([]string{"elect", "-h"}, &o, &e)
	own := flagsOf(e.String())
	for _, f := range []string{"value", "wait", "timeout", "kill-after", "label", "quiet"} {
		if !own[f] {
			t.Errorf("elock elect has no flag -%s:\n%s", f, e.String())
		}
	}
}

// Leadership lost while COMMAND runs stops it, as a lost lock does.
func TestElectLostStopsCommand(t *testing.T) {
	t.Parallel()
	srv := testcluster.Start(t)
	dir := t.TempDir()
	started, termed := filepath.Join(dir, "started"), filepath.Join(dir, "termed")
	stderr, done := startLock(t, "-addr", srv.Addr, "elect", "lead", "-value", "me", "-timeout", "1s",
		"--", "sh", "-c", `trap 'touch "$1"; kill $!; exit 0' TERM; touch "$0"; sleep 60 & wait`, started, termed)
	wait.For(t, 10*time.Second, "the command to start", func() bool { _, err := os.Stat(started); return err == nil })
	srv.Kill()
	err := done()
	ee, ok := err.(interface{ ExitCode() int })
	if !ok || ee.ExitCode() != exitLost {
		t.Fatalf("elock elect: %v, want exit %d (lost); stderr: %s", err, exitLost, stderr.String())
	}
	if _, err := os.Stat(termed); err != nil {
		t.Fatalf("the command never got SIGTERM: %v", err)
	}
	if !strings.Contains(stderr.String(), "leadership of lead lost (") {
		t.Fatalf("stderr does not say what was lost: %s", stderr.String())
	}
}
