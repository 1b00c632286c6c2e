package testcluster

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// IOTimeout bounds each request a Conn sends and each reply line it reads,
// unless Conn.Timeout says otherwise. It is generous because tests run in
// parallel under the race detector.
const IOTimeout = 5 * time.Second

// Conn is a raw elock protocol connection for tests. Send, Line and Lines
// return errors and may be used from any goroutine (one at a time per
// Conn); Do and Block fail the test instead, so they belong on the test
// goroutine.
type Conn struct {
	tb testing.TB
	nc net.Conn
	r  *bufio.Reader
	// Timeout bounds each write and each line read; IOTimeout by default.
	Timeout time.Duration
}

// DialConn connects to an elock server at addr.
func DialConn(tb testing.TB, addr string) (*Conn, error) {
	nc, err := net.DialTimeout("tcp", addr, IOTimeout)
	if err != nil {
		return nil, err
	}
	return &Conn{tb: tb, nc: nc, r: bufio.NewReader(nc), Timeout: IOTimeout}, nil
}

// Close closes the connection.
func (c *Conn) Close() error { return c.nc.Close() }

// NetConn is the underlying connection, for tests that write exact bytes.
func (c *Conn) NetConn() net.Conn { return c.nc }

// Send writes line followed by CRLF.
func (c *Conn) Send(line string) error {
	c.nc.SetWriteDeadline(time.Now().Add(c.Timeout))
	_, err := io.WriteString(c.nc, line+"\r\n")
	return err
}

// Line reads the next reply line and returns it without its line end.
func (c *Conn) Line() (string, error) {
	c.nc.SetReadDeadline(time.Now().Add(c.Timeout))
	l, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(strings.TrimSuffix(l, "\n"), "\r"), nil
}

// Lines sends a command whose success reply is a block ("200 STATS",
// "200 MEMBERS", "200 WHERE") and reads the reply. For a 2xx header it
// reads the body up to END, which it leaves out; any other header is a
// one-line reply and body is nil.
func (c *Conn) Lines(cmd string) (header string, body []string, err error) {
	if err := c.Send(cmd); err != nil {
		return "", nil, err
	}
	header, err = c.Line()
	if err != nil || !strings.HasPrefix(header, "2") {
		return header, nil, err
	}
	for {
		l, err := c.Line()
		if err != nil {
			return header, body, fmt.Errorf("reading the reply to %q: %w", cmd, err)
		}
		if l == "END" {
			return header, body, nil
		}
		body = append(body, l)
	}
}

// Do sends one request line and returns the one reply line, failing the
// test on an I/O error or timeout.
func (c *Conn) Do(line string) string {
	c.tb.Helper()
	if err := c.Send(line); err != nil {
		c.tb.Fatalf("testcluster: sending %q: %v", line, err)
	}
	l, err := c.Line()
	if err != nil {
		c.tb.Fatalf("testcluster: reading the reply to %q: %v", line, err)
	}
	return l
}

// Block sends a block command and returns the header and the STAT lines
// of the body as a map ("STAT k v" gives stats[k] = v; other lines are
// left out: use Lines for them). It fails the test on an I/O error.
func (c *Conn) Block(cmd string) (header string, stats map[string]string) {
	c.tb.Helper()
	header, body, err := c.Lines(cmd)
	if err != nil {
		c.tb.Fatalf("testcluster: %q: %v", cmd, err)
	}
	return header, statMap(body)
}

// statMap parses "STAT key value" lines; a value may contain spaces.
func statMap(body []string) map[string]string {
	m := make(map[string]string, len(body))
	for _, l := range body {
		f := strings.SplitN(l, " ", 3)
		if len(f) == 3 && f[0] == "STAT" {
			m[f[1]] = f[2]
		}
	}
	return m
}
