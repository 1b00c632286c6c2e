package ring

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var three = []string{"n1", "n2", "n3"}

// startThree starts n1, then n2 and n3 joining the previous one, and waits
// until all three see each other alive.
func startThree(t *testing.T) (n1, n2, n3 testNode) {
	t.Helper()
	n1 = start(t, newTestConfig("n1"))
	n2 = start(t, newTestConfig("n2", n1.GossipAddr()))
	n3 = start(t, newTestConfig("n3", n2.GossipAddr()))
	rs := rings(n1, n2, n3)
	waitFor(t, 10*time.Second, "three alive members", rs, allSee(Alive, three, rs...))
	return n1, n2, n3
}

func TestJoinThree(t *testing.T) {
	t.Parallel()
	n1, n2, n3 := startThree(t)
	for _, n := range []testNode{n1, n2, n3} {
		if !n.Joined() {
			t.Errorf("%s: Joined() = false after seeing all members", n.self)
		}
		self := n.Self()
		if self.State != Alive || self.GossipAddr != n.GossipAddr() || self.Nonce == "" {
			t.Errorf("%s: Self() = %+v, gossip addr %s", n.self, self, n.GossipAddr())
		}
		for _, m := range n.Members() {
			if !strings.HasPrefix(m.GossipAddr, "127.0.0.1:") || strings.HasSuffix(m.GossipAddr, ":0") {
				t.Errorf("%s sees %s at %q", n.self, m.ID, m.GossipAddr)
			}
		}
	}
}

// TestRetryJoin: a node whose only join address is not up yet keeps trying
// and joins once that peer starts; start order does not matter.
func TestRetryJoin(t *testing.T) {
	t.Parallel()
	addr1 := freeAddr(t)
	n3 := start(t, newTestConfig("n3", addr1))
	failed := func() (bool, string) {
		n := n3.rec.count(func(r record) bool { return r.Msg == "ring join attempt failed" })
		return n >= 3, "join attempts"
	}
	waitFor(t, 5*time.Second, "n3 to fail joining a few times", nil, failed)
	if n3.Joined() {
		t.Fatal("n3 Joined() before any peer exists")
	}
	if got := n3.Members(); len(got) != 1 || got[0].ID != "n3" {
		t.Fatalf("n3 alone sees %v", got)
	}

	// n2 joins n3 (an unjoined node is joinable), then n1 appears at addr1.
	n2 := start(t, newTestConfig("n2", n3.GossipAddr()))
	cfg1 := newTestConfig("n1")
	cfg1.BindAddr = addr1
	n1 := start(t, cfg1)
	rs := rings(n1, n2, n3)
	took := waitFor(t, 10*time.Second, "retry-join to converge", rs, allSee(Alive, three, rs...))
	t.Logf("converged %v after n1 started", took)
	for _, n := range []testNode{n1, n2, n3} {
		if !n.Joined() {
			t.Errorf("%s: Joined() = false", n.self)
		}
	}
}

// TestShutdownIsDead: a member shut down without Leave goes suspect (on at
// least one survivor, through our own probes) and then dead.
func TestShutdownIsDead(t *testing.T) {
	t.Parallel()
	n1, n2, n3 := startThree(t)
	survivors := rings(n1, n2)
	sawSuspect := map[string]bool{}
	begin := time.Now()
	if err := n3.Shutdown(); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, 15*time.Second, "n3 dead on both survivors", survivors, func() (bool, string) {
		dead := 0
		for _, r := range survivors {
			m, _ := member(r, "n3")
			if m.State == Suspect && !sawSuspect[r.self] {
				sawSuspect[r.self] = true
				t.Logf("%s: n3 suspect after %v", r.self, time.Since(begin).Round(time.Millisecond))
			}
			if m.State == Dead {
				dead++
			}
		}
		return dead == 2, views(survivors...)
	})
	t.Logf("n3 dead on both survivors after %v", took.Round(time.Millisecond))
	if len(sawSuspect) == 0 {
		t.Errorf("no survivor reported n3 suspect before dead; memberlist's suspect log line may have changed (see logBridge)")
	}
	for _, r := range survivors {
		if m, _ := member(r, "n1"); m.State != Alive {
			t.Errorf("%s sees n1 %s", r.self, m.State)
		}
	}
}

