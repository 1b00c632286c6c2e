package metrics

import (
	"testing"
	"time"

	"github.com/elock/elock/testcluster/wait"
)

// Known traffic on a single node moves the connection, session, grant,
// hand-off and command figures, read back from a scrape by name.
func TestSingleNodeMetricsFollowTheTraffic(t *testing.T) {
	n := startSingle(t, 0)
	a, b, c := dial(t, n.addr), dial(t, n.addr), dial(t, n.addr)
	a.expect("lock metrics-test-lock", "200")
	b.send("lock metrics-test-lock 10") // queued behind a
	c.expect("lock metrics-test-lock", "409")
	c.expect("bogus", "400")
	c.expect("lock", "400") // a known verb with a wrong argument count
	// b is queued once the owner counts a waiter.
	wait.For(t, 5*time.Second, "b queued", func() bool {
		return scrape(t, n.reg).get(t, "elock_lock_waiters") == 1
	})
	a.expect("unlock metrics-test-lock", "200")
	if got := b.line(); got != "200 Acquired" {
		t.Fatalf("b: got %q after a's unlock, want the hand-off", got)
	}

	var s scraped
	wait.For(t, 5*time.Second, "b's grant counted", func() bool {
		s = scrape(t, n.reg)
		v, _ := s.value("elock_commands_total", "command", "lock", "code", "200")
		return v == 2
	})
	for _, w := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"elock_client_connections", nil, 3},
		{"elock_sessions", []string{"state", "attached"}, 3},
		{"elock_sessions", []string{"state", "detached"}, 0},
		{"elock_locks_held", nil, 1},
		{"elock_lock_waiters", nil, 0},
		{"elock_grants_total", nil, 2},
		{"elock_handoffs_total", nil, 1},
		{"elock_commands_total", []string{"command", "lock", "code", "409"}, 1},
		{"elock_commands_total", []string{"command", "unknown", "code", "400"}, 1},
		{"elock_commands_total", []string{"command", "lock", "code", "400"}, 1},
		{"elock_commands_total", []string{"command", "unlock", "code", "200"}, 1},
		{"elock_command_duration_seconds", []string{"command", "lock"}, 4},
		{"elock_command_duration_seconds", []string{"command", "unlock"}, 1},
		{"elock_node_ready", nil, 1},
		{"elock_build_info", []string{"version", "0.1.0"}, 1},
	} {
		if got := s.get(t, w.name, w.labels...); got != w.want {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.want)
		}
	}
	if _, ok := s.value("elock_raft_leader"); ok {
		t.Error("a single node exports raft metrics")
	}

	// c hangs up: its session is kept, detached, for its timeout.
	c.nc.Close()
	wait.For(t, 5*time.Second, "c's session detached", func() bool {
		s := scrape(t, n.reg)
		d, _ := s.value("elock_sessions", "state", "detached")
		at, _ := s.value("elock_sessions", "state", "attached")
		conns, _ := s.value("elock_client_connections")
		return d == 1 && at == 2 && conns == 2
	})
}

// A grant refused in the lock-delay after a crash is a 503 counted with
// its reason.
func TestSingleNodeRefusalIsCountedByReason(t *testing.T) {
	n := startSingle(t, time.Minute)
	c := dial(t, n.addr)
	c.expect("lock refused-lock", "503")
	c.expect("lock refused-lock", "503")
	s := scrape(t, n.reg)
	if got := s.get(t, "elock_refusals_total", "code", "503", "reason", "lock-delay"); got != 2 {
		t.Errorf("refusals{503,lock-delay} = %v, want 2", got)
	}
	if got := s.get(t, "elock_commands_total", "command", "lock", "code", "503"); got != 2 {
		t.Errorf("commands{lock,503} = %v, want 2", got)
	}
	if got := s.get(t, "elock_grants_total"); got != 0 {
		t.Errorf("grants = %v, want 0", got)
	}
}

// No label of an elock metric carries a lock name or a session id: their
// number is unbounded.
func TestNoLabelCarriesALockNameOrSessionID(t *testing.T) {
	n := startSingle(t, 0)
	a, b := dial(t, n.addr), dial(t, n.addr)
	a.expect("conn_id session-id-of-a", "200")
	id := b.do("conn_id")[len("200 "):]
	names := []string{"name-one", "name-two", "lock", "unlock"}
	for _, name := range names[:2] {
		a.expect("lock "+name, "200")
		b.expect("lock "+name, "409")
		b.expect("info "+name, "200")
		for b.line() != "END" {
		}
	}
	a.expect("unlock name-one", "200")
	a.expect("unlock name-two", "200")
	forbidden := map[string]bool{"session-id-of-a": true, id: true, "name-one": true, "name-two": true}
	mfs, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, mf := range mfs {
		if len(mf.GetName()) < 6 || mf.GetName()[:6] != "elock_" {
			continue
		}
		seen++
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if forbidden[lp.GetValue()] {
					t.Errorf("%s has label %s=%q: a lock name or session id", mf.GetName(), lp.GetName(), lp.GetValue())
				}
			}
		}
	}
	if seen < 10 {
		t.Fatalf("only %d elock_ families gathered", seen)
	}
}
