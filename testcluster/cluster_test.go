package testcluster

import (
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests drive standalone elockd processes (no mesh flags) through
// the cluster code: start, stop, kill, pause, restart, logs.

// startFake starts a standalone cluster on a fakeTB, failing t with what
// the harness reported if it does not start.
func startFake(t *testing.T, opt Options) (*fakeTB, *Cluster) {
	t.Helper()
	f := newFakeTB(t)
	var c *Cluster
	f.run(func() { c = start(f, opt, false) })
	if c == nil || f.Failed() {
		f.finish()
		t.Fatalf("start failed: %s\nlogs:\n%s", f.allErrors(), f.allLogs())
	}
	return f, c
}

func TestStandaloneLifecycle(t *testing.T) {
	t.Parallel()
	c := start(t, Options{Nodes: 3}, false)
	if c.N() != 3 {
		t.Fatalf("N = %d", c.N())
	}
	ips := map[string]bool{}
	for i := range 3 {
		n := c.Node(i)
		if n.Index != i || n.ID != "n"+string(rune('0'+i)) || !n.Voter || n.DataDir != "" {
			t.Errorf("node %d: %+v", i, n)
		}
		host, _, _ := net.SplitHostPort(n.ClientAddr)
		ips[host] = true
		if n.Process.Addr != n.ClientAddr {
			t.Errorf("node %d serves on %s, not %s", i, n.Process.Addr, n.ClientAddr)
		}
		if h, _, _ := net.SplitHostPort(n.GossipAddr); h != host {
			t.Errorf("node %d: gossip %s not on %s", i, n.GossipAddr, host)
		}
		if got := c.IndexOf(n.ID); got != i {
			t.Errorf("IndexOf(%s) = %d", n.ID, got)
		}
	}
	if len(ips) != 3 {
		t.Errorf("3 nodes on %d addresses", len(ips))
	}
	if c.IndexOf("nope") != -1 {
		t.Error("IndexOf found an unknown id")
	}
	if got := c.Addrs(); len(got) != 3 {
		t.Fatalf("Addrs = %v", got)
	}

	h, stats := c.Raw(0).Block("stats")
	if h != "200 STATS" || stats["clients"] == "" {
		t.Fatalf("stats: %q %v", h, stats)
	}
	if got := c.Raw(1).Do("lock x"); got != "200 Acquired" {
		t.Fatalf("lock x on node 1: %q", got)
	}
	cl := c.Client(t, 2)
	if _, err := cl.TryLock(context.Background(), "x"); err != nil {
		t.Fatalf("lock x on node 2 (a separate standalone node): %v", err)
	}

	if err := c.Stop(1); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(1); err == nil {
		t.Error("Stop of a stopped node succeeded")
	}
	c.Kill(2)
	if got := c.Live(); !slices.Equal(got, []int{0}) {
		t.Fatalf("Live after Stop(1), Kill(2) = %v", got)
	}
	if got := c.Addrs(); !slices.Equal(got, []string{c.Node(0).ClientAddr}) {
		t.Fatalf("Addrs = %v", got)
	}
	if err := c.WaitConverged(10 * time.Second); err != nil {
		t.Fatal(err)
	}

	// Restarted nodes come back on the same address, as new processes.
	old1, old2 := c.Node(1), c.Node(2)
	c.Restart(1)
	c.Restart(2)
	for _, old := range []*Node{old1, old2} {
		n := c.Node(old.Index)
		if n.ClientAddr != old.ClientAddr || n.GossipAddr != old.GossipAddr || n.PeerAddr != old.PeerAddr || n.ID != old.ID {
			t.Errorf("node %d restarted as %+v, was %+v", old.Index, n, old)
		}
		if n.Process == old.Process || n.Process.Addr != old.ClientAddr {
			t.Errorf("node %d: restarted process serves on %s", old.Index, n.Process.Addr)
		}
	}
	if got := c.Raw(2).Do("lock x"); got != "200 Acquired" {
		t.Fatalf("lock x on restarted node 2: %q (its state is in memory, so x is free)", got)
	}
	if err := c.WaitConverged(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := c.Live(); len(got) != 3 {
		t.Fatalf("Live = %v", got)
	}

	j := c.Join()
	n := c.Node(j)
	if j != 3 || c.N() != 4 || n.ID != "n3" || n.Voter || !strings.HasSuffix(strings.Split(n.ClientAddr, ":")[0], ".4") {
		t.Fatalf("Join: index %d, N %d, node %+v", j, c.N(), n)
	}
	if got := c.Raw(j).Do("lock y"); got != "200 Acquired" {
		t.Fatalf("lock y on the joined node: %q", got)
	}
	if err := c.Stop(j); err != nil {
		t.Fatal(err)
	}
	if got := c.Live(); !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("Live = %v", got)
	}
}

func TestStandalonePauseResume(t *testing.T) {
	t.Parallel()
	f, c := startFake(t, Options{Nodes: 2})
	cn := c.Raw(0)
	c.Pause(0)
	if got := c.Live(); !slices.Equal(got, []int{1}) {
		t.Fatalf("Live with node 0 paused = %v", got)
	}
	cn.Timeout = 300 * time.Millisecond
	if err := cn.Send("stats"); err != nil {
		t.Fatal(err)
	}
	var ne net.Error
	if _, err := cn.Line(); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("a paused node answered: %v", err)
	}
	// Converged means: the live nodes agree; a paused node is not asked.
	if err := c.WaitConverged(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	c.Resume(0)
	cn.Timeout = IOTimeout
	if l, err := cn.Line(); err != nil || l != "200 STATS" {
		t.Fatalf("after Resume: %q, %v", l, err)
	}
	c.Resume(0) // not paused: reported
	if !strings.Contains(f.allErrors(), "Resume(0): node n0 is running, not paused") {
		t.Errorf("Resume of a running node: errors %q", f.allErrors())
	}

	// A node left paused is resumed and stopped at cleanup.
	c.Pause(1)
	p := c.Node(1).Process
	f.finish()
	if p.Alive() {
		t.Fatal("a paused node outlived the cleanup")
	}
	if !p.State().Success() {
		t.Errorf("paused node exited with %v at cleanup, want a clean SIGTERM exit", p.State())
	}
}

func TestLogsOnFailure(t *testing.T) {
	t.Parallel()
	f, c := startFake(t, Options{Nodes: 2})
	c.Kill(1)
	c.Restart(1)
	f.Errorf("the test failed")
	f.finish()
	logs := f.allLogs()
	for _, want := range []string{
		"2 nodes on " + c.blk.String(),
		"node 1: id n1, voter, client " + c.Node(1).ClientAddr,
		"==== node 0 (n0) run 1 of 1: elockd -node-id n0 -listen " + c.Node(0).ClientAddr,
		"==== node 1 (n1) run 1 of 2: ",
		"==== exit: signal: killed",
		"==== node 1 (n1) run 2 of 2: ",
		"msg=serving node=n0 addr=" + c.Node(0).ClientAddr,
		"msg=serving node=n1 addr=" + c.Node(1).ClientAddr,
		"==== end of node 1 (n1) run 2",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	if errs := f.allErrors(); errs != "the test failed" {
		t.Errorf("the harness reported %q, want nothing (a Kill is not a crash)", errs)
	}
	for i := range 2 {
		if c.Node(i).Process.Alive() {
			t.Errorf("node %d outlived the cleanup", i)
		}
	}
}

func TestNoLogsOnPass(t *testing.T) {
	if os.Getenv(LogsEnv) != "" {
		t.Skip(LogsEnv + " is set")
	}
	t.Parallel()
	f, c := startFake(t, Options{Nodes: 1})
	if err := c.Stop(0); err != nil {
		t.Fatal(err)
	}
	f.finish()
	if f.Failed() || strings.Contains(f.allLogs(), "msg=serving") {
		t.Fatalf("a passing test printed logs or failed: errors %q logs %q", f.allErrors(), f.allLogs())
	}
}

func TestCrashReported(t *testing.T) {
	t.Parallel()
	f, c := startFake(t, Options{Nodes: 2})
	p := c.Node(1).Process
	// SIGKILL from outside the harness: the node died "by itself".
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	err := c.WaitConverged(5 * time.Second)
	if err == nil || !strings.Contains(err.Error(), "node 1 (n1) exited on its own: signal: killed") {
		t.Fatalf("WaitConverged with a crashed node: %v", err)
	}
	c.Kill(1) // does not hide the crash
	f.finish()
	if errs := f.allErrors(); !strings.Contains(errs, "node 1 (n1) run 1 exited on its own") {
		t.Errorf("crash not reported: %q", errs)
	}
	if !strings.Contains(f.allLogs(), "==== node 1 (n1) run 1 of 1") {
		t.Errorf("no logs after a crash:\n%s", f.allLogs())
	}
}

func TestStartRetriesThenFails(t *testing.T) {
	t.Parallel()
	// Every start of the node exits at once: its -listen address is taken.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	f := newFakeTB(t)
	var c *Cluster
	f.run(func() {
		c = start(f, Options{Nodes: 1, Flags: []string{"-listen", taken.Addr().String()}}, false)
	})
	if c != nil {
		t.Fatal("start succeeded")
	}
	if errs := f.allErrors(); !strings.Contains(errs, "node 0 (n0): elockd") || !strings.Contains(errs, "exited before serving") {
		t.Errorf("errors: %q", errs)
	}
	f.finish()
	logs := f.allLogs()
	if got := strings.Count(logs, "starting it again"); got != startAttempts-1 {
		t.Errorf("%d retries, want %d", got, startAttempts-1)
	}
	if !strings.Contains(logs, "==== node 0 (n0) run 3 of 3") || !strings.Contains(logs, "address already in use") {
		t.Errorf("logs of the failed starts missing:\n%s", logs)
	}
	if errs := f.allErrors(); strings.Contains(errs, "exited on its own") {
		t.Errorf("a failed start was reported as a crash: %q", errs)
	}
}

func TestStartFailsWithoutRetry(t *testing.T) {
	t.Parallel()
	f := newFakeTB(t)
	var c *Cluster
	f.run(func() { c = start(f, Options{Nodes: 2, Flags: []string{"-no-such-flag"}}, false) })
	if c != nil {
		t.Fatal("start succeeded")
	}
	if errs := f.allErrors(); !strings.Contains(errs, "node 0 (n0): elockd") || !strings.Contains(errs, "exited before serving: exit status 2") {
		t.Errorf("errors: %q", errs)
	}
	f.finish()
	logs := f.allLogs()
	if strings.Contains(logs, "starting it again") || !strings.Contains(logs, "==== node 0 (n0) run 1 of 1") {
		t.Errorf("a start that failed for another reason than a taken port was retried:\n%s", logs)
	}
	if !strings.Contains(logs, "flag provided but not defined: -no-such-flag") {
		t.Errorf("the failed start's output is not in the logs:\n%s", logs)
	}
}

func TestBadOptions(t *testing.T) {
	t.Parallel()
	for _, opt := range []Options{{}, {Nodes: 2, Voters: 3}, {Nodes: maxNodes + 1}, {Nodes: 1, Voters: -1}} {
		f := newFakeTB(t)
		f.run(func() { start(f, opt, false) })
		if !strings.Contains(f.allErrors(), "bad options") {
			t.Errorf("%+v: errors %q", opt, f.allErrors())
		}
		f.finish()
	}
}
