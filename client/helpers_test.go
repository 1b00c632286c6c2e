package client_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/elock/elock/client"
	"github.com/elock/elock/node"
	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testServer is an in-process elockd, wired as cmd/elockd wires it, on a
// listener that can kill the connections it accepted.
type testServer struct {
	addr   string
	ln     *trackingListener
	srv    *node.Server
	set    *partition.Set
	served chan struct{}
}

// newServer starts a server on a free loopback port. It needs no
// *testing.T, so that examples can use it too.
func newServer() (*testServer, error) {
	cfg := node.DefaultConfig()
	set, err := partition.New(partition.Config{
		Partitions: 16,
		Limits:     locktable.Limits{MaxWaiters: 100, DefaultTimeout: 30 * time.Second},
		Epoch:      1,
		AutoEpoch:  true,
	})
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		set.Close()
		return nil, err
	}
	srv, err := node.NewServer(cfg, &node.Local{Set: set, Home: "t", Addr: l.Addr().String()})
	if err != nil {
		l.Close()
		set.Close()
		return nil, err
	}
	s := &testServer{addr: l.Addr().String(), ln: &trackingListener{Listener: l}, srv: srv, set: set, served: make(chan struct{})}
	go func() {
		defer close(s.served)
		s.srv.Serve(s.ln)
	}()
	return s, nil
}

func (s *testServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.srv.Shutdown(ctx)
	<-s.served
	s.set.Close()
}

func startServer(t *testing.T) *testServer {
	t.Helper()
	s, err := newServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	return s
}

// trackingListener records accepted connections so that a test can break
// them from the server's side.
type trackingListener struct {
	net.Listener
	mu       sync.Mutex
	conns    []net.Conn
	accepted int
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.accepted++
		l.mu.Unlock()
	}
	return c, err
}

// killAll closes every connection accepted so far.
func (l *trackingListener) killAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
}

func (l *trackingListener) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.accepted
}

// testCtx is a context that bounds a whole test.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// dial connects a client that the test closes at its end.
func dial(t *testing.T, addrs []string, opts ...client.Option) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if os.Getenv("CLIENT_TEST_LOG") != "" {
		// The logger goes first, so that a test's own WithLogger wins.
		opts = append([]client.Option{client.WithLogger(slog.New(slog.NewTextHandler(os.Stderr,
			&slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name()))}, opts...)
	}
	c, err := client.Dial(ctx, addrs, opts...)
	if err != nil {
		t.Fatalf("dial %v: %v", addrs, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// lostRecorder collects lost-lock reports.
type lostRecorder struct {
	mu  sync.Mutex
	evs []client.LostLock
}

func (r *lostRecorder) record(ev client.LostLock) {
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	r.mu.Unlock()
}

func (r *lostRecorder) get() []client.LostLock {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]client.LostLock(nil), r.evs...)
}

// names returns the reported names as a set, failing on a report whose
// Err is not want.
func (r *lostRecorder) names(t *testing.T, want error) map[string]bool {
	t.Helper()
	m := map[string]bool{}
	for _, ev := range r.get() {
		if !errors.Is(ev.Err, want) {
			t.Errorf("lost %q: err %v, want %v", ev.Name, ev.Err, want)
		}
		m[ev.Name] = true
	}
	return m
}

// proxy forwards TCP to a server and can freeze the server-to-client
// direction of its connections, refuse new ones, or kill them all.
type proxy struct {
	ln     net.Listener
	target string
	refuse atomic.Bool
	mu     sync.Mutex
	pipes  map[*pipe]struct{}
	wg     sync.WaitGroup
}

type pipe struct {
	c, s   net.Conn
	frozen atomic.Bool
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, pipes: map[*pipe]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.refuse.Load() {
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		pp := &pipe{c: c, s: s}
		p.mu.Lock()
		p.pipes[pp] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			io.Copy(s, c)
			p.drop(pp)
		}()
		go func() {
			defer p.wg.Done()
			buf := make([]byte, 4096)
			for {
				n, err := s.Read(buf)
				if n > 0 && !pp.frozen.Load() {
					c.Write(buf[:n])
				}
				if err != nil {
					p.drop(pp)
					return
				}
			}
		}()
	}
}

func (p *proxy) drop(pp *pipe) {
	pp.c.Close()
	pp.s.Close()
	p.mu.Lock()
	delete(p.pipes, pp)
	p.mu.Unlock()
}

// freeze makes the current connections swallow what the server sends.
func (p *proxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pp := range p.pipes {
		pp.frozen.Store(true)
	}
}

func (p *proxy) killAll() {
	p.mu.Lock()
	pipes := make([]*pipe, 0, len(p.pipes))
	for pp := range p.pipes {
		pipes = append(pipes, pp)
	}
	p.mu.Unlock()
	for _, pp := range pipes {
		p.drop(pp)
	}
}

func (p *proxy) close() {
	p.ln.Close()
	p.killAll()
	p.wg.Wait()
}

// fakeServer answers from a script, to reach replies a real server gives
// only under faults (503, 504). script maps a request line to its
// replies, one entry per occurrence; the last entry repeats.
type fakeServer struct {
	ln     net.Listener
	script map[string][][]string
	mu     sync.Mutex
	seen   []string
	count  map[string]int
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func startFake(t *testing.T, script map[string][][]string) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{ln: ln, script: script, count: map[string]int{}, conns: map[net.Conn]struct{}{}}
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(f.close)
	return f
}

func (f *fakeServer) addr() string { return f.ln.Addr().String() }

func (f *fakeServer) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.conns[c] = struct{}{}
		f.mu.Unlock()
		f.wg.Add(1)
		go f.serve(c)
	}
}

func (f *fakeServer) serve(c net.Conn) {
	defer f.wg.Done()
	defer c.Close()
	rd := bufio.NewReader(c)
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		out := strings.Join(f.reply(line), "\r\n") + "\r\n"
		if _, err := c.Write([]byte(out)); err != nil || line == "quit" {
			return
		}
	}
}

func (f *fakeServer) reply(line string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, line)
	f.count[line]++
	if rs, ok := f.script[line]; ok {
		return rs[min(f.count[line], len(rs))-1]
	}
	switch {
	case line == "conn_id":
		return []string{"200 FAKEID"}
	case line == "session":
		return []string{"200 SESSION", "STAT id FAKEID", "STAT resumed 1", "STAT timeout_ms 30000", "STAT held 0", "END"}
	case line == "quit":
		return []string{"200 Hey, it was nice seeing you."}
	case strings.HasPrefix(line, "conn_id "):
		return []string{"200 conn id set"}
	}
	verb, _, _ := strings.Cut(line, " ")
	return []string{`400 Unknown command: "` + verb + `"`}
}

// times returns how often line was received.
func (f *fakeServer) times(line string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count[line]
}

// seenLines returns every line received, in order.
func (f *fakeServer) seenLines() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.seen...)
}

// killConns closes the connections accepted so far.
func (f *fakeServer) killConns() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		c.Close()
		delete(f.conns, c)
	}
}

func (f *fakeServer) close() {
	f.ln.Close()
	f.mu.Lock()
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}
