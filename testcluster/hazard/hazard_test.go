package hazard_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/elock/elock/testcluster"
	"github.com/elock/elock/testcluster/wait"
	"github.com/elock/elock/testcluster/workload"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testcluster.Cleanup()
	os.Exit(code)
}

// traffic starts a workload on the live nodes of c.
func traffic(t *testing.T, c *testcluster.Cluster, seed uint64, addrs func() []string) *workload.Workload {
	t.Helper()
	if addrs == nil {
		addrs = c.Addrs
	}
	return workload.Start(workload.Config{
		Addrs:          addrs,
		Names:          []string{"hot-a", "hot-b", "hot-c", "hot-d"},
		Clients:        8,
		SessionTimeout: 15 * time.Second,
		MaxWait:        2,
		MaxHold:        10 * time.Millisecond,
		UnlockAll:      0.02,
		Seed:           seed,
	})
}

// verify stops the workload and checks its history: linearizable per
// name, no overlapping holds, no lost grant, tokens only growing, and a
// fenced resource that never saw a stale token.
func verify(t *testing.T, w *workload.Workload) workload.Counts {
	t.Helper()
	h := w.Stop()
	counts := w.Counts()
	if err := w.Err(); err != nil {
		t.Errorf("protocol error: %v", err)
	}
	dir := filepath.Join(os.TempDir(), "elock-report-"+strings.ReplaceAll(t.Name(), "/", "_"))
	sum, ok, err := workload.Check(context.Background(), h, w.Fence(), dir)
	if err != nil {
		t.Fatalf("checking the history: %v", err)
	}
	t.Logf("workload %+v", counts)
	if notes := w.Notes(); len(notes) > 0 {
		t.Logf("first refusals and unknown outcomes:\n  %s", strings.Join(notes, "\n  "))
	}
	if !ok {
		t.Errorf("history violates the guarantees (report in %s):\n%s", dir, sum)
	}
	if counts.Acquired == 0 {
		t.Errorf("the workload acquired nothing: %+v", counts)
	}
	return counts
}

// progress waits until the workload has answered n more operations than
// it had: traffic is flowing (before a fault, or again after one).
func progress(t *testing.T, w *workload.Workload, n int, what string) {
	t.Helper()
	base := w.Counts().Ops
	wait.For(t, 60*time.Second, fmt.Sprintf("%d more operations answered %s", n, what), func() bool {
		return w.Counts().Ops >= base+int64(n)
	})
}

// partitions is elockd's default partition count, which the clusters here
// run with.
const partitions = 128

// takenOver waits until every partition is owned by a node other than
// victim, as the live nodes report it: the victim's lease ran out and
// the leader moved its partitions.
func takenOver(t *testing.T, c *testcluster.Cluster, victim int) {
	t.Helper()
	wait.For(t, 60*time.Second, "every partition of node "+fmt.Sprint(victim)+" taken over", func() bool {
		owned := 0
		for _, i := range c.Live() {
			if i == victim {
				continue
			}
			_, st := c.Raw(i).Block("stats")
			n, err := strconv.Atoi(st["node_partitions_owned"])
			if err != nil {
				return false
			}
			owned += n
		}
		return owned == partitions
	})
}

// waitWaiters waits up to 10 s until info NAME, asked through conn,
// counts want waiters.
func waitWaiters(t *testing.T, conn *testcluster.Conn, name, want string) {
	t.Helper()
	wait.For(t, 10*time.Second, fmt.Sprintf("%s waiter(s) for %s", want, name), func() bool {
		_, info := conn.Block("info " + name)
		return info["waiters"] == want
	})
}

// holder is a raw client that holds a lock through one node.
type holder struct {
	t     *testing.T
	c     *testcluster.Cluster
	conn  *testcluster.Conn
	id    string
	name  string
	token uint64
}

