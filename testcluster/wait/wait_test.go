package wait

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// failTB records a fatal failure instead of ending the test.
type failTB struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (f *failTB) Helper() {}
func (f *failTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.msg = format
	for _, a := range args {
		f.msg += " " + toString(a)
	}
	f.mu.Unlock()
	panic(f)
}

func toString(a any) string {
	switch v := a.(type) {
	case string:
		return v
	case time.Duration:
		return v.String()
	}
	return ""
}

func TestForWaitsForTheCondition(t *testing.T) {
	start := time.Now()
	n := 0
	took := For(t, 5*time.Second, "three polls", func() bool { n++; return n == 3 })
	if n != 3 || took > time.Second || time.Since(start) < took {
		t.Fatalf("polled %d times in %v", n, took)
	}
}

func TestForFailsAtTheDeadline(t *testing.T) {
	f := &failTB{TB: t}
	func() {
		defer func() {
			if r := recover(); r != f {
				t.Fatalf("no failure: %v", r)
			}
		}()
		Seen(f, 20*time.Millisecond, "the impossible", nil, func() (bool, string) { return false, "nothing" })
	}()
	if !strings.Contains(f.msg, "still waiting for") || !strings.Contains(f.msg, "the impossible") || !strings.Contains(f.msg, "nothing") {
		t.Fatalf("failure message %q", f.msg)
	}
}

func TestSeenWakesOnTheSignal(t *testing.T) {
	wake := make(chan struct{}, 1)
	var mu sync.Mutex
	done := false
	go func() {
		time.Sleep(100 * time.Millisecond)
		mu.Lock()
		done = true
		mu.Unlock()
		wake <- struct{}{}
	}()
	took := Seen(t, 5*time.Second, "the signal", wake, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return done, ""
	})
	if took > 2*time.Second {
		t.Fatalf("took %v", took)
	}
}
