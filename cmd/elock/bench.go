package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// benchConfig is what "elock bench" measures.
type benchConfig struct {
	addrs    []string
	mode     string // distinct or contended
	clients  int
	duration time.Duration
	warmup   time.Duration
	wait     int // SECS of the contended mode's "lock NAME SECS"
	progress time.Duration
	prefix   string
	json     bool
}

// benchResult is one run's figures.
type benchResult struct {
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

func runBench(args []string, addrs []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("elock bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := benchConfig{addrs: addrs}
	fs.StringVar(&c.mode, "mode", "distinct", "distinct: a key per client; contended: every client on one key, with blocking waits")
	fs.IntVar(&c.clients, "clients", 64, "concurrent clients, each with its own connection and session")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured time")
	fs.DurationVar(&c.warmup, "warmup", time.Second, "unmeasured warm-up before it")
	fs.IntVar(&c.wait, "wait", 10, "contended mode: SECS of 'lock NAME SECS'")
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
	if c.clients < 1 || c.duration <= 0 {
		fmt.Fprintln(stderr, "elock bench: -clients and -duration must be positive")
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
		fmt.Fprintf(stdout, "%s  clients=%d  %.0f cycles/s  acquire p50=%.0fµs p99=%.0fµs p999=%.0fµs max=%.0fµs  per-client min=%d max=%d  timeouts=%d violations=%d errors=%d\n",
			res.Mode, res.Clients, res.CyclesPerS, res.P50us, res.P99us, res.P999us, res.MaxUs,
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

// benchConn is one client: a raw connection, so that the figures are the
// server's and not a client library's.
type benchConn struct {
	nc net.Conn
	r  *bufio.Reader
	w  *bufio.Writer
}

func dialBench(ctx context.Context, addr string) (*benchConn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &benchConn{nc: nc, r: bufio.NewReader(nc), w: bufio.NewWriter(nc)}, nil
}

func (b *benchConn) do(line string) (string, error) {
	b.w.WriteString(line)
	b.w.WriteString("\r\n")
	if err := b.w.Flush(); err != nil {
		return "", err
	}
	s, err := b.r.ReadString('\n')
	return strings.TrimSuffix(s, "\r\n"), err
}

func bench(ctx context.Context, c benchConfig, progress io.Writer) (benchResult, error) {
	conns := make([]*benchConn, c.clients)
	for i := range conns {
		bc, err := dialBench(ctx, c.addrs[i%len(c.addrs)])
		if err != nil {
			return benchResult{}, fmt.Errorf("dial %s: %w", c.addrs[i%len(c.addrs)], err)
		}
		defer bc.nc.Close()
		// Register the session before measuring.
		if r, err := bc.do("conn_id"); err != nil || !strings.HasPrefix(r, "200 ") {
			return benchResult{}, fmt.Errorf("conn_id: %q %v", r, err)
		}
		conns[i] = bc
	}

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
	for i, bc := range conns {
		hists[i] = hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
		key := fmt.Sprintf("%s-%d", c.prefix, i)
		acquire := "lock " + key
		if c.mode == "contended" {
			key = c.prefix + "-hot"
			acquire = "lock " + key + " " + strconv.Itoa(c.wait)
		}
		release := "unlock " + key
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				t0 := time.Now()
				r, err := bc.do(acquire)
				if err != nil {
					fail(fmt.Errorf("%s: %w", acquire, err))
					return
				}
				switch r {
				case "200 Acquired":
				case "409 Unavailable":
					timeouts.Add(1)
					continue
				default:
					fail(fmt.Errorf("%s: unexpected reply %q", acquire, r))
					return
				}
				lat := time.Since(t0)
				if c.mode == "contended" && holders.Add(1) != 1 {
					viol.Add(1)
				}
				if c.mode == "contended" {
					holders.Add(-1)
				}
				if r, err := bc.do(release); err != nil || r != "200 Unlocked" {
					fail(fmt.Errorf("%s: %q %v", release, r, err))
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
		tick := time.NewTicker(c.progress)
		end := time.After(c.duration)
		last, lastT := int64(0), start
	loop:
		for {
			select {
			case now := <-tick.C:
				n := cycles.Load()
				fmt.Fprintf(progress, "\r%5.0fs  %8.0f cycles/s  total %d  errors %d ", now.Sub(start).Seconds(),
					float64(n-last)/now.Sub(lastT).Seconds(), n, errs.Load())
				last, lastT = n, now
			case <-end:
				break loop
			}
		}
		tick.Stop()
		fmt.Fprintln(progress)
	} else {
		time.Sleep(c.duration)
	}
	measuring.Store(false)
	elapsed := time.Since(start)
	stop.Store(true)
	// A contended client may sit in a wait of up to -wait seconds; closing
	// the connections ends it.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		for _, bc := range conns {
			bc.nc.Close()
		}
		<-done
	}

	all := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	res := benchResult{
		Mode: c.mode, Clients: c.clients, Addrs: strings.Join(c.addrs, ","),
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
