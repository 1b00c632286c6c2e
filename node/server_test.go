package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/testcluster/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// countingListener counts the writes made to its connections, to tell
// coalesced replies from one write per reply.
type countingListener struct {
	net.Listener
	writes atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, n: &l.writes}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

// SyscallConn lets the server look at the socket, as it does for a
// *net.TCPConn.
func (c *countingConn) SyscallConn() (syscall.RawConn, error) {
	return c.Conn.(syscall.Conn).SyscallConn()
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(b)
}

type testServer struct {
	srv  *Server
	addr string
	ln   *countingListener
}

func startServer(t testing.TB, mod func(*Config)) *testServer {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeID = "test"
	if mod != nil {
		mod(&cfg)
	}
	set, err := partition.New(partition.Config{
		Partitions: 16,
		Limits:     locktable.Limits{MaxWaiters: cfg.MaxWaiters, DefaultTimeout: cfg.DefaultTimeout},
		Epoch:      1,
		AutoEpoch:  true,
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: l}
	srv, err := NewServer(cfg, &Local{Set: set, Home: cfg.NodeID, Addr: l.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(cl) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		set.Close()
	})
	return &testServer{srv: srv, addr: l.Addr().String(), ln: cl}
}

type client struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func (ts *testServer) dial(t *testing.T) *client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", ts.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &client{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (c *client) send(s string) {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.nc.Write([]byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *client) line() string {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("reply %q does not end in CRLF", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

func (c *client) do(cmd string) string {
	c.t.Helper()
	c.send(cmd + "\r\n")
	return c.line()
}

func (c *client) expect(cmd, want string) {
	c.t.Helper()
	if got := c.do(cmd); got != want {
		c.t.Fatalf("%q -> %q, want %q", cmd, got, want)
	}
}

// block reads a multi-line reply up to END into a map of STAT lines.
func (c *client) block(cmd string) map[string]string {
	c.t.Helper()
	c.send(cmd + "\r\n")
	head := c.line()
	if !strings.HasPrefix(head, "200 ") {
		c.t.Fatalf("%q -> %q", cmd, head)
	}
	m := map[string]string{}
	for {
		l := c.line()
		if l == "END" {
			return m
		}
		f := strings.SplitN(l, " ", 3)
		if len(f) != 3 || f[0] != "STAT" {
			c.t.Fatalf("%q: bad line %q", cmd, l)
		}
		m[f[1]] = f[2]
	}
}

func TestPipelinedRepliesAreCoalesced(t *testing.T) {
	ts := startServer(t, nil)
	c := ts.dial(t)
	c.expect("conn_id", c.do("conn_id")) // warm up: session registered
	var b strings.Builder
	const n = 200
	for i := range n {
		fmt.Fprintf(&b, "lock k%d\r\nunlock k%d\r\n", i, i)
	}
	before := ts.ln.writes.Load()
	c.send(b.String())
	for i := range n {
		if got := c.line(); got != "200 Acquired" {
			t.Fatalf("reply %d = %q", 2*i, got)
		}
		if got := c.line(); got != "200 Unlocked" {
			t.Fatalf("reply %d = %q", 2*i+1, got)
		}
	}
	// 400 requests may arrive in a few reads; each read's replies go out
	// in one write. One write per reply would be 400.
	if w := ts.ln.writes.Load() - before; w > 20 {
		t.Fatalf("%d writes for %d pipelined replies; want them coalesced", w, 2*n)
	}
}

func TestCommandsBehindBlockedLockWait(t *testing.T) {
	ts := startServer(t, nil)
	holder, waiter := ts.dial(t), ts.dial(t)
	holder.expect("lock x", "200 Acquired")
	waiter.send("lock x 10\r\nlock y\r\nunlock y\r\n")
	wait.For(t, 5*time.Second, "the waiter to queue", func() bool { return holder.block("info x")["waiters"] == "1" })
	holder.expect("unlock x", "200 Unlocked")
	for _, want := range []string{"200 Acquired", "200 Acquired", "200 Unlocked"} {
		if got := waiter.line(); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
}

// A client that half-closes after a blocking lock is answered at once:
// after its FIN the server cannot tell whether it is still reading, and a
// waiter that has gone must never be handed the lock.
func TestHalfCloseBlockingLockAnswersAtOnce(t *testing.T) {
	ts := startServer(t, nil)
	holder := ts.dial(t)
	holder.expect("lock x", "200 Acquired")
	c := ts.dial(t)
	c.send("lock x 30\r\nlock y 30\r\nstats\r\n")
	c.nc.(*net.TCPConn).CloseWrite()
	start := time.Now()
	if got := c.line(); got != "409 Unavailable" {
		t.Fatalf("blocked lock after half-close = %q", got)
	}
	if got := c.line(); got != "200 Acquired" {
		t.Fatalf("free lock after half-close = %q", got)
	}
	if got := c.line(); got != "200 STATS" {
		t.Fatalf("stats after half-close = %q", got)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
	if info := holder.block("info x"); info["waiters"] != "0" || info["mine"] != "1" {
		t.Fatalf("info x = %v", info)
	}
}

func TestDisconnectedWaiterLeavesQueue(t *testing.T) {
	ts := startServer(t, nil)
	holder := ts.dial(t)
	holder.expect("lock x", "200 Acquired")
	w := ts.dial(t)
	w.send("lock x 30\r\n")
	wait.For(t, 5*time.Second, "the waiter to queue", func() bool { return holder.block("info x")["waiters"] == "1" })
	w.nc.Close()
	wait.For(t, 5*time.Second, "the waiter to leave", func() bool { return holder.block("info x")["waiters"] == "0" })
	holder.expect("unlock x", "200 Unlocked")
	ts.dial(t).expect("lock x", "200 Acquired")
}

func TestShutdownAnswersBlockedWaiter(t *testing.T) {
	ts := startServer(t, nil)
	holder, w := ts.dial(t), ts.dial(t)
	holder.expect("lock x", "200 Acquired")
	w.send("lock x 60\r\n")
	wait.For(t, 5*time.Second, "the waiter to queue", func() bool { return holder.block("info x")["waiters"] == "1" })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if got := w.line(); got != "503 shutting down" {
		t.Fatalf("blocked waiter at shutdown got %q", got)
	}
	if _, err := net.DialTimeout("tcp", ts.addr, time.Second); err == nil {
		t.Fatal("listener still accepting after shutdown")
	}
}

func TestServeAfterShutdown(t *testing.T) {
	ts := startServer(t, nil)
	ts.srv.Shutdown(context.Background())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := ts.srv.Serve(l); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Shutdown = %v", err)
	}
}

func TestMaxConns(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxConns = 2 })
	a, b := ts.dial(t), ts.dial(t)
	a.expect("lock x", "200 Acquired")
	b.expect("lock y", "200 Acquired")
	c := ts.dial(t)
	if got := c.line(); got != "503 too many connections (max 2)" {
		t.Fatalf("third connection got %q", got)
	}
	a.nc.Close()
	wait.For(t, 5*time.Second, "a slot to free", func() bool { return b.block("stats")["node_connections"] == "1" })
	ts.dial(t).expect("lock z", "200 Acquired")
}