// hold takes name through node home and returns the holder, whose
// session outlives its connection by timeoutMS.
func hold(t *testing.T, c *testcluster.Cluster, home int, name string, timeoutMS int) *holder {
	t.Helper()
	conn := c.Raw(home)
	conn.Timeout = time.Minute // a request may wait out a takeover
	if r := conn.Do("set_timeout " + strconv.Itoa(timeoutMS)); r != "200 timeout set" {
		t.Fatalf("set_timeout: %q", r)
	}
	if r := conn.Do("lock " + name); r != "200 Acquired" {
		t.Fatalf("lock %s through node %d: %q", name, home, r)
	}
	return &holder{t: t, c: c, conn: conn, id: strings.TrimPrefix(conn.Do("conn_id"), "200 "), name: name, token: tokenOf(t, conn, name)}
}

func tokenOf(t *testing.T, conn *testcluster.Conn, name string) uint64 {
	t.Helper()
	r := conn.Do("token " + name)
	tok, err := strconv.ParseUint(strings.TrimPrefix(r, "200 "), 10, 64)
	if err != nil {
		t.Fatalf("token %s: %q", name, r)
	}
	return tok
}

// nameOwnedBy finds a lock name whose owner and replica are the given
// nodes ("" for any), and whose owner is not node home.
func nameOwnedBy(t testing.TB, c *testcluster.Cluster, prefix string, want func(owner, replica string) bool) string {
	t.Helper()
	for i := range 10000 {
		name := fmt.Sprintf("%s-%d", prefix, i)
		_, owner, replica, _ := c.Where(name)
		if want(owner, replica) {
			return name
		}
	}
	t.Fatalf("no name found with the placement wanted")
	return ""
}

// Hazard 1, lost grant: the owner of a held lock is killed. The grant was
// replicated before it was acknowledged, so the replica takes over with
// it: the holder keeps the lock and its token, nobody else gets it, and
// the holder's unlock works on the new owner.
func TestOwnerKilledKeepsGrant(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	w := traffic(t, c, 1, nil)
	ownerID := c.Node(1).ID
	name := nameOwnedBy(t, c, "grant", func(o, _ string) bool { return o == ownerID })
	h := hold(t, c, 0, name, 30000)
	other := c.Raw(2)
	other.Timeout = time.Minute
	progress(t, w, 50, "before the fault")
	c.Kill(1)
	wait.For(t, 30*time.Second, "a new owner", func() bool {
		_, o, _, _ := c.Where(name)
		return o != "" && o != ownerID
	})
	if r := other.Do("lock " + name); r != "409 Unavailable" {
		t.Fatalf("another session after the takeover got %q; the grant was lost", r)
	}
	if tok := tokenOf(t, h.conn, name); tok != h.token {
		t.Fatalf("holder's token after the takeover = %d, want %d", tok, h.token)
	}
	if r := h.conn.Do("unlock " + name); r != "200 Unlocked" {
		t.Fatalf("holder's unlock after the takeover: %q", r)
	}
	if r := other.Do("lock " + name); r != "200 Acquired" {
		t.Fatalf("lock after the holder's unlock: %q", r)
	}
	if tok := tokenOf(t, other, name); tok <= h.token {
		t.Fatalf("token after the takeover %d is not above %d", tok, h.token)
	}
	progress(t, w, 50, "after the takeover")
	verify(t, w)
}

