package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elock/elock/testcluster"
)

// BenchmarkHeldLocksRSS measures the memory of a real elockd holding
// 1,000,000 locks across 10,000 sessions: each session sets a long
// timeout, takes 100 locks in one pipelined write and disconnects, so the
// locks stay held for the timeout. It reports the process's RSS and the
// bytes per held lock above an idle server's RSS. The target is under
// 1 GiB in all.
//
//	go test -run '^$' -bench HeldLocksRSS -benchtime 1x ./cmd/elockd/
func BenchmarkHeldLocksRSS(b *testing.B) {
	const sessions, perSession = 10000, 100
	for range b.N {
		srv := testcluster.Start(b, "-max-timeout", "10m")
		base := rss(b, srv.Pid())
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		next := make(chan int, sessions)
		for s := range sessions {
			next <- s
		}
		close(next)
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for s := range next {
					if err := holdLocks(srv.Addr, s, perSession); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
		// The last quit has detached every session; the locks are held.
		if got := statLocks(b, srv.Addr); got != sessions*perSession {
			b.Fatalf("server holds %d locks, want %d", got, sessions*perSession)
		}
		total := rss(b, srv.Pid())
		b.ReportMetric(float64(total), "RSS-bytes")
		b.ReportMetric(float64(total-base)/float64(sessions*perSession), "bytes/lock")
		if total >= 1<<30 {
			b.Errorf("RSS %d bytes with %d locks: over the 1 GiB target", total, sessions*perSession)
		}
	}
}

func holdLocks(addr string, s, n int) error {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(time.Minute))
	var b strings.Builder
	b.WriteString("set_timeout 600000\r\n")
	for i := range n {
		fmt.Fprintf(&b, "lock lock-%d-%d\r\n", s, i)
	}
	b.WriteString("quit\r\n")
	if _, err := nc.Write([]byte(b.String())); err != nil {
		return err
	}
	r := bufio.NewReader(nc)
	for i := 0; i < n+2; i++ {
		l, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("session %d reply %d: %w", s, i, err)
		}
		if i >= 1 && i <= n && l != "200 Acquired\r\n" {
			return fmt.Errorf("session %d: lock reply %q", s, l)
		}
	}
	return nil
}

func statLocks(tb testing.TB, addr string) int {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	nc.Write([]byte("stats\r\n"))
	r := bufio.NewReader(nc)
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			tb.Fatal(err)
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "STAT locks "); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
}

// rss reads a process's resident set size from /proc.
func rss(tb testing.TB, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb << 10
		}
	}
	tb.Fatal("no VmRSS")
	return 0
}
