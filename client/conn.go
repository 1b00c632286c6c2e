package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/elock/elock/node/wire"
)

const (
	// readBufSize holds the longest reply line we expect with room to
	// spare: replies are short, and a longer one is a protocol error.
	readBufSize = 16 << 10
	// maxBlockLines bounds a STATS/INFO/SESSION block, so that a broken
	// server cannot make the client read forever.
	maxBlockLines = 4096
	// maxLockLines bounds a LOCKS block: the server's largest limit.
	maxLockLines = 10000
)

// aLongTimeAgo is a deadline in the past: setting it interrupts blocked
// reads and writes at once.
var aLongTimeAgo = time.Unix(1, 0)

// conn is one TCP connection to a server. Only the holder of the
// Client's semaphore uses it.
type conn struct {
	nc   net.Conn
	addr string
	idx  int // index of addr in the Client's list
	wbuf []byte
	// lastRead is when a reply last arrived: the last moment the
	// connection is known to have worked.
	lastRead time.Time

	// The reader goroutine owns the socket's read side: EVENT lines can
	// come at any time, also while no call is reading, so one goroutine
	// reads every line, hands events to onEvent and queues the rest as
	// replies for the holder of the semaphore.
	lines  chan []byte
	dead   chan struct{} // closed when the reader stops; rerr says why
	rerr   error
	joined chan struct{} // closed when the reader goroutine has returned
	// intr, while a guard is armed, is closed when its context ends, so
	// that a call waiting for a reply stops waiting. Only the holder of
	// the semaphore touches the field.
	intr chan struct{}
	// stop, closed by close, frees a reader blocked on a full queue.
	stop     chan struct{}
	stopOnce sync.Once
}

// replyQueue is how many reply lines the reader may read ahead of the
// caller: enough for a pipelined batch; a larger block just makes the
// reader wait for the caller, never for a watcher.
const replyQueue = 64

// connError is a failure of the connection itself: the reply stream can
// no longer be trusted, so the connection is dropped and the session
// resumed on a new one.
type connError struct{ err error }

func (e *connError) Error() string { return "connection: " + e.err.Error() }
func (e *connError) Unwrap() error { return e.err }

func isConnErr(err error) bool {
	var ce *connError
	return errors.As(err, &ce)
}

// errProtocol marks a reply the client cannot make sense of.
var errProtocol = errors.New("protocol error")

// dialConn connects to addr; onEvent gets the connection's EVENT lines
// (see readLoop).
func dialConn(ctx context.Context, addr string, idx int, d *net.Dialer, tc *tls.Config, onEvent func(line []byte)) (*conn, error) {
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tcp, ok := nc.(*net.TCPConn); ok {
		// Requests are batched by hand; Nagle would only add latency.
		tcp.SetNoDelay(true)
	}
	if tc != nil {
		if tc.ServerName == "" {
			tc = tc.Clone()
			tc.ServerName, _, _ = net.SplitHostPort(addr)
		}
		sc := tls.Client(nc, tc)
		hctx, cancel := ctx, context.CancelFunc(func() {})
		if d.Timeout > 0 {
			hctx, cancel = context.WithTimeout(ctx, d.Timeout)
		}
		err := sc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
		}
		nc = sc
	}
	cn := &conn{
		nc: nc, addr: addr, idx: idx, lastRead: time.Now(),
		lines:  make(chan []byte, replyQueue),
		dead:   make(chan struct{}),
		stop:   make(chan struct{}),
		joined: make(chan struct{}),
	}
	go cn.readLoop(bufio.NewReaderSize(nc, readBufSize), onEvent)
	return cn, nil
}

// readLoop reads every line of the connection until it fails (or is
// closed): EVENT lines go to onEvent, which must not block, and the
// others to the reply queue.
func (cn *conn) readLoop(rd *bufio.Reader, onEvent func(line []byte)) {
	defer close(cn.joined)
	for {
		line, err := rd.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				err = fmt.Errorf("%w: reply line over %d bytes", errProtocol, readBufSize)
			}
			cn.rerr = &connError{fmt.Errorf("read from %s: %w", cn.addr, err)}
			close(cn.dead)
			return
		}
		line = line[:len(line)-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if bytes.HasPrefix(line, []byte("EVENT ")) {
			if onEvent != nil {
				onEvent(line)
			}
			continue
		}
		select {
		case cn.lines <- bytes.Clone(line):
		case <-cn.stop:
			cn.rerr = &connError{fmt.Errorf("read from %s: %w", cn.addr, net.ErrClosed)}
			close(cn.dead)
			return
		}
	}
}

// close closes the connection and joins its reader.
func (cn *conn) close() {
	cn.stopOnce.Do(func() { close(cn.stop) })
	cn.nc.Close()
	<-cn.joined
}