func TestLocksPerSessionLimitAllowsReentry(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxLocksPerSession = 2 })
	c := ts.dial(t)
	c.expect("lock a", "200 Acquired")
	c.expect("lock b", "200 Acquired")
	c.expect("lock c", "429 too many locks held by this session (max 2)")
	c.expect("lock a", "200 Acquired") // re-entrant: adds nothing
	c.expect("unlock a", "200 Unlocked")
	c.expect("lock c", "200 Acquired")
	// The count survives a resume on another connection.
	id := c.do("conn_id")[4:]
	c.expect("quit", "200 Hey, it was nice seeing you.")
	d := ts.dial(t)
	wait.For(t, 5*time.Second, "the resume", func() bool { return d.do("conn_id "+id) == "200 conn id set" })
	d.expect("lock e", "429 too many locks held by this session (max 2)")
}

func TestOverlongLineResynchronises(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxLine, c.MaxName = 100, 50 })
	c := ts.dial(t)
	c.send(strings.Repeat("x", 250))
	c.send(strings.Repeat("y", 250) + "\r\nlock a\r\n")
	if got := c.line(); got != "413 line too long (max 100 bytes)" {
		t.Fatalf("got %q", got)
	}
	if got := c.line(); got != "200 Acquired" {
		t.Fatalf("after resync got %q", got)
	}
}