// TestLeaveIsLeft: Leave publishes Leaving, and peers report the member left,
// not dead.
func TestLeaveIsLeft(t *testing.T) {
	t.Parallel()
	n1, n2, n3 := startThree(t)
	if err := n3.Leave(5 * time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if err := n3.Leave(5 * time.Second); err != nil {
		t.Fatalf("second Leave: %v", err)
	}
	if s := n3.Self(); s.State != Left || !s.Leaving {
		t.Errorf("n3 Self() after Leave = %s leaving=%v", s.State, s.Leaving)
	}
	if err := n3.UpdateMeta(func(m *Meta) { m.ClientAddr = "" }); !errors.Is(err, ErrClosed) {
		t.Errorf("UpdateMeta after Leave = %v, want ErrClosed", err)
	}
	if err := n3.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := n3.Leave(time.Second); !errors.Is(err, ErrClosed) {
		t.Errorf("Leave after Shutdown = %v, want ErrClosed", err)
	}
	survivors := rings(n1, n2)
	took := waitFor(t, 5*time.Second, "n3 left on both survivors", survivors, func() (bool, string) {
		for _, r := range survivors {
			if m, _ := member(r, "n3"); m.State != Left || !m.Leaving {
				return false, views(survivors...)
			}
		}
		return true, ""
	})
	t.Logf("n3 left on both survivors after %v", took.Round(time.Millisecond))
}

// TestUpdateMetaPropagates: a meta change reaches peers and wakes
// subscribers; immutable fields stay immutable.
func TestUpdateMetaPropagates(t *testing.T) {
	t.Parallel()
	n1, n2, n3 := startThree(t)
	sub, unsub := n1.Subscribe()
	defer unsub()
	select { // drain a signal left over from the joins
	case <-sub:
	default:
	}
	if err := n2.UpdateMeta(func(m *Meta) { m.Leaving = true; m.ClientAddr = "127.0.0.1:7999" }); err != nil {
		t.Fatalf("UpdateMeta: %v", err)
	}
	if s := n2.Self(); !s.Leaving || s.ClientAddr != "127.0.0.1:7999" {
		t.Errorf("n2 Self() after UpdateMeta = %+v", s.Meta)
	}
	rs := rings(n1, n3)
	took := waitFor(t, 5*time.Second, "n2's new meta on n1 and n3", rs, func() (bool, string) {
		for _, r := range rs {
			if m, _ := member(r, "n2"); !m.Leaving || m.ClientAddr != "127.0.0.1:7999" || m.State != Alive {
				return false, views(rs...)
			}
		}
		return true, ""
	})
	t.Logf("meta propagated in %v", took.Round(time.Millisecond))
	select {
	case <-sub:
	default:
		t.Error("n1's subscriber was not signalled")
	}

	for name, fn := range map[string]func(*Meta){
		"id":       func(m *Meta) { m.ID = "nX" },
		"nonce":    func(m *Meta) { m.Nonce = NewNonce() },
		"ringhash": func(m *Meta) { m.RingHash = RingHash(7) },
		"expect":   func(m *Meta) { m.Expect = 3 }, // non-voter with expect
	} {
		if err := n2.UpdateMeta(fn); !errors.Is(err, ErrInvalidMeta) {
			t.Errorf("UpdateMeta(%s) = %v, want ErrInvalidMeta", name, err)
		}
	}
	if s := n2.Self(); s.ClientAddr != "127.0.0.1:7999" || s.ID != "n2" {
		t.Errorf("refused updates changed Self(): %+v", s.Meta)
	}
}

// TestRefuseOtherRingHash: nodes with different placement configurations
// never become members of each other's rings, and each refusal is logged
// once per peer.
func TestRefuseOtherRingHash(t *testing.T) {
	t.Parallel()
	n1 := start(t, newTestConfig("n1"))
	n2 := start(t, newTestConfig("n2", n1.GossipAddr()))
	cfg := newTestConfig("x3", n1.GossipAddr())
	cfg.Meta.RingHash = RingHash(testPartitions + 1)
	x3 := start(t, cfg)
	// refusals counts n's "refused peer" warnings per peer.
	refusals := func(n testNode) map[string]int {
		out := map[string]int{}
		n.rec.count(func(r record) bool {
			if r.Msg == "ring: refused peer" {
				out[r.Attrs["member"]]++
			}
			return false
		})
		return out
	}
	attempts := func() int {
		return x3.rec.count(func(r record) bool { return r.Msg == "ring join attempt failed" })
	}
	waitFor(t, 10*time.Second, "both sides to refuse and x3 to retry", nil, func() (bool, string) {
		// x3 refuses whichever of n1's nodes NotifyMerge lists first.
		byN1, byX3 := refusals(n1), refusals(x3)
		return byN1["x3"] >= 1 && byX3["n1"]+byX3["n2"] >= 1 && attempts() >= 5,
			fmt.Sprintf("refusals by n1 %v, by x3 %v, %d attempts; %s", byN1, byX3, attempts(), views(n1.Ring, n2.Ring, x3.Ring))
	})
	rs := rings(n1, n2)
	waitFor(t, 5*time.Second, "n1 and n2 to see each other", rs, allSee(Alive, []string{"n1", "n2"}, rs...))
	if got := x3.Members(); len(got) != 1 {
		t.Errorf("x3 sees %v", got)
	}
	if x3.Joined() {
		t.Error("x3 Joined() although every join was refused")
	}
	for name, n := range map[string]testNode{"n1": n1, "n2": n2, "x3": x3} {
		for peer, k := range refusals(n) {
			if k != 1 {
				t.Errorf("%s logged its refusal of %s %d times, want once", name, peer, k)
			}
		}
	}
}

// TestRestartNewNonce: a node restarted fast under the same ID and address,
// before anyone noticed it was gone, is seen with its new nonce. memberlist
// drops its fresh alive message (incarnation 1 is older than what peers
// hold), but the join's push/pull tells it its old incarnation and it
// refutes with a higher one.
func TestRestartNewNonce(t *testing.T) {
	t.Parallel()
	n1, n2, n3 := startThree(t)
	cfg := newTestConfig("n3", n1.GossipAddr())
	cfg.BindAddr = n3.GossipAddr()
	oldNonce := n3.Self().Nonce
	sub, unsub := n1.Subscribe()
	defer unsub()
	if err := n3.Shutdown(); err != nil {
		t.Fatal(err)
	}
	n3b := start(t, cfg)
	rs := rings(n1, n2, n3b)
	took := waitFor(t, 10*time.Second, "restarted n3's new nonce everywhere", rs, newNonceSeen(cfg.Meta.Nonce, rs))
	t.Logf("fast restart seen with new nonce after %v (old %s, new %s)", took.Round(time.Millisecond), oldNonce, cfg.Meta.Nonce)
	select {
	case <-sub:
	default:
		t.Error("n1's subscriber was not signalled of the restart")
	}
}

// TestRestartAfterDeath: the same, after peers declared the old instance
// dead: peers hold it dead at a higher incarnation and ignore incarnation 1;
// the restarted node learns of its own death by push/pull and refutes it.
func TestRestartAfterDeath(t *testing.T) {
	t.Parallel()
	n1, n2, n3 := startThree(t)
	cfg := newTestConfig("n3", n2.GossipAddr())
	cfg.BindAddr = n3.GossipAddr()
	if err := n3.Shutdown(); err != nil {
		t.Fatal(err)
	}
	survivors := rings(n1, n2)
	waitFor(t, 15*time.Second, "n3 dead", survivors, func() (bool, string) {
		a, _ := member(n1.Ring, "n3")
		b, _ := member(n2.Ring, "n3")
		return a.State == Dead && b.State == Dead, views(survivors...)
	})
	n3b := start(t, cfg)
	rs := rings(n1, n2, n3b)
	took := waitFor(t, 10*time.Second, "restarted n3's new nonce everywhere", rs, newNonceSeen(cfg.Meta.Nonce, rs))
	t.Logf("restart after death seen with new nonce after %v", took.Round(time.Millisecond))
}

// TestRejoinHealsDeadMember: memberlist never contacts a member it has
// declared dead again (after GossipToTheDeadTime it forgets it), so two sides
// that lost each other stay apart. The rejoin loop re-joins non-alive
// members: here n2 comes back at its old address with no join list of its
// own, and only n1's rejoin loop can bring them together.
func TestRejoinHealsDeadMember(t *testing.T) {
	t.Parallel()
	n1 := start(t, newTestConfig("n1"))
	n2 := start(t, newTestConfig("n2", n1.GossipAddr()))
	rs := rings(n1, n2)
	waitFor(t, 10*time.Second, "two alive members", rs, allSee(Alive, []string{"n1", "n2"}, rs...))
	cfg := newTestConfig("n2") // no join list
	cfg.BindAddr = n2.GossipAddr()
	if err := n2.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "n2 dead on n1", rs[:1], func() (bool, string) {
		m, _ := member(n1.Ring, "n2")
		return m.State == Dead, views(n1.Ring)
	})
	n2b := start(t, cfg)
	rs = rings(n1, n2b)
	took := waitFor(t, 2*cfg.RejoinInterval+5*time.Second, "n1's rejoin loop to merge the restarted n2", rs, func() (bool, string) {
		m, _ := member(n1.Ring, "n2")
		ok, seen := allSee(Alive, []string{"n1", "n2"}, rs...)()
		return ok && m.Nonce == cfg.Meta.Nonce, seen
	})
	t.Logf("healed %v after n2 restarted (RejoinInterval %v)", took.Round(time.Millisecond), cfg.RejoinInterval)
}

