package main

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/elock/elock/testcluster"
)

// elock watch prints the current state of each name, then every change,
// each line with an RFC 3339 time, and exits 0 on SIGINT.
func TestWatchCommand(t *testing.T) {
	t.Parallel()
	srv := testcluster.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testcluster.Binary(t, "elock"), "-addr", srv.Addr, "watch", "svc", "other")
	cmd.Env = testcluster.Env()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := new(strings.Builder)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	stamp := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (.*)$`)
	// next waits for the line that tells want, skipping repeats of states
	// already told.
	next := func(want string) {
		t.Helper()
		deadline := time.NewTimer(15 * time.Second)
		defer deadline.Stop()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("elock watch ended while waiting for %q; stderr: %s", want, stderr)
				}
				m := stamp.FindStringSubmatch(l)
				if m == nil {
					t.Fatalf("line %q is not TIME EVENT", l)
				}
				if m[1] == want {
					return
				}
			case <-deadline.C:
				t.Fatalf("no %q within 15s; stderr: %s", want, stderr)
			}
		}
	}
	next("svc free 0")
	next("other free 0")
	r := dialRaw(t, srv.Addr)
	if got := r.do("lock svc"); !strings.HasPrefix(got, "200 ") {
		t.Fatalf("lock: %q", got)
	}
	tok := r.do("token svc")
	if !strings.HasPrefix(tok, "200 ") {
		t.Fatalf("token: %q", tok)
	}
	next(fmt.Sprintf("svc held %s -", strings.TrimPrefix(tok, "200 ")))
	if got := r.do("unlock svc"); !strings.HasPrefix(got, "200 ") {
		t.Fatalf("unlock: %q", got)
	}
	next(fmt.Sprintf("svc free %s", strings.TrimPrefix(tok, "200 ")))

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for range lines {
	}
	<-readerDone
	if err := cmd.Wait(); err != nil {
		t.Fatalf("elock watch after SIGINT: %v; stderr: %s", err, stderr)
	}
}