func TestSessionCommand(t *testing.T) {
	ts := startServer(t, nil)
	c := ts.dial(t)
	c.expect("session", "403 no session")
	c.expect("lock a", "200 Acquired")
	id := c.do("conn_id")[4:]
	c.expect("set_timeout 60000", "200 timeout set")
	s := c.block("session")
	if s["id"] != id || s["resumed"] != "0" || s["held"] != "1" || s["timeout_ms"] != "60000" {
		t.Fatalf("session = %v", s)
	}
	c.nc.Close()
	d := ts.dial(t)
	wait.For(t, 5*time.Second, "the resume", func() bool { return d.do("conn_id "+id) == "200 conn id set" })
	s = d.block("session")
	if s["resumed"] != "1" || s["held"] != "1" || s["timeout_ms"] != "60000" {
		t.Fatalf("resumed session = %v", s)
	}
	e := ts.dial(t)
	e.expect("conn_id never-issued", "200 conn id set")
	if s := e.block("session"); s["resumed"] != "0" || s["held"] != "0" {
		t.Fatalf("unknown id session = %v", s)
	}
}

func TestManyClientsConcurrently(t *testing.T) {
	ts := startServer(t, nil)
	var wg sync.WaitGroup
	for i := range 16 {
		c := ts.dial(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 100 {
				name := fmt.Sprintf("k%d-%d", i, j%5)
				c.send("lock " + name + " 5\r\nunlock " + name + "\r\n")
				if got := c.line(); got != "200 Acquired" {
					t.Errorf("lock = %q", got)
					return
				}
				if got := c.line(); got != "200 Unlocked" {
					t.Errorf("unlock = %q", got)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestConfigValidate(t *testing.T) {
	bad := []func(*Config){
		func(c *Config) { c.NodeID = "" },
		func(c *Config) { c.MaxLine = 10 },
		func(c *Config) { c.MaxName = c.MaxLine },
		func(c *Config) { c.MaxWait = 0 },
		func(c *Config) { c.DefaultTimeout = c.MaxTimeout + 1 },
		func(c *Config) { c.MaxConns = 0 },
		func(c *Config) { c.MaxLocksPerSession = 0 },
		func(c *Config) { c.MaxWaiters = 0 },
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	for i, mod := range bad {
		c := DefaultConfig()
		mod(&c)
		if c.Validate() == nil {
			t.Errorf("case %d: invalid config accepted", i)
		}
	}
}

// A client that closes and reconnects at once is not refused its own
// session while the server has yet to read the close.
func TestResumeRightAfterClose(t *testing.T) {
	ts := startServer(t, nil)
	for i := range 30 {
		a := ts.dial(t)
		a.expect("lock r", "200 Acquired")
		id := a.do("conn_id")[4:]
		a.nc.Close()
		b := ts.dial(t)
		b.expect("conn_id "+id, "200 conn id set")
		if s := b.block("session"); s["resumed"] != "1" || s["held"] != "1" {
			t.Fatalf("round %d: session = %v", i, s)
		}
		b.expect("quit", "200 Hey, it was nice seeing you.")
		c := ts.dial(t)
		c.expect("conn_id "+id, "200 conn id set")
		c.expect("unlock r", "200 Unlocked")
		c.nc.Close()
	}
}
