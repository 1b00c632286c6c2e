package main

// Harness for the end-to-end tests in e2e_test.go: TestMain builds the real
// elockd binary once, startElockd runs one process per test, and client is
// a raw protocol client that sends exact bytes and reads reply lines with
// deadlines.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/elock/elock/testcluster"
	"github.com/elock/elock/testcluster/wait"
)

// readTimeout bounds every read that expects a reply. It is generous
// because the tests run in parallel under the race detector; assertions
// about promptness use their own, tighter bounds.
const readTimeout = 5 * time.Second

func TestMain(m *testing.M) {
	code := m.Run()
	testcluster.Cleanup()
	os.Exit(code)
}

// proc is one running elockd.
type proc struct {
	*testcluster.Process
	addr string
}

// startElockd starts elockd on a free loopback port with extra flags and
// returns once it serves; see testcluster.Start.
func startElockd(t *testing.T, flags ...string) *proc {
	t.Helper()
	p := testcluster.Start(t, flags...)
	return &proc{Process: p, addr: p.Addr}
}

// stop sends SIGTERM and fails the test unless the process exits with
// status 0 within limit. It returns how long the exit took.
func (p *proc) stop(t *testing.T, limit time.Duration) time.Duration {
	t.Helper()
	d, err := p.Stop(limit)
	if err != nil {
		t.Error(err)
	}
	return d
}

// alive fails the test if the process has exited.
func (p *proc) alive(t *testing.T) {
	t.Helper()
	if !p.Alive() {
		t.Fatalf("elockd has exited: %v\nlog:\n%s", p.State(), p.Log())
	}
}

// client is a raw connection to elockd. A reader goroutine turns the
// byte stream into reply lines; reads wait on it with a deadline, so a
// test can also check that no reply has arrived yet.
type client struct {
	t     *testing.T
	name  string
	nc    *net.TCPConn
	lines chan string // reply lines, terminator included
	done  chan struct{}
	err   error // why the stream ended; set before done is closed
	ended bool
}

func (p *proc) dial(t *testing.T, name string) *client {
	t.Helper()
	c := p.dialRaw(t, name)
	c.startReader()
	return c
}

// dialRaw connects without starting the reader, for clients that only
// write or read by themselves.
func (p *proc) dialRaw(t *testing.T, name string) *client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", p.addr, readTimeout)
	if err != nil {
		t.Fatalf("%s: dial %s: %v", name, p.addr, err)
	}
	c := &client{t: t, name: name, nc: nc.(*net.TCPConn)}
	t.Cleanup(func() { c.nc.Close() })
	return c
}

func (c *client) startReader() {
	c.lines = make(chan string, 1<<16)
	c.done = make(chan struct{})
	go func() {
		defer close(c.done)
		br := bufio.NewReaderSize(c.nc, 64<<10)
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				c.lines <- line
			}
			if err != nil {
				c.err = err
				return
			}
		}
	}()
}

// write sends exact bytes.
func (c *client) write(s string) {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(readTimeout))
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatalf("%s: write %q: %v", c.name, trunc(s), err)
	}
}

// send sends one request line with CRLF.
func (c *client) send(line string) { c.t.Helper(); c.write(line + "\r\n") }

// next returns the next reply line without its CRLF, waiting up to d. It
// fails the test if a line does not end in CRLF. err is errTimeout, or why
// the stream ended (io.EOF for an orderly close).
func (c *client) next(d time.Duration) (string, error) {
	c.t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case l := <-c.lines:
		return c.strip(l), nil
	default:
	}
	select {
	case l := <-c.lines:
		return c.strip(l), nil
	case <-c.done:
		// Lines queued before the end come first.
		select {
		case l := <-c.lines:
			return c.strip(l), nil
		default:
		}
		return "", c.err
	case <-timer.C:
		return "", errTimeout
	}
}

var errTimeout = errors.New("timed out waiting for a reply line")

func (c *client) strip(l string) string {
	c.t.Helper()
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Errorf("%s: reply line %q does not end in CRLF", c.name, trunc(l))
		return strings.TrimSuffix(l, "\n")
	}
	return l[:len(l)-2]
}

// read returns the next reply line, failing the test after readTimeout.
func (c *client) read() string {
	c.t.Helper()
	return c.readWithin(readTimeout)
}

func (c *client) readWithin(d time.Duration) string {
	c.t.Helper()
	l, err := c.next(d)
	if err != nil {
		c.t.Fatalf("%s: reading a reply: %v", c.name, err)
	}
	return l
}

