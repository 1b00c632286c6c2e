package node

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/elock/elock/node/wire"
)

func TestParseLocks(t *testing.T) {
	for _, tc := range []struct {
		line   string
		prefix string
		limit  int
		order  LockOrder
		bad    string // a prefix of the 400's reason; "" when good
	}{
		{"locks", "", DefaultLockLimit, ByName, ""},
		{"locks app/", "app/", DefaultLockLimit, ByName, ""},
		{"locks *", "", DefaultLockLimit, ByName, ""},
		{"locks app/*", "app/", DefaultLockLimit, ByName, ""},
		{"locks a**", "a*", DefaultLockLimit, ByName, ""},
		{"locks a 1", "a", 1, ByName, ""},
		{"locks a 10000", "a", 10000, ByName, ""},
		{"locks a 10 held", "a", 10, ByHeld, ""},
		{"locks a 10 waiters", "a", 10, ByWaiters, ""},
		{"locks a 10 name", "a", 10, ByName, ""},
		{"locks a 0", "", 0, 0, "bad limit"},
		{"locks a 10001", "", 0, 0, "bad limit"},
		{"locks a -1", "", 0, 0, "bad limit"},
		{"locks a x", "", 0, 0, "bad limit"},
		{"locks a 99999999999999999999999", "", 0, 0, "bad limit"},
		{"locks a 10 HELD", "", 0, 0, "bad order"},
		{"locks a 10 oldest", "", 0, 0, "bad order"},
	} {
		var r wire.Request
		if _, ok := wire.Parse([]byte(tc.line), &r); !ok {
			t.Fatalf("%q does not parse", tc.line)
		}
		q, why := ParseLocks(&r)
		if tc.bad != "" {
			if !strings.HasPrefix(why, tc.bad) {
				t.Errorf("%q: reason %q, want %q...", tc.line, why, tc.bad)
			}
			continue
		}
		if why != "" || string(q.Prefix) != tc.prefix || q.Limit != tc.limit || q.Order != tc.order {
			t.Errorf("%q = %q %d %d %q; want %q %d %d", tc.line, q.Prefix, q.Limit, q.Order, why, tc.prefix, tc.limit, tc.order)
		}
	}
	var r wire.Request
	if _, ok := wire.Parse([]byte("locks a 1 name extra"), &r); ok {
		t.Error("four arguments parse")
	}
	if _, ok := wire.Parse([]byte("label"), &r); ok {
		t.Error("label without an argument parses")
	}
	if _, ok := wire.Parse([]byte("label a b"), &r); ok {
		t.Error("label with two arguments parses")
	}
}

func TestValidLabel(t *testing.T) {
	for _, good := range []string{"host:123", "a", "~!", strings.Repeat("x", MaxLabel)} {
		if why := ValidLabel([]byte(good)); why != "" {
			t.Errorf("%q refused: %s", good, why)
		}
	}
	for _, bad := range []string{"", strings.Repeat("x", MaxLabel+1), "tab\there", "del\x7f", "é", "nul\x00"} {
		if ValidLabel([]byte(bad)) == "" {
			t.Errorf("%q accepted", bad)
		}
	}
}

// locks reads a locks reply into its LOCK lines and whether it said it
// was truncated.
func (c *client) locks(cmd string) (lines []string, truncated bool) {
	c.t.Helper()
	c.send(cmd + "\r\n")
	if h := c.line(); h != "200 LOCKS" {
		c.t.Fatalf("%q -> %q", cmd, h)
	}
	for {
		l := c.line()
		switch {
		case l == "END":
			return lines, truncated
		case l == "STAT truncated 1":
			truncated = true
		case strings.HasPrefix(l, "LOCK ") && !truncated:
			lines = append(lines, l)
		default:
			c.t.Fatalf("%q: unexpected line %q", cmd, l)
		}
	}
}

var lockLine = regexp.MustCompile(`^LOCK (\S+) ([0-9]+) ([0-9]+) ([0-9]+) (\S+)$`)

// fields returns name, held_ms, waiters and label of each line.
func fields(t *testing.T, lines []string) [][]string {
	t.Helper()
	var out [][]string
	for _, l := range lines {
		m := lockLine.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("bad LOCK line %q", l)
		}
		out = append(out, []string{m[1], m[3], m[4], m[5]})
	}
	return out
}

