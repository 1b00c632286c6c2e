package nemesis_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elock/elock/testcluster"
	"github.com/elock/elock/testcluster/history"
	"github.com/elock/elock/testcluster/nemesis"
	"github.com/elock/elock/testcluster/workload"
)

func TestMain(m *testing.M) {
	code := nemesis.Main(m)
	testcluster.Cleanup()
	os.Exit(code)
}

// The suite's knobs. The defaults are the bounded run of the README's
// test command; the full run sets them (see the package doc).
const (
	envSeeds    = "ELOCK_NEMESIS_SEEDS"    // "1-3", "7", "1,5,9-12"
	envDuration = "ELOCK_NEMESIS_DURATION" // faults per seed, e.g. "60s"
	envReports  = "ELOCK_NEMESIS_REPORTS"  // where failure reports go
	envOut      = "ELOCK_NEMESIS_OUT"      // a file for the availability table
	envFlags    = "ELOCK_NEMESIS_FLAGS"    // extra elockd flags, e.g. "-log-level debug"
	envSecure   = "ELOCK_NEMESIS_SECURE"   // "1": every node with a gossip key and peer TLS
)

func config(t *testing.T) (seeds []uint64, duration time.Duration, reports string) {
	spec := cmp(os.Getenv(envSeeds), "1-3")
	seeds, err := parseSeeds(spec)
	if err != nil {
		t.Fatalf("%s=%q: %v", envSeeds, spec, err)
	}
	duration, err = time.ParseDuration(cmp(os.Getenv(envDuration), "25s"))
	if err != nil {
		t.Fatalf("%s: %v", envDuration, err)
	}
	return seeds, duration, cmp(os.Getenv(envReports), filepath.Join(os.TempDir(), "elock-nemesis"))
}

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// parseSeeds reads "1-3,7" as 1, 2, 3, 7.
func parseSeeds(spec string) ([]uint64, error) {
	var seeds []uint64
	for _, part := range strings.Split(spec, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.ParseUint(lo, 10, 64)
		if err != nil {
			return nil, err
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 64); err != nil || b < a || b-a > 10000 {
				return nil, fmt.Errorf("bad range %q", part)
			}
		}
		for s := a; s <= b; s++ {
			seeds = append(seeds, s)
		}
	}
	return seeds, nil
}

func TestParseSeeds(t *testing.T) {
	for spec, want := range map[string]string{"1-3": "[1 2 3]", "7": "[7]", "1,5, 9-10": "[1 5 9 10]"} {
		got, err := parseSeeds(spec)
		if err != nil || fmt.Sprint(got) != want {
			t.Errorf("parseSeeds(%q) = %v, %v; want %s", spec, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "3-1", "1-"} {
		if _, err := parseSeeds(bad); err == nil {
			t.Errorf("parseSeeds(%q) accepted", bad)
		}
	}
}

// The workload's names: hot locks taken exclusively, a lock taken shared
// (and now and then exclusively), and a semaphore with a client more than
// it has permits.
var (
	hot      = []string{"hot-a", "hot-b", "hot-c", "hot-d"}
	rw       = "hot-rw"
	sem      = "hot-sem"
	permits  = 2
	elect    = "hot-elect"
	allNames = append(slices.Clone(hot), rw, sem, elect)
)

// failover bounds how long after the campaigns stop every watcher must
// agree with `leader hot-elect`: a campaigner that could not resign leaves
// its term to its session's expiry (the workload's 15 s timeout), and the
// rest is the suite's 30 s for serving again.
const failover = 30 * time.Second

// TestNemesis runs the mixed fault schedule of each seed against a fresh
// five-node cluster under a recorded workload, then checks the history:
// linearizable per name, no exclusive holder together with another
// holder, never more than LIMIT holders of the semaphore, no lost grant
// (exclusive, shared or permit), tokens only growing across every grant
// of a name, a fenced resource that never saw a stale token, and a
// cluster that serves again once the faults are over. Campaigns are
// exclusive grants, so those checks cover the election too (at most one
// leader, growing terms); on top, every watch stream's tokens only grow
// (watch-tokens), every watcher comes to agree with `leader hot-elect`
// within the failover time (watch-agreement), and every EVENT lost is
// about a grant that was in fact released (lost-events).
func TestNemesis(t *testing.T) {
	seeds, duration, reports := config(t)
	net, err := nemesis.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		avail []nemesis.Availability
	)
	for _, seed := range seeds {
		// Each seed leads with a third of the kinds, chosen by the seed
		// alone so that a replay of one seed runs the same schedule, and
		// any three consecutive seeds cover every fault between them.
		var first []nemesis.Kind
		for i, k := range nemesis.Kinds {
			if uint64(i)%3 == seed%3 {
				first = append(first, k)
			}
		}
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			a := runSeed(t, net, seed, duration, first, reports)
			mu.Lock()
			avail = append(avail, a...)
			mu.Unlock()
		})
	}
	table := nemesis.Table(avail)
	t.Logf("availability over %d seed(s) of %v:\n%s", len(seeds), duration, table)
	if out := os.Getenv(envOut); out != "" {
		text := fmt.Sprintf("%d seed(s) (%s=%s) of %v each\n\n%s", len(seeds), envSeeds, os.Getenv(envSeeds), duration, table)
		if err := os.WriteFile(out, []byte(text), 0o644); err != nil {
			t.Errorf("writing %s: %v", out, err)
		}
	}
}