// pending returns a reply line that has already arrived, if any.
func (c *client) pending() (string, bool) {
	c.t.Helper()
	select {
	case l := <-c.lines:
		return c.strip(l), true
	default:
		return "", false
	}
}

// noReply fails the test if a reply has arrived.
func (c *client) noReply(why string) {
	c.t.Helper()
	if l, ok := c.pending(); ok {
		c.t.Fatalf("%s: unexpected reply %q (%s)", c.name, trunc(l), why)
	}
}

// do sends a request line and returns its one-line reply.
func (c *client) do(line string) string {
	c.t.Helper()
	c.send(line)
	return c.read()
}

// expect sends a request line and checks its one-line reply.
func (c *client) expect(line, want string) {
	c.t.Helper()
	if got := c.do(line); got != want {
		c.t.Fatalf("%s: %q -> %q, want %q", c.name, trunc(line), trunc(got), want)
	}
}

// expectRead checks the next reply line.
func (c *client) expectRead(what, want string) {
	c.t.Helper()
	if got := c.read(); got != want {
		c.t.Fatalf("%s: %s -> %q, want %q", c.name, what, trunc(got), want)
	}
}

// readBlock reads a block reply whose header is already known to be a
// block header: every line up to and including END.
func (c *client) readBlock(header string) []string {
	c.t.Helper()
	lines := []string{header}
	for {
		l := c.read()
		lines = append(lines, l)
		if l == "END" {
			return lines
		}
		if len(lines) > 1000 {
			c.t.Fatalf("%s: block %q has no END after 1000 lines", c.name, header)
		}
	}
}

// block sends a request and reads its block reply, checking the header.
func (c *client) block(line, wantHeader string) []string {
	c.t.Helper()
	c.send(line)
	h := c.read()
	if h != wantHeader {
		c.t.Fatalf("%s: %q -> %q, want block header %q", c.name, line, trunc(h), wantHeader)
	}
	return c.readBlock(h)
}

// stat is one "STAT key value" line.
type stat struct{ key, value string }

// parseStats checks a block's body lines are "STAT key value" and returns
// them in order.
func (c *client) parseStats(lines []string) []stat {
	c.t.Helper()
	var out []stat
	for _, l := range lines[1 : len(lines)-1] {
		rest, ok := strings.CutPrefix(l, "STAT ")
		k, v, ok2 := strings.Cut(rest, " ")
		if !ok || !ok2 || k == "" || strings.Contains(v, "\r") {
			c.t.Fatalf("%s: bad line %q in block %q", c.name, l, lines)
		}
		out = append(out, stat{k, v})
	}
	return out
}

// statsMap runs stats and returns its values, checking the format.
func (c *client) stats() map[string]string {
	c.t.Helper()
	lines := c.block("stats", "200 STATS")
	st := c.parseStats(lines)
	if len(st) < 3 || st[0].key != "clients" || st[1].key != "locks" || st[2].key != "monitoring" {
		c.t.Fatalf("%s: stats must start with clients, locks, monitoring: %q", c.name, lines)
	}
	m := map[string]string{}
	for _, s := range st {
		if _, dup := m[s.key]; dup {
			c.t.Fatalf("%s: duplicate STAT %s in %q", c.name, s.key, lines)
		}
		m[s.key] = s.value
	}
	return m
}

// statInt returns an integer stat.
func (c *client) statInt(m map[string]string, key string) int64 {
	c.t.Helper()
	v, ok := m[key]
	if !ok {
		c.t.Fatalf("%s: no STAT %s in %v", c.name, key, m)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		c.t.Fatalf("%s: STAT %s %q is not an integer", c.name, key, v)
	}
	return n
}

// counts returns clients, locks and monitoring from stats, checking that
// monitoring equals clients.
func (c *client) counts() (clients, locks int64) {
	c.t.Helper()
	m := c.stats()
	clients, locks = c.statInt(m, "clients"), c.statInt(m, "locks")
	if mon := c.statInt(m, "monitoring"); mon != clients {
		c.t.Fatalf("%s: STAT monitoring %d != STAT clients %d", c.name, mon, clients)
	}
	return clients, locks
}

// infoFields are the lines of the info reply, in order: the first five
// as they always were, then the kind, mode and holders of a name, then
// a semaphore's limit.
var infoFields = []string{"held", "mine", "token", "held_ms", "waiters", "kind", "mode", "holders", "limit"}

