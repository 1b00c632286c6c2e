package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/elock/elock/client"
)

// benchConfig is what "elock bench" measures.
type benchConfig struct {
	addrs            []string
	backend          string // elock or redis
	mode             string // distinct, contended, semaphore or rw
	clients          int
	limit            int // semaphore: its permits
	readersPerWriter int // rw: readers to each writer
	duration         time.Duration
	warmup           time.Duration
	wait             time.Duration // all but distinct: how long one acquire may wait
	progress         time.Duration
	prefix           string
	json             bool
	acc              access // how elock servers are reached (TLS, token)
}

// benchResult is one run's figures.
type benchResult struct {
	Backend    string  `json:"backend"`
	Mode       string  `json:"mode"`
	Clients    int     `json:"clients"`
	Addrs      string  `json:"addrs"`
	Seconds    float64 `json:"seconds"`
	Cycles     int64   `json:"cycles"`
	CyclesPerS float64 `json:"cycles_per_s"`
	P50us      float64 `json:"acquire_p50_us"`
	P99us      float64 `json:"acquire_p99_us"`
	P999us     float64 `json:"acquire_p999_us"`
	MaxUs      float64 `json:"acquire_max_us"`
	MinPerCli  int64   `json:"min_cycles_per_client"`
	MaxPerCli  int64   `json:"max_cycles_per_client"`
	Timeouts   int64   `json:"timeouts"`
	Violations int64   `json:"violations"`
	Errors     int64   `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	// Limit is the semaphore's permits, in semaphore mode.
	Limit int `json:"limit,omitempty"`
	// Roles are the readers' and the writers' own figures, in rw mode.
	Roles []roleResult `json:"roles,omitempty"`
}

// roleResult is the figures of the clients of one role: a cycle is one
// grant and its release, so that cycles are grants, the percentiles are
// those of a grant's latency, and the per-client minimum and maximum
// measure fairness.
type roleResult struct {
	Role       string  `json:"role"`
	Clients    int     `json:"clients"`
	Cycles     int64   `json:"cycles"`
	CyclesPerS float64 `json:"cycles_per_s"`
	P50us      float64 `json:"acquire_p50_us"`
	P99us      float64 `json:"acquire_p99_us"`
	MinPerCli  int64   `json:"min_cycles_per_client"`
	MaxPerCli  int64   `json:"max_cycles_per_client"`
}

func runBench(args []string, addrs []string, acc access, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("elock bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := benchConfig{addrs: addrs, acc: acc}
	fs.StringVar(&c.backend, "backend", "elock", "elock, or redis (SET NX PX plus a compare-and-delete script), to compare both with one load generator")
	fs.StringVar(&c.mode, "mode", "distinct", "distinct: a key per client; contended: every client on one key; semaphore: every client on permits of one semaphore (see -limit); rw: readers (rlock) and writers (lock) on one key (see -readers-per-writer)")
	fs.IntVar(&c.limit, "limit", 4, "semaphore mode: the semaphore's permits (1 to the server's -max-permits, 65535 by default)")
	fs.IntVar(&c.readersPerWriter, "readers-per-writer", 9, "rw mode: readers to each writer; client i writes if i is a multiple of this plus one")
	fs.IntVar(&c.clients, "clients", 64, "concurrent clients, each with its own connection and session")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured time")
	fs.DurationVar(&c.warmup, "warmup", time.Second, "unmeasured warm-up before it")
	fs.DurationVar(&c.wait, "wait", 10*time.Second, "all modes but distinct: how long one acquire may wait (elock: 'lock NAME SECS'; redis: spinning)")
	fs.DurationVar(&c.progress, "progress", time.Second, "interval of the progress line on stderr for runs of 5s or more (0: none)")
	fs.StringVar(&c.prefix, "prefix", "", "key prefix (default: bench-<time>)")
	fs.BoolVar(&c.json, "json", false, "print the result as one JSON line")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	switch c.mode {
	case "distinct", "contended", "semaphore", "rw":
	default:
		fmt.Fprintf(stderr, "elock bench: -mode %q: want distinct, contended, semaphore or rw\n", c.mode)
		return exitUsage
	}
	if c.backend != "elock" && c.backend != "redis" {
		fmt.Fprintf(stderr, "elock bench: -backend %q: want elock or redis\n", c.backend)
		return exitUsage
	}
	if (c.mode == "semaphore" || c.mode == "rw") && c.backend != "elock" {
		// Redis has no shared lock or semaphore of its own to compare.
		fmt.Fprintf(stderr, "elock bench: -mode %s works with -backend elock only\n", c.mode)
		return exitUsage
	}
	if c.limit < 1 || uint64(c.limit) > client.MaxPermits || c.readersPerWriter < 0 {
		fmt.Fprintf(stderr, "elock bench: -limit wants 1 to %d, -readers-per-writer at least 0\n", uint64(client.MaxPermits))
		return exitUsage
	}
	if c.clients < 1 || c.duration <= 0 || c.wait < time.Second {
		fmt.Fprintln(stderr, "elock bench: -clients and -duration must be positive, -wait at least 1s")
		return exitUsage
	}
	if c.prefix == "" {
		c.prefix = fmt.Sprintf("bench-%d", time.Now().UnixNano())
	}
	res, err := bench(context.Background(), c, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "elock bench:", err)
		return exitUnavailable
	}
	switch {
	case c.json:
		json.NewEncoder(stdout).Encode(res)
	case c.mode == "semaphore" || c.mode == "rw":
		printGrants(stdout, res)
	default:
		fmt.Fprintf(stdout, "%s %s  clients=%d  %.0f cycles/s  acquire p50=%.0fµs p99=%.0fµs p999=%.0fµs max=%.0fµs  per-client min=%d max=%d  timeouts=%d violations=%d errors=%d\n",
			res.Backend, res.Mode, res.Clients, res.CyclesPerS, res.P50us, res.P99us, res.P999us, res.MaxUs,
			res.MinPerCli, res.MaxPerCli, res.Timeouts, res.Violations, res.Errors)
		if res.FirstError != "" {
			fmt.Fprintln(stdout, "first error:", res.FirstError)
		}
	}
	if res.Violations > 0 || res.Errors > 0 {
		return 1
	}
	return 0
}

// locker is one benchmark client: its own connection and session. The
// implementations speak raw protocol, so the figures are the servers'
// and not a client library's.
type locker interface {
	// acquire takes key, waiting up to the configured wait when asked;
	// false means it was not had in time.
	acquire(key string, wait bool) (bool, error)
	release(key string) error
	close()
}

func dialLocker(ctx context.Context, c benchConfig, addr string) (locker, error) {
	if c.backend == "redis" {
		return dialRedis(ctx, addr, c.wait)
	}
	return dialElock(ctx, addr, c.wait, c.acc)
}

func bench(ctx context.Context, c benchConfig, progress io.Writer) (benchResult, error) {
	lockers := make([]locker, c.clients)
	for i := range lockers {
		addr := c.addrs[i%len(c.addrs)]
		l, err := dialLocker(ctx, c, addr)
		if err != nil {
			for _, o := range lockers[:i] {
				o.close()
			}
			return benchResult{}, fmt.Errorf("%s %s: %w", c.backend, addr, err)
		}
		lockers[i] = l
	}
	defer func() {
		for _, l := range lockers {
			l.close()
		}
	}()

	var (
		measuring atomic.Bool
		stop      atomic.Bool
		cycles    atomic.Int64
		timeouts  atomic.Int64
		errs      atomic.Int64
		viol      atomic.Int64
		firstErr  atomic.Value
		wg        sync.WaitGroup
	)
	hists := make([]*hdrhistogram.Histogram, c.clients)
	perClient := make([]int64, c.clients)
	fail := func(err error) {
		if stop.Load() {
			return // the run is over; connections are being closed
		}
		errs.Add(1)
		firstErr.CompareAndSwap(nil, err.Error())
	}
	var cs critical
	roles := make([]string, c.clients)
	for i, l := range lockers {
		hists[i] = hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
		key, take, enter, leave := benchClient(c, i, l, &cs)
		roles[i] = benchRole(c, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				t0 := time.Now()
				ok, err := take()
				if err != nil {
					fail(fmt.Errorf("acquire %s: %w", key, err))
					return
				}
				if !ok {
					timeouts.Add(1)
					continue
				}
				lat := time.Since(t0)
				// Each client leaves the critical section before it asks to
				// release, so a holder that finds itself in company it
				// should not have is a violation.
				if !enter() {
					viol.Add(1)
				}
				leave()
				if err := l.release(key); err != nil {
					fail(fmt.Errorf("release %s: %w", key, err))
					return
				}
				if measuring.Load() {
					hists[i].RecordValue(max(int64(lat/time.Microsecond), 1))
					perClient[i]++
					cycles.Add(1)
				}
			}
		}()
	}

	time.Sleep(c.warmup)
	measuring.Store(true)
	start := time.Now()
	if c.progress > 0 && c.duration >= 5*time.Second {
		showProgress(progress, c.progress, c.duration, start, &cycles, &errs)
	} else {
		time.Sleep(c.duration)
	}
	measuring.Store(false)
	elapsed := time.Since(start)
	stop.Store(true)
	// A contended client may sit in a wait of up to -wait; closing its
	// connection ends it.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		for _, l := range lockers {
			l.close()
		}
		<-done
	}

	res := benchResult{
		Backend: c.backend, Mode: c.mode, Clients: c.clients, Addrs: strings.Join(c.addrs, ","),
		Seconds: elapsed.Seconds(), Cycles: cycles.Load(),
		Timeouts: timeouts.Load(), Violations: viol.Load(), Errors: errs.Load(),
	}
	all, merged := summarize("", hists, perClient, elapsed, func(int) bool { return true })
	res.CyclesPerS, res.MinPerCli, res.MaxPerCli = all.CyclesPerS, all.MinPerCli, all.MaxPerCli
	res.P50us, res.P99us = all.P50us, all.P99us
	res.P999us = float64(merged.ValueAtQuantile(99.9))
	res.MaxUs = float64(merged.Max())
	switch c.mode {
	case "semaphore":
		res.Limit = c.limit
	case "rw":
		for _, role := range []string{"reader", "writer"} {
			r, _ := summarize(role, hists, perClient, elapsed, func(i int) bool { return roles[i] == role })
			if r.Clients > 0 {
				res.Roles = append(res.Roles, r)
			}
		}
	}
	if v, ok := firstErr.Load().(string); ok {
		res.FirstError = v
	}
	if res.Cycles == 0 && res.Errors > 0 {
		return res, errors.New(res.FirstError)
	}
	return res, nil
}

// summarize is the figures of the clients that in picks, and their
// histograms merged, for the figures a role does not report.
func summarize(role string, hists []*hdrhistogram.Histogram, perClient []int64, elapsed time.Duration, in func(i int) bool) (roleResult, *hdrhistogram.Histogram) {
	h := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	r := roleResult{Role: role, MinPerCli: -1}
	for i := range hists {
		if !in(i) {
			continue
		}
		h.Merge(hists[i])
		r.Clients++
		r.Cycles += perClient[i]
		if r.MinPerCli < 0 || perClient[i] < r.MinPerCli {
			r.MinPerCli = perClient[i]
		}
		r.MaxPerCli = max(r.MaxPerCli, perClient[i])
	}
	r.CyclesPerS = float64(r.Cycles) / elapsed.Seconds()
	r.P50us = float64(h.ValueAtQuantile(50))
	r.P99us = float64(h.ValueAtQuantile(99))
	return r, h
}

// critical counts who is inside the critical section of the modes with
// one key, to catch a grant that breaks the lock's promise.
type critical struct {
	holders atomic.Int32 // contended and semaphore: holders inside
	readers atomic.Int32 // rw
	writers atomic.Int32 // rw
}

// benchRole is client i's role in rw mode, "" in the others.
func benchRole(c benchConfig, i int) string {
	if c.mode != "rw" {
		return ""
	}
	if i%(c.readersPerWriter+1) == 0 {
		return "writer"
	}
	return "reader"
}

// benchClient is client i's loop: its key, how it takes the key, and how
// it enters and leaves the critical section. enter reports false if the
// client finds company that its grant should have kept out. The modes
// other than distinct and contended take an elock server (runBench
// checks the backend).
func benchClient(c benchConfig, i int, l locker, cs *critical) (key string, take func() (bool, error), enter func() bool, leave func()) {
	nothing := func() {}
	switch c.mode {
	case "distinct":
		key = fmt.Sprintf("%s-%d", c.prefix, i)
		return key, func() (bool, error) { return l.acquire(key, false) }, func() bool { return true }, nothing
	case "contended":
		key = c.prefix + "-hot"
		return key, func() (bool, error) { return l.acquire(key, true) },
			func() bool { return cs.holders.Add(1) == 1 },
			func() { cs.holders.Add(-1) }
	case "semaphore":
		key = c.prefix + "-sem"
		el, limit := l.(*elockLocker), strconv.Itoa(c.limit)
		return key, func() (bool, error) { return el.permit(key, limit) },
			func() bool { return cs.holders.Add(1) <= int32(c.limit) },
			func() { cs.holders.Add(-1) }
	}
	key = c.prefix + "-rw"
	if benchRole(c, i) == "writer" {
		// A writer counts itself in before it looks for readers, and a
		// reader the other way round, so that of two that overlap at
		// least one sees the other.
		return key, func() (bool, error) { return l.acquire(key, true) },
			func() bool { return cs.writers.Add(1) == 1 && cs.readers.Load() == 0 },
			func() { cs.writers.Add(-1) }
	}
	el := l.(*elockLocker)
	return key, func() (bool, error) { return el.rlock(key) },
		func() bool {
			cs.readers.Add(1)
			return cs.writers.Load() == 0
		},
		func() { cs.readers.Add(-1) }
}

// printGrants is the text report of the modes that count grants: a cycle
// is one grant and its release.
func printGrants(w io.Writer, res benchResult) {
	extra := ""
	if res.Mode == "semaphore" {
		extra = fmt.Sprintf(" limit=%d", res.Limit)
	}
	fmt.Fprintf(w, "%s %s  clients=%d%s  %.0f grants/s  grant p50=%.0fµs p99=%.0fµs p999=%.0fµs max=%.0fµs  grants per client min=%d max=%d  timeouts=%d violations=%d errors=%d\n",
		res.Backend, res.Mode, res.Clients, extra, res.CyclesPerS, res.P50us, res.P99us, res.P999us, res.MaxUs,
		res.MinPerCli, res.MaxPerCli, res.Timeouts, res.Violations, res.Errors)
	for _, r := range res.Roles {
		fmt.Fprintf(w, "  %ss=%d  %.0f grants/s  grant p50=%.0fµs p99=%.0fµs  grants per client min=%d max=%d\n",
			r.Role, r.Clients, r.CyclesPerS, r.P50us, r.P99us, r.MinPerCli, r.MaxPerCli)
	}
	if res.FirstError != "" {
		fmt.Fprintln(w, "first error:", res.FirstError)
	}
}

// showProgress prints a progress line every interval until d has passed.
func showProgress(w io.Writer, interval, d time.Duration, start time.Time, cycles, errs *atomic.Int64) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	end := time.After(d)
	last, lastT := int64(0), start
	for {
		select {
		case now := <-tick.C:
			n := cycles.Load()
			fmt.Fprintf(w, "\r%5.0fs  %8.0f cycles/s  total %d  errors %d ", now.Sub(start).Seconds(),
				float64(n-last)/now.Sub(lastT).Seconds(), n, errs.Load())
			last, lastT = n, now
		case <-end:
			fmt.Fprintln(w)
			return
		}
	}
}
