package hazard_test

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elock/elock/testcluster"
)

// BenchmarkFailover measures, over 5 kills of an owner, the median time
// from SIGKILL to the first new grant of a name on one of its partitions,
// and to the old holder's successful unlock of a lock it held there.
//
//	go test -run '^$' -bench Failover -benchtime 1x ./testcluster/hazard/
func BenchmarkFailover(b *testing.B) {
	const runs = 5
	var grants, unlocks []time.Duration
	for range b.N {
		for range runs {
			g, u := failoverOnce(b)
			grants, unlocks = append(grants, g), append(unlocks, u)
		}
	}
	slices.Sort(grants)
	slices.Sort(unlocks)
	b.ReportMetric(grants[len(grants)/2].Seconds(), "s-to-first-grant")
	b.ReportMetric(unlocks[len(unlocks)/2].Seconds(), "s-to-holder-unlock")
	b.Logf("first grant: %v; holder's unlock: %v", grants, unlocks)
}

func failoverOnce(b *testing.B) (grant, unlock time.Duration) {
	c := testcluster.New(b, testcluster.Options{Nodes: 3})
	victim := c.Node(1).ID
	owned := func(o, _ string) bool { return o == victim }
	held := nameOwnedBy(b, c, "held", owned)
	probe := nameOwnedBy(b, c, "probe", owned)
	holder := c.Raw(0)
	holder.Timeout = time.Minute
	if r := holder.Do("lock " + held); r != "200 Acquired" {
		b.Fatalf("lock: %q", r)
	}
	prober := c.Raw(2)
	prober.Timeout = time.Minute
	prober.Do("conn_id") // register the session before the fault
	unlocked := make(chan time.Duration, 1)
	killed := time.Now()
	c.Kill(1)
	go func() {
		holder.Send("unlock " + held)
		r, err := holder.Line()
		if err != nil || r != "200 Unlocked" {
			b.Errorf("holder's unlock after the kill: %q %v", r, err)
		}
		unlocked <- time.Since(killed)
	}()
	for {
		r := prober.Do("lock " + probe)
		if r == "200 Acquired" {
			grant = time.Since(killed)
			break
		}
		if time.Since(killed) > time.Minute {
			b.Fatalf("no grant a minute after the kill: %q", r)
		}
	}
	return grant, <-unlocked
}

// BenchmarkElectionFailover measures, over 5 runs, the median time from
// the SIGKILL of the node a leader is connected to, to the waiting
// candidate's "200 Elected" on another node, and to the last of 100
// watchers (on the surviving nodes) told of the new leader. The leader's
// session has a 2 s timeout: it ends 2 s after its home's renewals stop
// being missed, which is what a failover waits for.
//
//	go test -run '^$' -bench ElectionFailover -benchtime 1x ./testcluster/hazard/
func BenchmarkElectionFailover(b *testing.B) {
	const runs, watchers = 5, 100
	var elected, told []time.Duration
	for range b.N {
		for range runs {
			e, t := electionFailoverOnce(b, watchers)
			elected, told = append(elected, e), append(told, t)
		}
	}
	slices.Sort(elected)
	slices.Sort(told)
	b.ReportMetric(elected[len(elected)/2].Seconds(), "s-to-elected")
	b.ReportMetric(told[len(told)/2].Seconds(), "s-to-last-watcher")
	b.Logf("elected: %v; last watcher told: %v", elected, told)
}

func electionFailoverOnce(b *testing.B, watchers int) (elected, told time.Duration) {
	c := testcluster.New(b, testcluster.Options{Nodes: 3})
	leader := c.Raw(1)
	leader.Timeout = time.Minute
	if r := leader.Do("set_timeout 2000"); r != "200 timeout set" {
		b.Fatal(r)
	}
	if r := leader.Do("campaign fo leader-1"); r != "200 Elected" {
		b.Fatalf("campaign: %q", r)
	}
	ws := make([]*testcluster.Conn, watchers)
	for i := range ws {
		ws[i] = c.Raw([]int{0, 2}[i%2])
		ws[i].Timeout = time.Minute
		if r := ws[i].Do("watch fo"); r != "200 watching" {
			b.Fatal(r)
		}
		if l, err := ws[i].Line(); err != nil || !strings.HasPrefix(l, "EVENT fo held ") {
			b.Fatalf("first event: %q %v", l, err)
		}
	}
	next := c.Raw(2)
	next.Timeout = time.Minute
	if err := next.Send("campaign fo leader-2 120"); err != nil {
		b.Fatal(err)
	}
	// Queued behind the leader before the kill: not timed.
	probe := c.Raw(0)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, st := probe.Block("info fo"); st["waiters"] == "1" {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the candidate's campaign did not queue within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	killed := time.Now()
	c.Kill(1)
	if r, err := next.Line(); err != nil || r != "200 Elected" {
		b.Fatalf("the candidate: %q %v", r, err)
	}
	elected = time.Since(killed)
	var wg sync.WaitGroup
	last := make([]time.Duration, len(ws))
	for i, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				l, err := w.Line()
				if err != nil {
					b.Errorf("watcher %d: %v", i, err)
					return
				}
				if strings.HasPrefix(l, "EVENT fo held ") && strings.HasSuffix(l, " leader-2") {
					last[i] = time.Since(killed)
					return
				}
			}
		}()
	}
	wg.Wait()
	return elected, slices.Max(last)
}