// infoText runs "info NAME" and returns its fields as text, checking
// their names and order.
func (c *client) infoText(name string) map[string]string {
	c.t.Helper()
	lines := c.block("info "+name, "200 INFO")
	st := c.parseStats(lines)
	want := infoFields[:len(infoFields)-1]
	if len(st) > 5 && st[5].value == "semaphore" {
		want = infoFields
	}
	if len(st) != len(want) {
		c.t.Fatalf("%s: info %q: want fields %v, got %q", c.name, name, want, lines)
	}
	m := map[string]string{}
	for i, s := range st {
		if s.key != want[i] {
			c.t.Fatalf("%s: info %q: field %d is %q, want %q (%q)", c.name, name, i, s.key, want[i], lines)
		}
		m[s.key] = s.value
	}
	return m
}

// info runs "info NAME" and returns its counts (kind and mode aside).
func (c *client) info(name string) map[string]int64 {
	c.t.Helper()
	m := map[string]int64{}
	for k, v := range c.infoText(name) {
		if k == "kind" || k == "mode" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			c.t.Fatalf("%s: info %q: STAT %s %q is not a count", c.name, name, k, v)
		}
		m[k] = n
	}
	return m
}

// session runs "session" and returns its fields.
func (c *client) session() map[string]string {
	c.t.Helper()
	lines := c.block("session", "200 SESSION")
	st := c.parseStats(lines)
	want := []string{"id", "resumed", "timeout_ms", "held"}
	if len(st) != len(want) {
		c.t.Fatalf("%s: session: want fields %v, got %q", c.name, want, lines)
	}
	m := map[string]string{}
	for i, s := range st {
		if s.key != want[i] {
			c.t.Fatalf("%s: session field %d is %q, want %q (%q)", c.name, i, s.key, want[i], lines)
		}
		m[s.key] = s.value
	}
	return m
}

// connID runs conn_id and returns the id, checking its form.
func (c *client) connID() string {
	c.t.Helper()
	r := c.do("conn_id")
	id, ok := strings.CutPrefix(r, "200 ")
	if !ok {
		c.t.Fatalf("%s: conn_id -> %q, want 200 ID", c.name, r)
	}
	checkID(c.t, id)
	return id
}

var idForm = regexp.MustCompile(`^[A-Z2-7]{26}$`)

// checkID checks a server-issued id: 26 characters of the base32 alphabet
// (128 random bits).
func checkID(t *testing.T, id string) {
	t.Helper()
	if !idForm.MatchString(id) {
		t.Fatalf("session id %q is not 26 base32 characters", id)
	}
}

// token runs "token NAME" and returns the token, failing on any other
// reply.
func (c *client) token(name string) uint64 {
	c.t.Helper()
	r := c.do("token " + name)
	v, ok := strings.CutPrefix(r, "200 ")
	n, err := strconv.ParseUint(v, 10, 64)
	if !ok || err != nil {
		c.t.Fatalf("%s: token %q -> %q, want 200 N", c.name, name, r)
	}
	return n
}

// waitEOF reads until the server closes the connection, within d, and
// returns the lines read before that.
func (c *client) waitEOF(d time.Duration) []string {
	c.t.Helper()
	deadline := time.Now().Add(d)
	var got []string
	for {
		l, err := c.next(time.Until(deadline))
		switch {
		case err == nil:
			got = append(got, l)
		case err == errTimeout:
			c.t.Fatalf("%s: server did not close the connection within %v (read %q)", c.name, d, got)
		case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
			return got
		default:
			c.t.Fatalf("%s: waiting for EOF: %v", c.name, err)
		}
	}
}

func (c *client) close() { c.nc.Close() }

// waitWaiters polls "info NAME" on c until it reports n waiters.
func (c *client) waitWaiters(name string, n int64) {
	c.t.Helper()
	wait.Seen(c.t, readTimeout, fmt.Sprintf("%s: info %q to report %d waiters", c.name, name, n), nil, func() (bool, string) {
		got := c.info(name)["waiters"]
		return got == n, fmt.Sprint(got, " waiters")
	})
}

// is4xx reports whether a reply line is a 4xx error line.
func is4xx(l string) bool {
	return len(l) >= 4 && l[0] == '4' && l[1] >= '0' && l[1] <= '9' && l[2] >= '0' && l[2] <= '9' && l[3] == ' '
}

func trunc(s string) string {
	if len(s) > 120 {
		return s[:120] + fmt.Sprintf("...(%d bytes)", len(s))
	}
	return s
}
