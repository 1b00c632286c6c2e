package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/elock/elock/testcluster"
	"github.com/elock/elock/testcluster/wait"
)

// The new subcommands and modes have their flags, as the usage says.
func TestSharedFlags(t *testing.T) {
	for sub, want := range map[string][]string{
		"lock":  {"shared", "wait", "timeout", "kill-after", "label", "quiet"},
		"sem":   {"limit", "wait", "timeout", "kill-after", "label", "quiet"},
		"bench": {"mode", "limit", "readers-per-writer", "backend", "json"},
	} {
		var o, e bytes.Buffer
		if code := run([]string{sub, "-h"}, &o, &e); code != exitUsage && code != exitOK {
			t.Errorf("elock %s -h: exit %d", sub, code)
		}
		own := flagsOf(e.String())
		for _, f := range want {
			if !own[f] {
				t.Errorf("elock %s has no flag -%s:\n%s", sub, f, e.String())
			}
		}
	}
	var o, e bytes.Buffer
	run([]string{"-h"}, &o, &e)
	for _, s := range []string{"lock [-shared] NAME", "sem NAME -limit N", "-mode semaphore", "-mode rw"} {
		if !strings.Contains(e.String(), s) {
			t.Errorf("the usage does not say %q:\n%s", s, e.String())
		}
	}
}

