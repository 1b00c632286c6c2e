package metrics

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/elock/elock/node"
)

// BenchmarkMetricsCost measures what metrics cost on the hot path: lock
// and unlock round trips over one real TCP connection (one op is both),
// on a single node and through a three-node mesh, with no metrics at all
// ("none") against every collector registered, the observers in place and
// the registry rendered every second as a scraper would ("scraped"). -count
// would run each variant its times in a row; separate runs interleave them:
//
//	for i in 1 2 3 4 5 6; do go test -run '^$' -bench MetricsCost -benchtime 20000x -count 1 ./node/metrics/; done
//
// The aim is a difference under 3%.
func BenchmarkMetricsCost(b *testing.B) {
	names := make([][2][]byte, 64)
	for i := range names {
		n := "bench-" + strconv.Itoa(i)
		names[i] = [2][]byte{[]byte("lock " + n + "\r\n"), []byte("unlock " + n + "\r\n")}
	}
	for _, withMetrics := range []bool{false, true} {
		b.Run(fmt.Sprintf("single/%s", variant(withMetrics)), func(b *testing.B) {
			n := startSingleWith(b, 0, withMetrics)
			roundTrips(b, n.addr, n.reg, withMetrics, names)
		})
	}
	for _, withMetrics := range []bool{false, true} {
		b.Run(fmt.Sprintf("mesh/%s", variant(withMetrics)), func(b *testing.B) {
			nodes := startMeshWith(b, 3, 16, withMetrics)
			addr := serveMesh(b, nodes[0], withMetrics)
			roundTrips(b, addr, nodes[0].reg, withMetrics, names)
		})
	}
}

func variant(withMetrics bool) string {
	if withMetrics {
		return "scraped"
	}
	return "none"
}

// serveMesh serves clients on a mesh node, as elockd does.
func serveMesh(b *testing.B, nd *meshNode, withMetrics bool) string {
	cfg := node.DefaultConfig()
	cfg.NodeID, cfg.Clients = "n1", nd.clients
	if withMetrics {
		obs, err := NewCommands(nd.reg)
		if err != nil {
			b.Fatal(err)
		}
		cfg.Observer = obs
	}
	srv, err := node.NewServer(cfg, nd.m.Backend())
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	serve(b, srv, l)
	return l.Addr().String()
}

// roundTrips runs b.N lock/unlock pairs on one connection, the registry
// rendered every second meanwhile when scraped.
func roundTrips(b *testing.B, addr string, reg *prometheus.Registry, scraped bool, names [][2][]byte) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	r := bufio.NewReader(nc)
	do := func(req []byte) {
		if _, err := nc.Write(req); err != nil {
			b.Fatal(err)
		}
		line, err := r.ReadSlice('\n')
		if err != nil {
			b.Fatal(err)
		}
		if line[0] != '2' {
			b.Fatalf("%q: %q", req, line)
		}
	}
	do(names[0][0]) // the session, and the mesh's routes, before the clock
	do(names[0][1])
	if scraped {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() { scrapeEverySecond(b, reg, stop) })
		defer wg.Wait()
		defer close(stop)
	}
	b.ResetTimer()
	for i := range b.N {
		req := names[i%len(names)]
		do(req[0])
		do(req[1])
	}
	b.StopTimer()
}

// scrapeEverySecond renders reg in the text format, as /metrics does for
// a Prometheus server, once a second until stop.
func scrapeEverySecond(b *testing.B, reg *prometheus.Registry, stop <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var buf []byte
	for {
		mfs, err := reg.Gather()
		if err != nil {
			b.Error(err)
			return
		}
		w := &sliceWriter{b: buf[:0]}
		enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, mf := range mfs {
			if err := enc.Encode(mf); err != nil {
				b.Error(err)
				return
			}
		}
		buf = w.b
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }
