package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/elock/elock/testcluster"
	"github.com/elock/elock/testcluster/wait"
)

// elock lock prints jeopardy on stderr when the owner of its lock stops
// answering (paused, as by a long GC), and safe once the lock's owner,
// the replica that took over or the node itself woken, answers again;
// the command runs on throughout.
func TestLockPrintsJeopardyAndSafe(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	owner := c.Node(1).ID
	var name string
	for i := range 1000 {
		n := fmt.Sprintf("job-%d", i)
		if _, o, _, _ := c.Where(n); o == owner {
			name = n
			break
		}
	}
	if name == "" {
		t.Fatal("no name owned by node 1")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testcluster.Binary(t, "elock"), "-addr", c.Node(0).ClientAddr, "lock", name, "--", "sleep", "120")
	cmd.Env = testcluster.Env()
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// elock passes SIGTERM on to the command, whose end ends it; the
	// command holds stderr open, so Wait gives up on it after WaitDelay.
	cmd.WaitDelay = 5 * time.Second
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	probe := c.Raw(2)
	probe.Timeout = time.Minute
	wait.For(t, 30*time.Second, name+" held by elock lock", func() bool {
		_, st := probe.Block("info " + name)
		return st["held"] == "1" || st["held"] == "true"
	})
	c.Pause(1)
	paused := true
	defer func() {
		if paused {
			c.Resume(1)
		}
	}()
	wait.For(t, 30*time.Second, "jeopardy on stderr while the owner is paused", func() bool {
		return strings.Contains(stderr.String(), "jeopardy: the session holding "+name)
	})
	c.Resume(1)
	paused = false
	wait.For(t, 60*time.Second, "safe on stderr after the owner answers again", func() bool {
		return strings.Contains(stderr.String(), "safe: the session holding "+name)
	})
	select {
	case err := <-done:
		done <- err
		t.Fatalf("elock lock ended: %v\nstderr: %s", err, stderr.String())
	default:
	}
}