func TestLabelAndLocksCommands(t *testing.T) {
	ts := startServer(t, nil)
	a, b, w, look := ts.dial(t), ts.dial(t), ts.dial(t), ts.dial(t)
	a.expect("label build:42", "200 label set")
	a.expect("lock app/x", "200 Acquired")
	a.expect("lock app/y", "200 Acquired")
	b.expect("lock app/z", "200 Acquired")
	b.expect("lock other", "200 Acquired")
	tokX := a.do("token app/x")
	// A waiter queues behind app/y.
	w.send("lock app/y 30\r\n")
	lines, trunc := look.locks("locks app/")
	if trunc || len(lines) != 3 {
		t.Fatalf("locks app/ = %q, %v", lines, trunc)
	}
	f := fields(t, lines)
	if f[0][0] != "app/x" || f[1][0] != "app/y" || f[2][0] != "app/z" {
		t.Fatalf("not sorted by name: %q", lines)
	}
	if f[0][3] != "build:42" || f[2][3] != "-" {
		t.Fatalf("labels: %q", lines)
	}
	if !strings.HasPrefix(lines[0], "LOCK app/x "+strings.TrimPrefix(tokX, "200 ")+" ") {
		t.Fatalf("token of app/x: %q, token says %q", lines[0], tokX)
	}
	// The session ids are never shown.
	for _, c := range []*client{a, b} {
		id := strings.TrimPrefix(c.do("conn_id"), "200 ")
		for _, l := range lines {
			if strings.Contains(l, id) {
				t.Fatalf("%q shows session id %s", l, id)
			}
		}
	}
	// The waiter shows once it is queued: wait for it with a deadline.
	deadline := time.Now().Add(5 * time.Second)
	for {
		lines, _ = look.locks("locks app/y")
		if len(lines) == 1 && fields(t, lines)[0][2] == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the waiter never shows: %q", lines)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Every name, and the wildcard.
	all, _ := look.locks("locks")
	star, _ := look.locks("locks *")
	nameOf := func(lines []string) (out []string) {
		for _, f := range fields(t, lines) {
			out = append(out, f[0])
		}
		return out
	}
	if len(all) != 4 || !slices.Equal(nameOf(all), nameOf(star)) {
		t.Fatalf("locks = %q, locks * = %q", all, star)
	}
	// Limit and truncation; orders.
	lines, trunc = look.locks("locks app/ 2")
	if !trunc || len(lines) != 2 {
		t.Fatalf("locks app/ 2 = %q, %v", lines, trunc)
	}
	lines, _ = look.locks("locks app/ 1 waiters")
	if fields(t, lines)[0][0] != "app/y" {
		t.Fatalf("longest queue: %q", lines)
	}
	lines, _ = look.locks("locks app/ 1 held")
	if fields(t, lines)[0][0] != "app/x" {
		t.Fatalf("longest held: %q", lines)
	}
	// Clearing the label; a bad one is refused and the connection works.
	a.expect("label -", "200 label set")
	lines, _ = look.locks("locks app/x")
	if fields(t, lines)[0][3] != "-" {
		t.Fatalf("cleared label still shown: %q", lines)
	}
	for _, bad := range []string{"label " + strings.Repeat("x", MaxLabel+1), "label \x01", "locks a 0", "locks a 10 sideways"} {
		if got := a.do(bad); !strings.HasPrefix(got, "400 ") {
			t.Fatalf("%q -> %q, want 400", bad, got)
		}
	}
	a.expect("label again", "200 label set")
	// A label goes with its connection.
	a.nc.Close()
	deadline = time.Now().Add(5 * time.Second)
	for {
		lines, _ = look.locks("locks app/x")
		if len(lines) == 1 && fields(t, lines)[0][3] == "-" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("label outlives its connection: %q", lines)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// label registers the connection's session, as set_timeout does.
func TestLabelRegistersSession(t *testing.T) {
	ts := startServer(t, nil)
	c := ts.dial(t)
	c.expect("label x", "200 label set")
	if got := c.do("session"); got != "200 SESSION" {
		t.Fatalf("session after label: %q", got)
	}
}

func TestLocksACL(t *testing.T) {
	acl, err := ParseACL([]byte(`{"identities": {"anonymous": {"lock": ["jobs/"], "read": ["pub/"]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, func(c *Config) { c.ACL = acl })
	c := ts.dial(t)
	c.expect("lock jobs/1", "200 Acquired")
	if lines, _ := c.locks("locks jobs/*"); len(lines) != 1 {
		t.Fatalf("locks jobs/* = %q", lines)
	}
	c.locks("locks pub/")
	for _, denied := range []string{"locks", "locks *", "locks j", "locks other/ 10"} {
		if got := c.do(denied); !strings.HasPrefix(got, "403 denied") {
			t.Fatalf("%q -> %q, want 403", denied, got)
		}
	}
}

// A node gathers a few listings at once; one more is refused as
// retryable, and the connection goes on.
func TestLocksListingsAreBounded(t *testing.T) {
	ts := startServer(t, nil)
	c := ts.dial(t)
	for range MaxListings {
		ts.srv.listings <- struct{}{}
	}
	c.expect("locks", "503 too many lock listings in progress; retry")
	<-ts.srv.listings
	c.expect("locks", "200 LOCKS")
}