// guard makes ctx interrupt the connection's I/O: when ctx ends, blocked
// reads and writes fail at once. The returned function disarms it and
// reports whether it fired; if it did, the connection's deadline is in
// the past until reset.
func (cn *conn) guard(ctx context.Context) (disarm func() bool) {
	if ctx.Done() == nil {
		return func() bool { return false }
	}
	fired := make(chan struct{})
	cn.intr = fired
	stop := context.AfterFunc(ctx, func() {
		// Reads wait on the reply queue, not the socket: the deadline
		// stops a blocked write, fired a wait for a reply.
		cn.nc.SetWriteDeadline(aLongTimeAgo)
		close(fired)
	})
	return func() bool {
		cn.intr = nil
		if stop() {
			return false
		}
		<-fired // so that resetting the deadline cannot race with it
		return true
	}
}

// send writes the lines, each with CRLF, in one write: the server runs
// pipelined lines in order and answers each with exactly one reply.
func (cn *conn) send(lines ...string) error {
	b := cn.wbuf[:0]
	for _, l := range lines {
		b = append(b, l...)
		b = append(b, '\r', '\n')
	}
	cn.wbuf = b
	if _, err := cn.nc.Write(b); err != nil {
		return &connError{fmt.Errorf("write to %s: %w", cn.addr, err)}
	}
	return nil
}

// readLine takes the next reply line from the reader.
func (cn *conn) readLine() ([]byte, error) {
	var line []byte
	select {
	case line = <-cn.lines:
	case <-cn.intr:
		return nil, &connError{fmt.Errorf("read from %s: %w", cn.addr, os.ErrDeadlineExceeded)}
	case <-cn.dead:
		// Lines read before the failure are still replies.
		select {
		case line = <-cn.lines:
		default:
			return nil, cn.rerr
		}
	}
	cn.lastRead = time.Now()
	return line, nil
}

// resp is one reply, with its STAT lines if it opens a block.
type resp struct {
	code  int
	text  string
	stats []stat
	// locks are the LOCK lines of a LOCKS block, without "LOCK ".
	locks []string
}

type stat struct{ key, value string }

func (r resp) ok() bool { return r.code == wire.CodeOK }

// err returns the reply's error, nil for a 2xx.
func (r resp) err() error {
	if r.code >= 200 && r.code < 300 {
		return nil
	}
	return replyError(r.code, r.text)
}

func (r resp) stat(key string) (string, bool) {
	for _, s := range r.stats {
		if s.key == key {
			return s.value, true
		}
	}
	return "", false
}

// ask sends one request and reads its one-line reply: nil for a 2xx,
// else the reply's error.
func (cn *conn) ask(line string) error {
	if err := cn.send(line); err != nil {
		return err
	}
	r, err := cn.read()
	if err != nil {
		return err
	}
	return r.err()
}

// read reads one reply, and the whole block if the reply opens one, so
// that the stream stays in step whatever the caller does with it.
func (cn *conn) read() (resp, error) {
	line, err := cn.readLine()
	if err != nil {
		return resp{}, err
	}
	rp, ok := wire.ParseReply(line)
	if !ok {
		return resp{}, &connError{fmt.Errorf("%w: bad reply %q from %s", errProtocol, line, cn.addr)}
	}
	r := resp{code: rp.Code, text: rp.Text}
	if r.code != wire.CodeOK || !wire.IsBlockHeader(r.text) {
		return r, nil
	}
	for {
		line, err := cn.readLine()
		if err != nil {
			return resp{}, err
		}
		if string(line) == "END" {
			return r, nil
		}
		if rest, found := bytes.CutPrefix(line, []byte("LOCK ")); found && r.text == "LOCKS" && len(r.locks) < maxLockLines {
			r.locks = append(r.locks, string(rest))
			continue
		}
		k, v, ok := wire.ParseStat(line)
		if !ok || len(r.stats) >= maxBlockLines {
			return resp{}, &connError{fmt.Errorf("%w: bad block line %q from %s", errProtocol, line, cn.addr)}
		}
		r.stats = append(r.stats, stat{k, v})
	}
}

// readN reads the replies to n pipelined requests.
func (cn *conn) readN(n int) ([]resp, error) {
	rs := make([]resp, n)
	for i := range rs {
		r, err := cn.read()
		if err != nil {
			return nil, err
		}
		rs[i] = r
	}
	return rs, nil
}

// parseToken reads the "200 N" reply of token.
func parseToken(r resp) (uint64, error) {
	if !r.ok() {
		return 0, r.err()
	}
	v, err := strconv.ParseUint(r.text, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: bad token %q", errProtocol, r.text)
	}
	return v, nil
}