func runSeed(t *testing.T, net *nemesis.Net, seed uint64, duration time.Duration, first []nemesis.Kind, reports string) []nemesis.Availability {
	steps := nemesis.Plan(seed, 5, duration, first, allNames)
	opt := testcluster.Options{Nodes: 5, DataDir: seed%2 == 1, Flags: strings.Fields(os.Getenv(envFlags))}
	if os.Getenv(envSecure) == "1" {
		opt.Secure = true
	}
	c := testcluster.New(t, opt)
	t.Cleanup(func() { net.Heal() })
	w := workload.Start(workload.Config{
		Addrs:   c.Addrs,
		Names:   hot,
		Clients: 10,
		// Fewer clients on these two names than on the hot ones, so that
		// the suite's load and history grow by little.
		Shared:           []string{rw},
		SharedClients:    3,
		Semaphores:       []string{sem},
		Permits:          permits,
		SemaphoreClients: permits + 1,
		SessionTimeout:   15 * time.Second,
		MaxWait:          2,
		MaxHold:          10 * time.Millisecond,
		UnlockAll:        0.02,
		Reconnect:        0.01,
		Seed:             seed,
		// An election: campaigners that hold, proclaim and resign, and
		// watchers on their own connections.
		Election:    elect,
		Campaigners: 3,
		Watchers:    2,
		ElectHold:   200 * time.Millisecond,
	})
	stopped := false
	defer func() {
		if !stopped {
			w.Stop()
		}
	}()
	r := &nemesis.Runner{C: c, Net: net, Now: w.Now, Converge: testcluster.ConvergeTimeout, Logf: t.Logf}
	runErr := r.Run(context.Background(), steps)
	if err := net.Heal(); err != nil {
		t.Error(err)
	}
	if runErr == nil {
		runErr = c.WaitConverged(testcluster.ConvergeTimeout)
	}
	// The cluster must serve again: every name answered definitely after
	// the last fault was undone.
	healed := w.Now()
	recovered := waitRecovered(w, allNames, healed, 30*time.Second)
	// Then the campaigns stop and every watcher must come to tell what
	// `leader hot-elect` answers.
	w.StopCampaigns()
	settle := w.Now()
	w.Settle(failover + 5*time.Second)
	h := w.Stop()
	stopped = true
	elected := w.CheckElection(h, settle, failover)

	dir := filepath.Join(reports, fmt.Sprintf("seed-%d-%s", seed, time.Now().Format("20060102-150405")))
	checkStart := time.Now()
	sum, ok, err := workload.Check(context.Background(), h, w.Fence(), dir, elected...)
	if err != nil {
		t.Fatalf("checking the history: %v", err)
	}
	// Each checker's line says what it looked at (holds of each mode, the
	// semaphore's most holders at once): a check that passed by seeing
	// nothing shows here.
	verdicts, _, _ := strings.Cut(sum, "\nhistory:")
	t.Logf("seed %d: checked in %v:\n%s", seed, time.Since(checkStart).Round(time.Millisecond), strings.TrimSpace(verdicts))
	failed := !ok || runErr != nil || w.Err() != nil || recovered != nil
	if runErr != nil {
		t.Errorf("the schedule did not run to the end: %v", runErr)
	}
	if err := w.Err(); err != nil {
		t.Errorf("protocol error: %v", err)
	}
	if recovered != nil {
		t.Errorf("after the faults: %v", recovered)
	}
	if !ok {
		t.Errorf("history violates the guarantees:\n%s", sum)
	}
	var sched strings.Builder
	for i, st := range steps {
		fmt.Fprintf(&sched, "%d: %s\n", i, st)
	}
	if failed {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Error(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "schedule.txt"), []byte(sched.String()), 0o644); err != nil {
			t.Error(err)
		}
		if runErr != nil || recovered != nil {
			// Why it did not recover is in the nodes' goroutines.
			c.DumpStacks()
		}
		if err := c.SaveLogs(filepath.Join(dir, "logs")); err != nil {
			t.Error(err)
		}
		if ok { // else Check saved it, with the verdicts
			if err := history.SaveReport(dir, h); err != nil {
				t.Error(err)
			}
		}
		t.Errorf("seed %d failed; report in %s; replay with %s=%d %s=%v go test -run 'TestNemesis/seed=%d$' ./testcluster/nemesis/",
			seed, dir, envSeeds, seed, envDuration, duration, seed)
	}
	if notes := w.Notes(); len(notes) > 0 {
		t.Logf("seed %d: first refusals and unknown outcomes:\n  %s", seed, strings.Join(notes, "\n  "))
	}
	avail := nemesis.Measure(h, steps)
	for _, a := range avail {
		fmt.Fprintf(&sched, "  %s\n", a)
	}
	t.Logf("seed %d (data dir %v): %d operations, %+v\n%s", seed, seed%2 == 1, len(h), w.Counts(), sched.String())
	return avail
}

// waitRecovered waits until every name has had a definite answer (a grant,
// a 409 or an unlock) to an operation invoked after since.
func waitRecovered(w *workload.Workload, names []string, since, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		missing := w.UnansweredSince(since, names)
		if len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no definite answer for %v within %v of healing", missing, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
