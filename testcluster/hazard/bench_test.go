package hazard_test

import (
	"slices"
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
