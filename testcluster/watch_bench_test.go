package testcluster

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkWatchFanout: 1,000 connections watch one name; a hand-off of
// the name (its holder unlocks, a waiter is granted) is timed from the
// unlock's reply to each watcher's EVENT naming the new holder. It
// reports the p50, p99 and last of those, on a single node and on a
// 3-node mesh whose watchers are spread over every node.
//
//	go test -run '^$' -bench WatchFanout -benchtime 3x ./testcluster/
func BenchmarkWatchFanout(b *testing.B) {
	const watchers = 1000
	for _, nodes := range []int{1, 3} {
		b.Run(fmt.Sprint("nodes=", nodes), func(b *testing.B) {
			var addrs []string
			if nodes == 1 {
				addrs = []string{Start(b, "-max-conns", "5000").Addr}
			} else {
				addrs = New(b, Options{Nodes: 3}).Addrs()
			}
			ws := make([]*Conn, watchers)
			for i := range ws {
				c, err := DialConn(b, addrs[i%len(addrs)])
				if err != nil {
					b.Fatal(err)
				}
				c.Timeout = time.Minute
				ws[i] = c
				if got := c.Do("watch fan"); got != "200 watching" {
					b.Fatalf("watch: %q", got)
				}
				if l, err := c.Line(); err != nil || !strings.HasPrefix(l, "EVENT fan ") {
					b.Fatalf("first event: %q %v", l, err)
				}
			}
			holder, err := DialConn(b, addrs[0])
			if err != nil {
				b.Fatal(err)
			}
			holder.Timeout = time.Minute
			var p50s, p99s, lasts []time.Duration
			b.ResetTimer()
			for range b.N {
				// Each round: a holder takes the name, all watchers hear
				// it, then the timed hand-off to a waiter.
				if got := holder.Do("lock fan"); got != "200 Acquired" {
					b.Fatal(got)
				}
				drainTo(b, ws, "held")
				waiter, err := DialConn(b, addrs[len(addrs)-1])
				if err != nil {
					b.Fatal(err)
				}
				waiter.Timeout = time.Minute
				if got := waiter.Do("set_timeout 0"); got != "200 timeout set" {
					b.Fatal(got)
				}
				if err := waiter.Send("lock fan 60"); err != nil {
					b.Fatal(err)
				}
				time.Sleep(100 * time.Millisecond) // queued: not timed
				start := time.Now()
				if got := holder.Do("unlock fan"); got != "200 Unlocked" {
					b.Fatal(got)
				}
				if got, err := waiter.Line(); err != nil || got != "200 Acquired" {
					b.Fatal(got, err)
				}
				tok := strings.TrimPrefix(waiter.Do("token fan"), "200 ")
				at := drainTo(b, ws, "held "+tok+" ")
				ds := make([]time.Duration, len(at))
				for i, t := range at {
					ds[i] = t.Sub(start)
				}
				slices.Sort(ds)
				p50s = append(p50s, ds[len(ds)/2])
				p99s = append(p99s, ds[len(ds)*99/100])
				lasts = append(lasts, ds[len(ds)-1])
				waiter.Close() // its session ends: the name is free again
				drainTo(b, ws, "free")
			}
			b.StopTimer()
			med := func(xs []time.Duration) float64 { slices.Sort(xs); return float64(xs[len(xs)/2].Microseconds()) }
			b.ReportMetric(med(p50s), "p50-µs")
			b.ReportMetric(med(p99s), "p99-µs")
			b.ReportMetric(med(lasts), "last-µs")
		})
	}
}

// drainTo reads every watcher's events until one contains want, and
// returns, per watcher, when it arrived.
func drainTo(b *testing.B, ws []*Conn, want string) []time.Time {
	out := make([]time.Time, len(ws))
	var wg sync.WaitGroup
	errs := make(chan error, len(ws))
	for i, c := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				l, err := c.Line()
				if err != nil {
					errs <- fmt.Errorf("watcher %d: %v", i, err)
					return
				}
				if strings.Contains(l, want) {
					out[i] = time.Now()
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	return out
}