// Usage errors of the new subcommands and modes are found before any
// server is asked: the address here is closed.
func TestSharedUsage(t *testing.T) {
	t.Parallel()
	closed := deadAddr(t)
	for _, args := range [][]string{
		{"sem"},
		{"sem", "x", "--", "true"},
		{"sem", "x", "-limit", "0", "--", "true"},
		{"sem", "x", "-limit", "4294967296", "--", "true"},
		{"sem", "x", "-limit", "2"},
		{"sem", "x", "-shared", "-limit", "2", "--", "true"},
		{"lock", "-shared"},
		{"lock", "-shared", "--", "true"},
		{"lock", "-shared", "x"},
		{"lock", "x", "-limit", "2", "--", "true"},
		{"bench", "-mode", "semaphore", "-backend", "redis"},
		{"bench", "-mode", "rw", "-backend", "redis"},
		{"bench", "-mode", "semaphore", "-limit", "0"},
		{"bench", "-mode", "semaphore", "-limit", "4294967296"},
		{"bench", "-mode", "rw", "-readers-per-writer", "-1"},
	} {
		if code, _, stderr := elock(t, 20*time.Second, append([]string{"-addr", closed}, args...)...); code != exitUsage {
			t.Errorf("elock %q: exit %d, want %d; stderr: %s", args, code, exitUsage, stderr)
		}
	}
	if _, _, stderr := elock(t, 20*time.Second, "-addr", closed, "lock", "-shared", "--", "true"); !strings.Contains(stderr, "missing NAME") {
		t.Errorf("lock -shared -- true: stderr %q, want missing NAME", stderr)
	}
	// Well formed, they get as far as the server.
	for _, args := range [][]string{
		{"lock", "-shared", "x", "--", "true"},
		{"lock", "x", "-shared", "--", "true"},
		{"lock", "-wait", "1s", "-shared", "x", "-quiet", "--", "true"},
		{"sem", "x", "-limit", "2", "--", "true"},
		{"sem", "-limit", "2", "x", "--", "true"},
	} {
		if code, _, stderr := elock(t, 20*time.Second, append([]string{"-addr", closed}, args...)...); code != exitUnavailable {
			t.Errorf("elock %q: exit %d, want %d; stderr: %s", args, code, exitUnavailable, stderr)
		}
	}
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// holdInBackground starts elock with args, whose COMMAND must be
// waitCmd(dir, tag): it writes its token to dir/tag.token once it runs
// and exits when dir/tag.release exists. It returns a function that
// releases it and returns elock's exit status.
func holdInBackground(t *testing.T, dir, tag string, args ...string) func() int {
	t.Helper()
	stderr, done := startLock(t, append(args, "--", "sh", "-c",
		`printf %s "$ELOCK_TOKEN" > "$0.tmp" && mv "$0.tmp" "$0"; while [ ! -e "$1" ]; do sleep 0.05; done`,
		filepath.Join(dir, tag+".token"), filepath.Join(dir, tag+".release"))...)
	return func() int {
		if err := os.WriteFile(filepath.Join(dir, tag+".release"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		err := done()
		if err != nil {
			t.Logf("elock %s: %v; stderr: %s", tag, err, stderr.String())
			if ee, ok := err.(interface{ ExitCode() int }); ok {
				return ee.ExitCode()
			}
			return -1
		}
		return 0
	}
}

// tokenOf waits until the command tagged tag runs and returns the token
// it was given.
func tokenOf(t *testing.T, dir, tag string) uint64 {
	t.Helper()
	var tok uint64
	wait.For(t, 15*time.Second, tag+" to run", func() bool {
		b, err := os.ReadFile(filepath.Join(dir, tag+".token"))
		if err != nil {
			return false
		}
		tok, err = strconv.ParseUint(string(b), 10, 64)
		return err == nil && tok > 0
	})
	return tok
}

// elock lock -shared: two run at once, each with its own token; an
// exclusive lock waits for both; the name is free after.
func TestLockShared(t *testing.T) {
	t.Parallel()
	srv := testcluster.Start(t)
	dir := t.TempDir()
	r1 := holdInBackground(t, dir, "r1", "-addr", srv.Addr, "lock", "-shared", "rw", "-label", "r:1")
	r2 := holdInBackground(t, dir, "r2", "-addr", srv.Addr, "lock", "rw", "-shared", "-label", "r:2", "-wait", "10s")
	t1, t2 := tokenOf(t, dir, "r1"), tokenOf(t, dir, "r2")
	if t1 == t2 {
		t.Fatalf("both shared holders got token %d", t1)
	}
	c := dialRaw(t, srv.Addr)
	if in := c.info("rw"); in["mode"] != "shared" || in["holders"] != "2" || in["kind"] != "lock" {
		t.Fatalf("info rw = %v", in)
	}
	if code, _, _ := elock(t, 20*time.Second, "-addr", srv.Addr, "lock", "rw", "-wait", "0", "--", "true"); code != exitNotAcquired {
		t.Fatalf("exclusive lock -wait 0 of a shared name: exit %d, want %d", code, exitNotAcquired)
	}
	// An exclusive waiter says who holds the name.
	stderr, wdone := startLock(t, "-addr", srv.Addr, "lock", "rw", "-wait", "20s", "--", "true")
	wait.For(t, 15*time.Second, "the waiting line", func() bool { return strings.Contains(stderr.String(), "waiting for") })
	if !regexp.MustCompile(`^waiting for rw \(held by 2, the longest for [0-9]+ s by r:[12]; 1 waiting\)\n$`).MatchString(stderr.String()) {
		t.Fatalf("waiting line %q", stderr.String())
	}
	if code := r1(); code != 0 {
		t.Fatalf("r1: exit %d", code)
	}
	if in := c.info("rw"); in["holders"] != "1" || in["waiters"] != "1" {
		t.Fatalf("info rw with one reader left = %v; the writer must wait", in)
	}
	if code := r2(); code != 0 {
		t.Fatalf("r2: exit %d", code)
	}
	if err := wdone(); err != nil {
		t.Fatalf("the exclusive lock after the readers: %v; stderr: %s", err, stderr.String())
	}
	if in := c.info("rw"); in["held"] != "0" {
		t.Fatalf("rw still held after the commands: %v", in)
	}
}

// elock sem: LIMIT commands run at once; one more does not get a permit;
// another limit or kind is refused.
func TestSem(t *testing.T) {
	t.Parallel()
	srv := testcluster.Start(t)
	dir := t.TempDir()
	a := holdInBackground(t, dir, "a", "-addr", srv.Addr, "sem", "pool", "-limit", "2")
	b := holdInBackground(t, dir, "b", "-addr", srv.Addr, "sem", "-limit", "2", "pool")
	if ta, tb := tokenOf(t, dir, "a"), tokenOf(t, dir, "b"); ta == tb {
		t.Fatalf("both permits got token %d", ta)
	}
	c := dialRaw(t, srv.Addr)
	if in := c.info("pool"); in["kind"] != "semaphore" || in["holders"] != "2" || in["limit"] != "2" {
		t.Fatalf("info pool = %v", in)
	}
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"sem", "pool", "-limit", "2", "-wait", "0"}, exitNotAcquired},
		{[]string{"sem", "pool", "-limit", "2", "-wait", "300ms", "-quiet"}, exitNotAcquired},
		{[]string{"sem", "pool", "-limit", "3", "-wait", "0"}, exitSoftware},
		{[]string{"lock", "pool", "-wait", "0"}, exitSoftware},
		{[]string{"lock", "-shared", "pool", "-wait", "0"}, exitSoftware},
	} {
		code, _, stderr := elock(t, 20*time.Second, append(append([]string{"-addr", srv.Addr}, tc.args...), "--", "true")...)
		if code != tc.want {
			t.Errorf("elock %q: exit %d, want %d; stderr: %s", tc.args, code, tc.want, stderr)
		}
	}
	if code := a(); code != 0 {
		t.Fatalf("a: exit %d", code)
	}
	// A permit given back goes to the next command.
	if code, _, stderr := elock(t, 20*time.Second, "-addr", srv.Addr, "sem", "pool", "-limit", "2", "-wait", "10s", "--", "true"); code != 0 {
		t.Fatalf("sem after a permit came back: exit %d; stderr: %s", code, stderr)
	}
	if code := b(); code != 0 {
		t.Fatalf("b: exit %d", code)
	}
	if in := c.info("pool"); in["held"] != "0" {
		t.Fatalf("pool still held after the commands: %v", in)
	}
}