func newNonceSeen(nonce string, rs []*Ring) func() (bool, string) {
	return func() (bool, string) {
		for _, r := range rs {
			if m, _ := member(r, "n3"); m.Nonce != nonce || m.State != Alive {
				return false, views(rs...)
			}
		}
		return true, ""
	}
}

func TestMetaTooLargeIsAnError(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("h", 600) + ":1"
	cfg := newTestConfig("n1")
	cfg.Meta.ClientAddr = big
	if _, err := cfg.Meta.Encode(); !errors.Is(err, ErrMetaTooLarge) {
		t.Errorf("Encode = %v, want ErrMetaTooLarge", err)
	}
	if _, err := New(cfg); !errors.Is(err, ErrMetaTooLarge) {
		t.Errorf("New = %v, want ErrMetaTooLarge", err)
	}

	n := start(t, newTestConfig("n1"))
	if err := n.UpdateMeta(func(m *Meta) { m.PeerAddr = big }); !errors.Is(err, ErrMetaTooLarge) {
		t.Errorf("UpdateMeta = %v, want ErrMetaTooLarge", err)
	}
	if s := n.Self(); s.PeerAddr != "127.0.0.1:7001" {
		t.Errorf("refused update changed PeerAddr to %q", s.PeerAddr)
	}
	// The largest meta a valid config can produce fits with room to spare.
	m := Meta{ID: strings.Repeat("i", maxIDLen), Nonce: NewNonce(), RingHash: RingHash(1 << 20),
		ClientAddr: "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", PeerAddr: "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
		Voter: true, Expect: 1 << 30, Leaving: true}
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a large realistic meta encodes to %d bytes (limit %d)", len(b), MaxMetaSize)
}