// Hazard 7, lost home: the node a client is connected to dies. The client
// resumes on another node with conn_id and keeps every lock, whichever
// owners they live on.
func TestHomeKilledSessionResumes(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	w := traffic(t, c, 2, nil)
	home := c.Raw(0)
	home.Timeout = time.Minute
	home.Do("set_timeout 30000")
	tokens := map[string]uint64{}
	for i := range 6 {
		name := fmt.Sprintf("resume-%d", i)
		if r := home.Do("lock " + name); r != "200 Acquired" {
			t.Fatalf("lock %s: %q", name, r)
		}
		tokens[name] = tokenOf(t, home, name)
	}
	id := strings.TrimPrefix(home.Do("conn_id"), "200 ")
	progress(t, w, 50, "before the home dies")
	c.Kill(0)
	other := c.Raw(1)
	other.Timeout = time.Minute
	start := time.Now()
	if r := other.Do("conn_id " + id); r != "200 conn id set" {
		t.Fatalf("resume on another node: %q", r)
	}
	t.Logf("resumed %v after the home died", time.Since(start))
	_, s := other.Block("session")
	if s["resumed"] != "1" || s["held"] != "6" {
		t.Fatalf("resumed session: %v", s)
	}
	for name, tok := range tokens {
		if got := tokenOf(t, other, name); got != tok {
			t.Fatalf("%s: token %d after the resume, want %d", name, got, tok)
		}
	}
	third := c.Raw(2)
	third.Timeout = time.Minute
	for name := range tokens {
		if r := third.Do("lock " + name); r != "409 Unavailable" {
			t.Fatalf("another session got %s after the resume: %q", name, r)
		}
	}
	if r := other.Do("unlock_all"); r != "200 OK" {
		t.Fatalf("unlock_all: %q", r)
	}
	for name := range tokens {
		if r := third.Do("lock " + name); r != "200 Acquired" {
			t.Fatalf("%s after unlock_all: %q", name, r)
		}
	}
	verify(t, w)
}

// Hazard 3, early serving: a waiter queued through one node on a lock
// whose owner dies keeps waiting, is served by the new owner once the
// holder unlocks, and never sees an error.
func TestWaiterAcrossTakeover(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	ownerID := c.Node(1).ID
	name := nameOwnedBy(t, c, "wait", func(o, _ string) bool { return o == ownerID })
	h := hold(t, c, 0, name, 30000)
	waiter := c.Raw(2)
	waiter.Timeout = time.Minute
	if err := waiter.Send("lock " + name + " 60"); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 10*time.Second, "the waiter to queue", func() bool {
		_, in := c.Raw(0).Block("info " + name)
		return in["waiters"] == "1"
	})
	c.Kill(1)
	wait.For(t, 30*time.Second, "a new owner", func() bool {
		_, o, _, _ := c.Where(name)
		return o != "" && o != ownerID
	})
	// The waiter must still be waiting: the lock is held.
	if r := h.conn.Do("unlock " + name); r != "200 Unlocked" {
		t.Fatalf("holder's unlock: %q", r)
	}
	r, err := waiter.Line()
	if err != nil || r != "200 Acquired" {
		t.Fatalf("waiter across the takeover got %q, %v; want 200 Acquired", r, err)
	}
	if tok := tokenOf(t, waiter, name); tok <= h.token {
		t.Fatalf("waiter's token %d is not above the holder's %d", tok, h.token)
	}
}

// Hazard 2, double failure: the owner and the replica of a held lock die
// together. Nothing of the partition survives, so its names are refused,
// as retryable, until a lock-delay has passed, and only then granted
// again, with a token above every earlier one.
func TestOwnerAndReplicaKilled(t *testing.T) {
	// Five voters, so that three survive to decide; a short -max-timeout
	// keeps the lock-delay (max timeout + lease + home lease) short.
	// -lost-after 2s: both killed nodes stay down, and until they have been
	// silent that long they might be a partition coming back.
	c := testcluster.New(t, testcluster.Options{Nodes: 5, Flags: []string{"-max-timeout", "2s", "-session-timeout", "2s", "-lost-after", "2s"}})
	owner, replica := c.Node(1).ID, c.Node(2).ID
	name := nameOwnedBy(t, c, "double", func(o, r string) bool { return o == owner && r == replica })
	h := hold(t, c, 0, name, 2000)
	other := c.Raw(3)
	other.Timeout = time.Minute // a request may wait out a takeover
	c.Kill(1)
	c.Kill(2)
	killed := time.Now()
	// Until the lock-delay has passed, every attempt is refused as
	// retryable; none is granted.
	const lockDelay = 2*time.Second + 3*time.Second + 3*time.Second
	var granted time.Time
	refused := 0
	for time.Since(killed) < 60*time.Second {
		r := other.Do("lock " + name)
		if r == "200 Acquired" {
			granted = time.Now()
			break
		}
		if !strings.HasPrefix(r, "503 ") {
			t.Fatalf("lock during the loss: %q, want a 503 refusal", r)
		}
		refused++
		time.Sleep(200 * time.Millisecond)
	}
	if granted.IsZero() {
		t.Fatalf("never granted again after the loss (last refusal %q)", other.Do("lock "+name))
	}
	if d := granted.Sub(killed); d < lockDelay {
		t.Fatalf("granted %v after both copies died, before the lock-delay of %v", d, lockDelay)
	}
	if refused == 0 {
		t.Fatalf("no refusal seen during the lock-delay")
	}
	if tok := tokenOf(t, other, name); tok <= h.token {
		t.Fatalf("token after the loss %d is not above the lost grant's %d", tok, h.token)
	}
	t.Logf("refused %d times; granted again %v after the kill", refused, granted.Sub(killed))
}

