package metrics

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/elock/elock/node"
	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
)

// scraped is one scrape of a registry, as a Prometheus server reads it.
type scraped map[string]*dto.MetricFamily

// scrape renders reg over HTTP, as /metrics serves it, and parses the text
// back with client_golang's parser: the tests read what a scraper reads.
func scrape(t testing.TB, reg *prometheus.Registry) scraped {
	t.Helper()
	hs := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	defer hs.Close()
	req, _ := http.NewRequest("GET", hs.URL, nil)
	req.Header.Set("Accept", "text/plain")
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape: %s: %s", resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the scrape: %v", err)
	}
	return mfs
}

// value returns the value of the sample of family name whose labels
// include the pairs given (name, value, ...): a counter's or gauge's
// value, a histogram's sample count. ok is false when there is none.
func (s scraped) value(name string, labels ...string) (float64, bool) {
	mf := s[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// get is value for a sample that must exist.
func (s scraped) get(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	v, ok := s.value(name, labels...)
	if !ok {
		t.Fatalf("no sample %s%v in the scrape", name, labels)
	}
	return v
}

// single is a single node with its metrics, as elockd wires them.
type single struct {
	reg  *prometheus.Registry
	srv  *node.Server
	addr string
}

func startSingle(t testing.TB, grantDelay time.Duration) *single {
	return startSingleWith(t, grantDelay, true)
}

// startSingleWith is startSingle with or without metrics (for the
// benchmark's baseline: no observer, nothing registered).
func startSingleWith(t testing.TB, grantDelay time.Duration, withMetrics bool) *single {
	t.Helper()
	return startSingleConfig(t, grantDelay, withMetrics, nil)
}

// startSingleConfig is startSingleWith with the server's configuration
// changed by change.
func startSingleConfig(t testing.TB, grantDelay time.Duration, withMetrics bool, change func(*node.Config)) *single {
	t.Helper()
	reg := NewRegistry()
	cfg := node.DefaultConfig()
	cfg.NodeID = "test"
	if change != nil {
		change(&cfg)
	}
	if withMetrics {
		obs, err := NewCommands(reg)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Observer = obs
	}
	set, err := partition.New(partition.Config{
		Partitions: 16,
		Limits:     locktable.Limits{MaxWaiters: cfg.MaxWaiters, DefaultTimeout: cfg.DefaultTimeout},
		Epoch:      1, AutoEpoch: true, GrantDelay: grantDelay,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Close) // after the server's shutdown: cleanups run last first
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := node.NewServer(cfg, &node.Local{Set: set, Home: cfg.NodeID, Addr: l.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, srv, l)
	if withMetrics {
		if err := RegisterNode(reg, Node{Connections: srv.Connections, Accepted: srv.Accepted, Refused: srv.Refused, Counts: set.Counts, Version: node.Version}); err != nil {
			t.Fatal(err)
		}
	}
	return &single{reg: reg, srv: srv, addr: l.Addr().String()}
}

// serve runs srv on l until the test ends.
func serve(t testing.TB, srv *node.Server, l net.Listener) {
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-served; !errors.Is(err, node.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
}

// client is a raw protocol connection.
type client struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &client{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (c *client) send(line string) {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.nc.Write([]byte(line + "\r\n")); err != nil {
		c.t.Fatalf("write %q: %v", line, err)
	}
}

func (c *client) line() string {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	s, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return strings.TrimRight(s, "\r\n")
}

// do sends a request and returns its first reply line.
func (c *client) do(line string) string {
	c.t.Helper()
	c.send(line)
	return c.line()
}

// expect sends a request and fails unless its reply starts with want.
func (c *client) expect(line, want string) {
	c.t.Helper()
	if got := c.do(line); !strings.HasPrefix(got, want) {
		c.t.Fatalf("%s: got %q, want %q", line, got, want)
	}
}

// A connection past -max-conns is refused and counted, beside those
// accepted.
func TestRefusedConnectionsAreCounted(t *testing.T) {
	n := startSingleConfig(t, 0, true, func(c *node.Config) { c.MaxConns = 1 })
	first := dial(t, n.addr)
	first.expect("conn_id", "200 ")
	second := dial(t, n.addr)
	if got := second.line(); !strings.HasPrefix(got, "503 too many connections") {
		t.Fatalf("second connection got %q; want 503 too many connections", got)
	}
	s := scrape(t, n.reg)
	if a, r := s.get(t, "elock_client_connections_accepted_total"), s.get(t, "elock_client_connections_refused_total"); a != 2 || r != 1 {
		t.Fatalf("accepted %v, refused %v; want 2 and 1", a, r)
	}
}
