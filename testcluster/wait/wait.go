// Package wait is the one condition-wait of the project's tests: a test
// that needs something to happen polls for it with a deadline instead of
// sleeping and hoping. It imports only the standard library, so that any
// package's tests may use it; inside a testing/synctest bubble its sleeps
// are the bubble's.
package wait

import (
	"testing"
	"time"
)

// For polls cond until it holds and returns how long that took; after
// limit it fails t, naming what it waited for.
func For(t testing.TB, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	return Seen(t, limit, what, nil, func() (bool, string) { return cond(), "" })
}

// Seen is For with a condition that also says what it saw, for the
// failure message. If wake is not nil, the condition is also checked as
// soon as wake fires (a change signal), not only on the next poll.
func Seen(t testing.TB, limit time.Duration, what string, wake <-chan struct{}, cond func() (bool, string)) time.Duration {
	t.Helper()
	begin := time.Now()
	deadline := begin.Add(limit)
	poll := time.Millisecond
	for {
		ok, seen := cond()
		if ok {
			return time.Since(begin)
		}
		if !time.Now().Before(deadline) {
			if seen != "" {
				t.Fatalf("after %v: still waiting for %s; saw %s", limit, what, seen)
			}
			t.Fatalf("after %v: still waiting for %s", limit, what)
		}
		timer := time.NewTimer(min(poll, time.Until(deadline)))
		select {
		case <-wake:
		case <-timer.C:
		}
		timer.Stop()
		poll = min(2*poll, 50*time.Millisecond)
	}
}