// Hazard 8, stale rejoin: every node in turn is killed and restarted under
// traffic. A restarted node comes back empty under a new incarnation and
// is given partitions only with their state; the history shows it never
// served an old table.
func TestRollingRestartUnderTraffic(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	w := traffic(t, c, 3, nil)
	for i := range 3 {
		progress(t, w, 50, fmt.Sprintf("before node %d is killed", i))
		c.Kill(i)
		progress(t, w, 20, fmt.Sprintf("while node %d is down", i))
		c.Restart(i)
		if err := c.WaitConverged(90 * time.Second); err != nil {
			t.Fatalf("after restarting node %d: %v", i, err)
		}
	}
	progress(t, w, 50, "after the last restart")
	verify(t, w)
}

// A node that joins gets partitions with their state before it serves
// them, and a node that leaves with SIGTERM hands its partitions over
// first: clients of the other nodes see no error at all.
func TestJoinAndLeaveUnderTraffic(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	fixed := append([]string(nil), c.Addrs()...)
	// Idle sessions on the staying nodes, each holding a lock. Some of
	// their records move to the joining node and back; none may be
	// detached for renewals its home made elsewhere meanwhile.
	idle := make([]*testcluster.Conn, 32)
	for i := range idle {
		idle[i] = c.Raw(i % 3)
		if got := idle[i].Do(fmt.Sprintf("lock idle-%d", i)); got != "200 Acquired" {
			t.Fatalf("lock idle-%d: %q", i, got)
		}
	}
	w := traffic(t, c, 4, func() []string { return fixed })
	progress(t, w, 50, "before the join")
	j := c.Join()
	if err := c.WaitConverged(90 * time.Second); err != nil {
		t.Fatalf("after the join: %v", err)
	}
	_, st := c.Raw(j).Block("stats")
	if st["node_partitions_owned"] == "0" {
		t.Errorf("the joined node owns no partition: %v", st)
	}
	// Traffic for longer than a home lease under the new placement, so
	// that a renewal from before the join would count as stale when the
	// records come back.
	joined := time.Now()
	base := w.Counts().Ops
	wait.For(t, 60*time.Second, "a home lease of traffic after the join", func() bool {
		return time.Since(joined) > 5*time.Second && w.Counts().Ops > base+50
	})
	if err := c.Stop(j); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	if err := c.WaitConverged(90 * time.Second); err != nil {
		t.Fatalf("after the leave: %v", err)
	}
	progress(t, w, 50, "after the leave")
	counts := verify(t, w)
	if counts.Refused != 0 || counts.Unknown != 0 || counts.Errors != 0 {
		t.Errorf("clients of the staying nodes saw errors during the join and leave: %+v", counts)
	}
	for i, cn := range idle {
		if got := cn.Do(fmt.Sprintf("token idle-%d", i)); !strings.HasPrefix(got, "200 ") {
			t.Errorf("idle session %d after the join and leave: token: %q", i, got)
		}
	}
}

