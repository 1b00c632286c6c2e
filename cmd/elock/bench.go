package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// benchConfig is what "elock bench" measures.
type benchConfig struct {
	addrs    []string
	backend  string // elock or redis
	mode     string // distinct or contended
	clients  int
	duration time.Duration
	warmup   time.Duration
	wait     time.Duration // contended: how long one acquire may wait
	progress time.Duration
	prefix   string
	json     bool
	acc      access // how elock servers are reached (TLS, token)
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
}

func runBench(args []string, addrs []string, acc access, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("elock bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := benchConfig{addrs: addrs, acc: acc}
	fs.StringVar(&c.backend, "backend", "elock", "elock, or redis (SET NX PX plus a compare-and-delete script), to compare both with one load generator")
	fs.StringVar(&c.mode, "mode", "distinct", "distinct: a key per client; contended: every client on one key")
	fs.IntVar(&c.clients, "clients", 64, "concurrent clients, each with its own connection and session")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured time")
	fs.DurationVar(&c.warmup, "warmup", time.Second, "unmeasured warm-up before it")
	fs.DurationVar(&c.wait, "wait", 10*time.Second, "contended mode: how long one acquire may wait (elock: 'lock NAME SECS'; redis: spinning)")
	fs.DurationVar(&c.progress, "progress", time.Second, "interval of the progress line on stderr for runs of 5s or more (0: none)")
	fs.StringVar(&c.prefix, "prefix", "", "key prefix (default: bench-<time>)")
	fs.BoolVar(&c.json, "json", false, "print the result as one JSON line")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if c.mode != "distinct" && c.mode != "contended" {
		fmt.Fprintf(stderr, "elock bench: -mode %q: want distinct or contended\n", c.mode)
		return exitUsage
	}
	if c.backend != "elock" && c.backend != "redis" {
		fmt.Fprintf(stderr, "elock bench: -backend %q: want elock or redis\n", c.backend)
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
	if c.json {
		json.NewEncoder(stdout).Encode(res)
	} else {
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
		holders   atomic.Int32 // contended: clients inside the lock right now
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
	contended := c.mode == "contended"
	for i, l := range lockers {
		hists[i] = hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
		key := fmt.Sprintf("%s-%d", c.prefix, i)
		if contended {
			key = c.prefix + "-hot"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				t0 := time.Now()
				ok, err := l.acquire(key, contended)
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
				// release, so a second holder inside it is a violation.
				if contended && holders.Add(1) != 1 {
					viol.Add(1)
				}
				if contended {
					holders.Add(-1)
				}
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

	all := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	res := benchResult{
		Backend: c.backend, Mode: c.mode, Clients: c.clients, Addrs: strings.Join(c.addrs, ","),
		Seconds: elapsed.Seconds(), Cycles: cycles.Load(),
		Timeouts: timeouts.Load(), Violations: viol.Load(), Errors: errs.Load(),
		MinPerCli: -1,
	}
	for i, h := range hists {
		all.Merge(h)
		if res.MinPerCli < 0 || perClient[i] < res.MinPerCli {
			res.MinPerCli = perClient[i]
		}
		res.MaxPerCli = max(res.MaxPerCli, perClient[i])
	}
	res.CyclesPerS = float64(res.Cycles) / elapsed.Seconds()
	res.P50us = float64(all.ValueAtQuantile(50))
	res.P99us = float64(all.ValueAtQuantile(99))
	res.P999us = float64(all.ValueAtQuantile(99.9))
	res.MaxUs = float64(all.Max())
	if v, ok := firstErr.Load().(string); ok {
		res.FirstError = v
	}
	if res.Cycles == 0 && res.Errors > 0 {
		return res, errors.New(res.FirstError)
	}
	return res, nil
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
