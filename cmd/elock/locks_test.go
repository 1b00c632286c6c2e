package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elock/elock/testcluster"
	"github.com/elock/elock/testcluster/wait"
)

func TestLocksCommand(t *testing.T) {
	t.Parallel()
	srv := testcluster.Start(t)
	holder := dialRaw(t, srv.Addr)
	for _, l := range []string{"label web:7", "lock app/a", "lock app/bb", "lock other"} {
		if r := holder.do(l); !strings.HasPrefix(r, "200 ") {
			t.Fatalf("%q: %q", l, r)
		}
	}
	code, out, stderr := elock(t, 20*time.Second, "-addr", srv.Addr, "locks", "app/")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 || !regexp.MustCompile(`^NAME +TOKEN +HELD +WAITERS +LABEL$`).MatchString(lines[0]) ||
		!regexp.MustCompile(`^app/a +[0-9]+ +[0-9.]+m?s +0 +web:7$`).MatchString(lines[1]) ||
		!strings.HasPrefix(lines[2], "app/bb ") {
		t.Fatalf("output:\n%s", out)
	}
	// The columns line up.
	if strings.Index(lines[0], "TOKEN") != strings.Index(lines[1], strings.Fields(lines[1])[1]) {
		t.Fatalf("columns not aligned:\n%s", out)
	}
	code, out, _ = elock(t, 20*time.Second, "-addr", srv.Addr, "locks", "-n", "1", "app/*")
	if code != 0 || !strings.Contains(out, "app/a ") || strings.Contains(out, "app/bb") || !strings.Contains(out, "truncated") {
		t.Fatalf("-n 1: exit %d\n%s", code, out)
	}
	if code, _, _ := elock(t, 20*time.Second, "-addr", srv.Addr, "locks", "-n", "0"); code != exitUsage {
		t.Fatalf("-n 0: exit %d", code)
	}
}

func TestTopPlain(t *testing.T) {
	t.Parallel()
	srv := testcluster.Start(t)
	holder, waiter := dialRaw(t, srv.Addr), dialRaw(t, srv.Addr)
	holder.do("lock long")
	holder.do("lock busy")
	waiter.nc.Write([]byte("lock busy 30\r\n"))
	wait.For(t, 10*time.Second, "the waiter to queue", func() bool { return holder.info("busy")["waiters"] == "1" })
	code, out, stderr := elock(t, 20*time.Second, "-addr", srv.Addr, "top", "-n", "2", "-interval", "50ms")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if strings.Count(out, "Longest held") != 2 || strings.Count(out, "Longest queues") != 2 || strings.Contains(out, "\x1b") {
		t.Fatalf("output:\n%q", out)
	}
	queues := out[strings.Index(out, "Longest queues"):]
	if !regexp.MustCompile(`(?m)^busy +[0-9]+ +\S+ +1 +-$`).MatchString(queues) || regexp.MustCompile(`(?m)^long `).MatchString(queues[:strings.Index(queues, "elock top")]) {
		t.Fatalf("queues:\n%s", queues)
	}
}

// lockedBuffer is a stderr a test can read while the process writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startLock starts elock lock in the background, its stderr readable at
// any time; the returned function waits for its end.
func startLock(t *testing.T, args ...string) (*lockedBuffer, func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	cmd := exec.CommandContext(ctx, testcluster.Binary(t, "elock"), args...)
	cmd.Env = testcluster.Env()
	cmd.WaitDelay = time.Second // a child left behind must not hold its stderr open
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer cancel()
		err = cmd.Wait()
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return stderr, func() error {
		<-done
		return err
	}
}

var waitingRe = regexp.MustCompile(`^waiting for q \(held [0-9]+ s by holder:1, 1 waiting\)$`)

func TestLockSaysWhoHolds(t *testing.T) {
	t.Parallel()
	srv := testcluster.Start(t)
	holder := dialRaw(t, srv.Addr)
	holder.do("label holder:1")
	holder.do("lock q")
	stderr, done := startLock(t, "-addr", srv.Addr, "lock", "q", "-wait", "20s", "-label", "me:2", "--", "true")
	wait.For(t, 15*time.Second, "the waiting line", func() bool { return strings.Contains(stderr.String(), "waiting for") })
	holder.do("unlock q")
	if err := done(); err != nil {
		t.Fatalf("elock lock: %v; stderr: %s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	if len(lines) != 1 || !waitingRe.MatchString(lines[0]) {
		t.Fatalf("stderr: %q", stderr.String())
	}
}

func TestLockQuietAndLabel(t *testing.T) {
	t.Parallel()
	srv := testcluster.Start(t)
	holder := dialRaw(t, srv.Addr)
	holder.do("lock q")
	// -quiet: nothing while it waits out its 2 s.
	code, _, stderr := elock(t, 20*time.Second, "-addr", srv.Addr, "lock", "q", "-wait", "2s", "-quiet", "--", "true")
	if code != exitNotAcquired || strings.Contains(stderr, "waiting") {
		t.Fatalf("-quiet: exit %d, stderr %q", code, stderr)
	}
	holder.do("unlock q")
	// While elock lock holds it, others see its label.
	release := filepath.Join(t.TempDir(), "release")
	stderr2, done := startLock(t, "-addr", srv.Addr, "lock", "q", "-label", "job:9", "--",
		"sh", "-c", `while [ ! -e "$0" ]; do sleep 0.05; done`, release)
	wait.For(t, 15*time.Second, "the lock listed with its label", func() bool {
		_, out, _ := elock(t, 10*time.Second, "-addr", srv.Addr, "locks", "q")
		return regexp.MustCompile(`(?m)^q +[0-9]+ +\S+ +0 +job:9$`).MatchString(out)
	})
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := done(); err != nil {
		t.Fatalf("elock lock: %v; stderr: %s", err, stderr2.String())
	}
}