// A request already with an owner that then pauses does not wait for it:
// once the partition is taken over, the home asks the new owner. Clients
// get definite answers, not a 503 or 504 after the home's route timeout,
// and a waiter queued at the paused owner is granted by the new one.
func TestRequestsLeaveAPausedOwner(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	home := c.Node(0).ID
	_, st := c.Raw(0).Block("stats")
	leader := st["cluster_leader"]
	// Not the home, and not the raft leader, whose pause would add an
	// election to the takeover.
	var owner string
	name := nameOwnedBy(t, c, "paused", func(o, _ string) bool { owner = o; return o != home && o != leader })
	waited := nameOwnedBy(t, c, "waited", func(o, _ string) bool { return o == owner })

	holder, waiter, plain := c.Raw(0), c.Raw(0), c.Raw(0)
	waiter.Timeout, plain.Timeout = 40*time.Second, 40*time.Second
	if got := holder.Do("lock " + waited); got != "200 Acquired" {
		t.Fatalf("lock %s: %q", waited, got)
	}
	if err := waiter.Send("lock " + waited + " 30"); err != nil {
		t.Fatal(err)
	}
	probe := c.Raw(0)
	waitWaiters(t, probe, waited, "1")

	c.Pause(c.IndexOf(owner))
	defer c.Resume(c.IndexOf(owner))
	if got := plain.Do("lock " + name); got != "200 Acquired" {
		t.Errorf("lock sent to a paused owner: %q, want a grant from the new owner", got)
	}
	if got := holder.Do("unlock " + waited); got != "200 Unlocked" {
		t.Errorf("unlock %s: %q", waited, got)
	}
	if got, err := waiter.Line(); err != nil || got != "200 Acquired" {
		t.Errorf("the waiter queued at the paused owner: %q, %v; want a grant from the new owner", got, err)
	}
}

// A node that shuts down while a client's wait is queued at another
// owner withdraws it or says the outcome is unknown: the session lives on
// (the client resumes elsewhere), and a client told "503, nothing
// happened" must not find its session handed the lock later.
func TestWaitCutShortByHomeShutdown(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	home := c.Node(0).ID
	name := nameOwnedBy(t, c, "shutwait", func(o, _ string) bool { return o != home })
	holder := c.Raw(1)
	if got := holder.Do("lock " + name); got != "200 Acquired" {
		t.Fatalf("lock %s: %q", name, got)
	}
	waiter := c.Raw(0)
	waiter.Timeout = 2 * testcluster.StopTimeout
	id := strings.TrimPrefix(waiter.Do("conn_id"), "200 ")
	if err := waiter.Send("lock " + name + " 60"); err != nil {
		t.Fatal(err)
	}
	probe := c.Raw(1)
	waitWaiters(t, probe, name, "1")
	stopped := make(chan error, 1)
	go func() { stopped <- c.Stop(0) }()
	reply, _ := waiter.Line()
	if err := <-stopped; err != nil {
		t.Errorf("stopping the home: %v", err)
	}
	// The client resumes elsewhere and the holder lets go: if it was told
	// that nothing happened, its session must not be handed the lock.
	resumed := c.Raw(2)
	if got := resumed.Do("conn_id " + id); got != "200 conn id set" {
		t.Fatalf("resume: %q", got)
	}
	if got := holder.Do("unlock " + name); got != "200 Unlocked" {
		t.Fatalf("unlock: %q", got)
	}
	waitWaiters(t, probe, name, "0")
	if got := resumed.Do("token " + name); strings.HasPrefix(reply, "503 ") && strings.HasPrefix(got, "200 ") {
		t.Errorf("the wait was answered %q, as if nothing had happened, yet its session was granted the lock (token %q)", reply, got)
	}
}