func TestSubscribe(t *testing.T) {
	t.Parallel()
	n := start(t, newTestConfig("n1"))
	sub, unsub := n.Subscribe()
	if err := n.UpdateMeta(func(m *Meta) { m.ClientAddr = "127.0.0.1:1" }); err != nil {
		t.Fatal(err)
	}
	if err := n.UpdateMeta(func(m *Meta) { m.ClientAddr = "127.0.0.1:2" }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sub:
	default:
		t.Fatal("no signal after UpdateMeta")
	}
	select { // two changes, one coalesced signal
	case <-sub:
		t.Fatal("signals did not coalesce")
	default:
	}
	unsub()
	unsub()
	n.mu.Lock()
	left := len(n.subs)
	n.mu.Unlock()
	if left != 0 {
		t.Errorf("%d subscriptions left after unsubscribe", left)
	}
}

func TestShutdownIdempotentAndBounded(t *testing.T) {
	t.Parallel()
	// A node stuck retrying a join that can never succeed shuts down
	// promptly.
	n := start(t, newTestConfig("n1", freeAddr(t)))
	begin := time.Now()
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	if err := n.UpdateMeta(func(*Meta) {}); !errors.Is(err, ErrClosed) {
		t.Errorf("UpdateMeta after Shutdown = %v, want ErrClosed", err)
	}
}
