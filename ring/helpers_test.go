package ring

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/elock/elock/testcluster/wait"
)

// TestMain checks for leaked goroutines like goleak.VerifyTestMain, but
// waits longer: memberlist's Shutdown does not join its own goroutines, and a
// probe in flight at Shutdown finishes up to about one ProbeInterval (1 s)
// later. goleak's own retries give up after about half a second.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(5 * time.Second)
		err := goleak.Find()
		for err != nil && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			err = goleak.Find()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

const testPartitions = 128

// recorder is a slog.Handler that keeps every record (for assertions on
// warnings) and echoes them to stderr when RING_TEST_LOG is set. It never
// calls t.Log: memberlist may log from its goroutines after a test ends.
type recorder struct {
	mu   *sync.Mutex
	recs *[]record
	echo slog.Handler // nil: silent
	with []slog.Attr
}

type record struct {
	Level slog.Level
	Msg   string
	Attrs map[string]string
}

func newRecorder(name string) *recorder {
	r := &recorder{mu: new(sync.Mutex), recs: new([]record)}
	if os.Getenv("RING_TEST_LOG") != "" {
		r.echo = slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}).WithAttrs([]slog.Attr{slog.String("ring", name)})
	}
	return r
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *recorder) Handle(ctx context.Context, rec slog.Record) error {
	attrs := map[string]string{}
	for _, a := range r.with {
		attrs[a.Key] = a.Value.String()
	}
	rec.Attrs(func(a slog.Attr) bool {
		attrs[a.Key] = a.Value.String()
		return true
	})
	r.mu.Lock()
	*r.recs = append(*r.recs, record{rec.Level, rec.Message, attrs})
	r.mu.Unlock()
	if r.echo != nil {
		return r.echo.Handle(ctx, rec)
	}
	return nil
}

func (r *recorder) WithAttrs(as []slog.Attr) slog.Handler {
	c := *r
	c.with = append(append([]slog.Attr(nil), r.with...), as...)
	if r.echo != nil {
		c.echo = r.echo.WithAttrs(as)
	}
	return &c
}

func (r *recorder) WithGroup(string) slog.Handler { return r }

// count returns how many records match.
func (r *recorder) count(match func(record) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range *r.recs {
		if match(rec) {
			n++
		}
	}
	return n
}

// testNode is a Ring under test with its log recorder.
type testNode struct {
	*Ring
	rec *recorder
}

// newTestConfig returns a Config on 127.0.0.1 with a random port and short
// join intervals.
func newTestConfig(id string, join ...string) Config {
	cfg := DefaultConfig()
	cfg.BindAddr = "127.0.0.1:0"
	cfg.Meta = Meta{
		ID:         id,
		Nonce:      NewNonce(),
		ClientAddr: "127.0.0.1:7000",
		PeerAddr:   "127.0.0.1:7001",
		RingHash:   RingHash(testPartitions),
	}
	cfg.Join = join
	cfg.RetryJoinInterval = 100 * time.Millisecond
	cfg.RejoinInterval = 2 * time.Second
	return cfg
}

// start starts a Ring that is shut down when the test ends.
func start(t *testing.T, cfg Config) testNode {
	t.Helper()
	rec := newRecorder(cfg.Meta.ID)
	cfg.Logger = slog.New(rec)
	r, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.Meta.ID, err)
	}
	t.Cleanup(func() {
		if err := r.Shutdown(); err != nil {
			t.Errorf("Shutdown(%s): %v", cfg.Meta.ID, err)
		}
	})
	return testNode{r, rec}
}

// member returns id's entry in r's view.
func member(r *Ring, id string) (Member, bool) {
	for _, m := range r.Members() {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

// waitFor waits until cond holds, re-checking whenever any of the rings
// signals a change, and fails the test at the deadline with what cond
// last saw.
func waitFor(t *testing.T, limit time.Duration, what string, rings []*Ring, cond func() (bool, string)) time.Duration {
	t.Helper()
	ch := make(chan struct{}, 1)
	for _, r := range rings {
		sub, unsub := r.Subscribe()
		defer unsub()
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-sub:
					select {
					case ch <- struct{}{}:
					default:
					}
				}
			}
		}()
	}
	return wait.Seen(t, limit, what, ch, cond)
}

// views describes every ring's view, for failure messages.
func views(rings ...*Ring) string {
	var b strings.Builder
	for _, r := range rings {
		fmt.Fprintf(&b, "[%s:", r.self)
		for _, m := range r.Members() {
			fmt.Fprintf(&b, " %s=%s/%s", m.ID, m.State, m.Nonce[:4])
		}
		b.WriteString("] ")
	}
	return b.String()
}

// allSee is a waitFor condition: every ring sees exactly ids, all in state st.
func allSee(st State, ids []string, rings ...*Ring) func() (bool, string) {
	return func() (bool, string) {
		for _, r := range rings {
			ms := r.Members()
			if len(ms) != len(ids) {
				return false, views(rings...)
			}
			for i, m := range ms {
				if m.ID != ids[i] || m.State != st {
					return false, views(rings...)
				}
			}
		}
		return true, ""
	}
}

// freeAddr returns a 127.0.0.1 address whose port was free for both TCP and
// UDP a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err == nil {
			u.Close()
			return addr
		}
	}
	t.Fatal("no free port")
	return ""
}

func rings(ns ...testNode) []*Ring {
	out := make([]*Ring, len(ns))
	for i, n := range ns {
		out[i] = n.Ring
	}
	return out
}