// With -data-dir the partition table, and so the epochs tokens carry,
// survive a restart of the whole cluster: tokens keep growing.
func TestDataDirTokensSurviveFullRestart(t *testing.T) {
	// Every lock is lost with every node (locks live in memory), so the
	// partitions wait out a lock-delay; a short -max-timeout keeps it short.
	c := testcluster.New(t, testcluster.Options{Nodes: 3, DataDir: true, Flags: []string{"-max-timeout", "2s", "-session-timeout", "2s"}})
	conn := c.Raw(0)
	conn.Do("lock survivor")
	before := tokenOf(t, conn, "survivor")
	for i := range 3 {
		c.Kill(i)
	}
	for i := range 3 {
		c.Restart(i)
	}
	if err := c.WaitConverged(90 * time.Second); err != nil {
		t.Fatalf("after the full restart: %v", err)
	}
	conn = c.Raw(1)
	wait.For(t, 60*time.Second, "a grant after the lock-delay", func() bool {
		r := conn.Do("lock survivor")
		if r != "200 Acquired" && !strings.HasPrefix(r, "503 ") {
			t.Fatalf("lock after the restart: %q", r)
		}
		return r == "200 Acquired"
	})
	if after := tokenOf(t, conn, "survivor"); after <= before {
		t.Fatalf("token after a full restart %d is not above %d", after, before)
	}
}

// A session's locks live on many owners; when its client disconnects, all
// of them are released once its timeout has passed, and not before.
func TestSessionExpiryReleasesEveryOwner(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	conn := c.Raw(0)
	conn.Do("set_timeout 2000")
	owners := map[string]bool{}
	var names []string
	for i := 0; len(owners) < 3 || len(names) < 6; i++ {
		name := fmt.Sprintf("expire-%d", i)
		_, owner, _, _ := c.Where(name)
		owners[owner] = true
		names = append(names, name)
		if r := conn.Do("lock " + name); r != "200 Acquired" {
			t.Fatalf("lock %s: %q", name, r)
		}
	}
	conn.Close()
	closed := time.Now()
	other := c.Raw(1)
	other.Timeout = time.Minute
	for _, name := range names {
		wait.For(t, 30*time.Second, name+" released", func() bool {
			r := other.Do("lock " + name)
			if r == "200 Acquired" {
				return true
			}
			if r != "409 Unavailable" {
				t.Fatalf("lock %s: %q", name, r)
			}
			return false
		})
	}
	if d := time.Since(closed); d < 2*time.Second {
		t.Fatalf("locks released %v after the disconnect, before the 2s timeout", d)
	}
}

// Hazard 4, false death: an owner paused (as by a long GC pause) past its
// lease is taken over; when it wakes it still believes it owns its
// partitions, but its lease has run out and its replica has moved on, so
// it neither grants nor answers for them. The history shows no overlap.
//
// Pausing the raft leader as well is the hardest case: on waking it still
// believes it leads, and must not grant itself (or anyone) a lease for the
// table it remembers.
func TestPausedOwner(t *testing.T) {
	for _, leader := range []bool{true, false} {
		t.Run(fmt.Sprint("leader=", leader), func(t *testing.T) {
			c := testcluster.New(t, testcluster.Options{Nodes: 3})
			_, st := c.Raw(0).Block("stats")
			victim := c.IndexOf(st["cluster_leader"])
			if !leader {
				victim = (victim + 1) % 3
			}
			w := traffic(t, c, 5, nil)
			progress(t, w, 50, "before the pause")
			c.Pause(victim)
			// Past its lease and the margin: its partitions are taken over
			// while it sleeps, and it wakes believing it owns them.
			takenOver(t, c, victim)
			c.Resume(victim)
			if err := c.WaitConverged(90 * time.Second); err != nil {
				t.Fatalf("after the pause: %v", err)
			}
			progress(t, w, 50, "after the pause")
			verify(t, w)
		})
	}
}