// A shared lock or a permit lost while COMMAND runs stops it, as a lock
// does.
func TestSharedLostStopsCommand(t *testing.T) {
	t.Parallel()
	for what, args := range map[string][]string{
		"shared": {"lock", "-shared", "lease"},
		"permit": {"sem", "lease", "-limit", "3"},
	} {
		t.Run(what, func(t *testing.T) {
			t.Parallel()
			srv := testcluster.Start(t)
			dir := t.TempDir()
			started, termed := filepath.Join(dir, "started"), filepath.Join(dir, "termed")
			stderr, done := startLock(t, append(append([]string{"-addr", srv.Addr}, args...), "-timeout", "1s",
				"--", "sh", "-c", `trap 'touch "$1"; kill $!; exit 0' TERM; touch "$0"; sleep 60 & wait`, started, termed)...)
			wait.For(t, 10*time.Second, "the command to start", func() bool { _, err := os.Stat(started); return err == nil })
			srv.Kill()
			err := done()
			ee, ok := err.(interface{ ExitCode() int })
			if !ok || ee.ExitCode() != exitLost {
				t.Fatalf("elock: %v, want exit %d (lost); stderr: %s", err, exitLost, stderr.String())
			}
			if _, err := os.Stat(termed); err != nil {
				t.Fatalf("the command never got SIGTERM: %v", err)
			}
			if !strings.Contains(stderr.String(), " lost (") {
				t.Fatalf("stderr does not say what was lost: %s", stderr.String())
			}
		})
	}
}

func TestBenchSharedModes(t *testing.T) {
	t.Parallel()
	srv := testcluster.Start(t)
	for _, tc := range []struct {
		mode string
		args []string
	}{
		{"semaphore", []string{"-limit", "2"}},
		{"rw", []string{"-readers-per-writer", "3"}},
	} {
		code, out, stderr := elock(t, 60*time.Second, append([]string{"-addr", srv.Addr, "bench", "-mode", tc.mode,
			"-clients", "8", "-duration", "500ms", "-warmup", "100ms", "-json"}, tc.args...)...)
		if code != 0 {
			t.Fatalf("bench %s: exit %d; stderr: %s", tc.mode, code, stderr)
		}
		var r benchResult
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("bench %s output %q: %v", tc.mode, out, err)
		}
		if r.Cycles == 0 || r.CyclesPerS <= 0 || r.P50us <= 0 || r.P99us < r.P50us || r.Violations != 0 || r.Errors != 0 || r.Mode != tc.mode {
			t.Fatalf("bench %s result %+v", tc.mode, r)
		}
		if r.MinPerCli == 0 || r.MaxPerCli < r.MinPerCli {
			t.Fatalf("bench %s: a client never got a grant (FIFO should feed all): %+v", tc.mode, r)
		}
		switch tc.mode {
		case "semaphore":
			if r.Limit != 2 || len(r.Roles) != 0 {
				t.Fatalf("semaphore result %+v", r)
			}
		case "rw":
			// Clients 0 and 4 write, the six others read.
			if len(r.Roles) != 2 || r.Roles[0].Role != "reader" || r.Roles[0].Clients != 6 || r.Roles[1].Role != "writer" || r.Roles[1].Clients != 2 ||
				r.Roles[0].Cycles+r.Roles[1].Cycles != r.Cycles || r.Roles[1].MinPerCli == 0 {
				t.Fatalf("rw roles %+v", r.Roles)
			}
		}
	}
	// The text report speaks of grants.
	code, out, stderr := elock(t, 60*time.Second, "-addr", srv.Addr, "bench", "-mode", "rw", "-clients", "4", "-duration", "300ms", "-warmup", "0s")
	if code != 0 || !regexp.MustCompile(`^elock rw  clients=4  [0-9]+ grants/s  grant p50=`).MatchString(out) ||
		!strings.Contains(out, "\n  readers=3 ") || !strings.Contains(out, "\n  writers=1 ") {
		t.Fatalf("bench rw text: exit %d: %s %s", code, out, stderr)
	}
}

// elock top shows a queue once, though the name it waits for has a line
// per shared holder.
func TestTopSharedQueueOnce(t *testing.T) {
	t.Parallel()
	srv := testcluster.Start(t)
	r1, r2, w := dialRaw(t, srv.Addr), dialRaw(t, srv.Addr), dialRaw(t, srv.Addr)
	for _, c := range []*raw{r1, r2} {
		if r := c.do("rlock many"); r != "200 Acquired" {
			t.Fatal(r)
		}
	}
	w.nc.Write([]byte("lock many 30\r\n"))
	wait.For(t, 10*time.Second, "the writer to queue", func() bool { return r1.info("many")["waiters"] == "1" })
	code, out, stderr := elock(t, 20*time.Second, "-addr", srv.Addr, "top", "-n", "1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	held := out[strings.Index(out, "Longest held"):strings.Index(out, "Longest queues")]
	queues := out[strings.Index(out, "Longest queues"):]
	if n := len(regexp.MustCompile(`(?m)^many +[0-9]+ +\S+ +1 +-$`).FindAllString(held, -1)); n != 2 {
		t.Fatalf("held lists many %d times, want once per holder:\n%s", n, out)
	}
	if n := len(regexp.MustCompile(`(?m)^many `).FindAllString(queues, -1)); n != 1 {
		t.Fatalf("queues list many %d times, want once:\n%s", n, out)
	}
}
