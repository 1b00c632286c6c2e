package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Lock acquires name for the session, exclusively, waiting as long as
// ctx allows, and returns the lock's fencing token. The wait happens on
// the server ("lock NAME SECS", in rounds of at most the max wait), so the
// lock is handed over in FIFO order the moment it is released; meanwhile
// every other call on this Client waits (see Client).
//
// If ctx ends first, Lock returns ctx.Err(). To take the request out of
// the server's queue it closes the connection, then resumes the session
// on a new one; should the grant have raced the cancellation, the lock is
// released again before any other command of the session runs. That
// clean-up is bounded by the dial timeout and otherwise finishes in the
// background.
//
// If the session already holds name exclusively, Lock returns at once
// with its token. If it holds name shared, Lock returns ErrNoUpgrade
// (inside a *ServerError); if name is a semaphore, ErrKindMismatch.
func (c *Client) Lock(ctx context.Context, name string) (uint64, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	return c.take(ctx, grant{verb: "lock", name: name, exclusive: true}, true)
}

// TryLock acquires name exclusively if nobody holds it (or the session
// holds it already) and returns its fencing token; it returns
// ErrUnavailable if another session holds it. It does not wait for the
// lock, only for the server.
func (c *Client) TryLock(ctx context.Context, name string) (uint64, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	return c.take(ctx, grant{verb: "lock", name: name, exclusive: true}, false)
}

// RLock acquires name shared, waiting as long as ctx allows, and returns
// the fencing token of this grant. Any number of sessions may hold a name
// shared at once, but none while another holds it exclusively; waiting
// works, and ends, as for Lock. The queue is one FIFO of both modes: a
// Lock waiting for the name holds back the RLocks that come after it, so
// that readers cannot starve a writer, and the shared requests at the
// head of the queue are granted together.
//
// If the session already holds name, shared or exclusively, RLock returns
// at once with the token of that grant: an exclusive hold covers a shared
// one. One Unlock releases either. If name is a semaphore, RLock returns
// ErrKindMismatch (inside a *ServerError).
func (c *Client) RLock(ctx context.Context, name string) (uint64, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	return c.take(ctx, grant{verb: "rlock", name: name}, true)
}

// TryRLock acquires name shared if that can be granted now: nobody holds
// it exclusively and no Lock waits for it. It returns ErrUnavailable
// otherwise, and does not wait for the lock, only for the server.
func (c *Client) TryRLock(ctx context.Context, name string) (uint64, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	return c.take(ctx, grant{verb: "rlock", name: name}, false)
}

// Acquire takes one of the limit permits of the semaphore name, waiting
// as long as ctx allows, and returns the fencing token of this permit.
// Waiting works, and ends, as for Lock; permits are handed out in FIFO
// order. A session holds at most one permit of a name: if it holds one
// already, Acquire returns at once with its token. Unlock gives the
// permit back.
//
// The first request of a semaphore fixes its limit for as long as it has
// holders or waiters; a request with another limit returns
// ErrLimitMismatch, and one for a name held or awaited as a lock returns
// ErrKindMismatch (both inside a *ServerError). A limit outside
// 1..MaxPermits returns ErrInvalidLimit without asking the server.
func (c *Client) Acquire(ctx context.Context, name string, limit int) (uint64, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	if err := checkLimit(limit); err != nil {
		return 0, err
	}
	return c.take(ctx, grant{verb: "acquire", name: name, limit: limit}, true)
}

// TryAcquire takes a permit of the semaphore name if one is free now (or
// the session holds one), and returns ErrUnavailable otherwise. It does
// not wait for a permit, only for the server.
func (c *Client) TryAcquire(ctx context.Context, name string, limit int) (uint64, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	if err := checkLimit(limit); err != nil {
		return 0, err
	}
	return c.take(ctx, grant{verb: "acquire", name: name, limit: limit}, false)
}

// grant is a request that takes a grant of a name: "lock NAME", "rlock
// NAME", "acquire NAME LIMIT" or "campaign NAME VALUE", each followed by
// the wait if it waits.
// Every kind is held, checked after a resume with "token NAME", reported
// lost and released with "unlock NAME" in the same way, so that the
// session's held map need not know which kind it holds.
type grant struct {
	verb  string
	name  string
	limit int    // acquire only
	value string // campaign only
	// exclusive: a name another session holds can never be granted
	// now. Not so for a shared grant or a permit, which others' holds
	// need not keep out.
	exclusive bool
}

// line is the request, with the wait in seconds if secs >= 0.
func (g grant) line(secs int) string {
	l := g.verb + " " + g.name
	switch g.verb {
	case "acquire":
		l += " " + strconv.Itoa(g.limit)
	case "campaign":
		l += " " + g.value
	}
	if secs >= 0 {
		l += " " + strconv.Itoa(secs)
	}
	return l
}

func (c *Client) take(ctx context.Context, g grant, wait bool) (uint64, error) {
	ctx, cancel := c.opContext(ctx)
	defer cancel()
	if err := c.acquire(ctx); err != nil {
		return 0, err
	}
	defer c.releaseSem()
	name := g.name
	had := c.holds(name)
	// sent is set while a request may have been granted without the
	// grant reaching us.
	sent := false
	var tok uint64
	err := c.exec(ctx, g.verb+" "+strconv.Quote(name), func(ctx context.Context, cn *conn) error {
		for {
			secs := -1
			if wait {
				var err error
				if secs, err = c.waitSecs(ctx); err != nil {
					return err
				}
			}
			sent = true
			// The token request rides in the same write. The server runs it
			// after the grant, so its answer also settles a 504.
			if err := cn.send(g.line(secs), "token "+name); err != nil {
				return err
			}
			rs, err := cn.readN(2)
			if err != nil {
				return err
			}
			lk, tk := rs[0], rs[1]
			switch {
			case lk.ok() || lk.code == 504 && tk.ok() && !had:
				// After a 504 a token shows the grant happened, unless the
				// session held name before: then the request may as well
				// have been refused (no upgrade, a kind or limit mismatch)
				// and the token be the old grant's. exec asks again, which
				// is safe since every grant is re-entrant, and the answer is
				// definite.
				if !tk.ok() {
					// Granted, but no token to be had; asking again is safe
					// because every kind of grant is re-entrant.
					return &retryError{"token after grant: " + tk.err().Error()}
				}
				t, err := parseToken(tk)
				if err != nil {
					return err
				}
				tok = t
				return nil
			case lk.code == 409:
				sent = false
				if !wait {
					return ErrUnavailable
				}
				// The server's wait ran out before ctx did: wait again.
			case lk.code == 504 && !wait && g.exclusive && errors.Is(tk.err(), ErrNotYours):
				// Another session holds it, so ours was not granted, and
				// asking again could only be refused. A shared request or a
				// permit may fit beside other holders: exec asks again.
				sent = false
				return ErrUnavailable
			default:
				return lk.err() // a 503 or 504 is retried by exec
			}
		}
	})
	if err == nil {
		c.mu.Lock()
		c.held[name] = tok
		delete(c.release, name)
		c.mu.Unlock()
		return tok, nil
	}
	if sent && !had && !definite(err) {
		c.addRelease(name)
		c.settle(ctx)
	}
	return 0, err
}

// waitSecs is the SECS of the next "lock NAME SECS": the time left until
// ctx's deadline rounded up (ctx itself cuts the wait short), or the cap.
func (c *Client) waitSecs(ctx context.Context) (int, error) {
	capSecs := int(c.cfg.maxWait / time.Second)
	dl, ok := ctx.Deadline()
	if !ok {
		return capSecs, nil
	}
	rem := time.Until(dl)
	if rem <= 0 {
		return 0, context.DeadlineExceeded
	}
	return min(int((rem+time.Second-1)/time.Second), capSecs), nil
}

func (c *Client) holds(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.held[name]
	return ok
}

// Unlock releases what the session holds of name: an exclusive or shared
// lock, or a semaphore's permit. It returns ErrNotYours if only other
// sessions hold it and ErrNotLocked if nobody does. If ctx ends before the server
// answers, the release is still made before the session's next command.
func (c *Client) Unlock(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	ctx, cancel := c.opContext(ctx)
	defer cancel()
	if err := c.acquire(ctx); err != nil {
		return err
	}
	defer c.releaseSem()
	had := c.forget(name)
	// maybe is set while an earlier attempt may have released the lock
	// without the answer reaching us.
	maybe := false
	err := c.exec(ctx, "unlock "+strconv.Quote(name), func(ctx context.Context, cn *conn) error {
		prev := maybe
		maybe = true
		if err := cn.send("unlock " + name); err != nil {
			return err
		}
		r, err := cn.read()
		if err != nil {
			return err
		}
		switch {
		case r.ok():
			return nil
		case r.code == 403 && prev && had:
			return nil // our earlier attempt released it
		case r.code == 503:
			maybe = prev
		case r.code == 504:
			// Only the lock's state tells whether the unlock happened.
			if err := cn.send("token " + name); err != nil {
				return err
			}
			t, err := cn.read()
			if err != nil {
				return err
			}
			switch {
			case t.ok():
				return &retryError{"unlock indeterminate and still held"}
			case t.code == 403:
				return nil // not held by us: done
			}
			return t.err()
		}
		return r.err()
	})
	if err != nil && had && !definite(err) {
		c.addRelease(name)
		c.settle(ctx)
	}
	return err
}

// forget drops name from what the session is believed to hold or owes a
// release of, and reports whether it was there.
func (c *Client) forget(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, h := c.held[name]
	_, r := c.release[name]
	delete(c.held, name)
	delete(c.release, name)
	return h || r
}

// UnlockAll releases every lock and permit of the session. If ctx ends before the
// server answers, the release is still made before the session's next
// command.
func (c *Client) UnlockAll(ctx context.Context) error {
	ctx, cancel := c.opContext(ctx)
	defer cancel()
	if err := c.acquire(ctx); err != nil {
		return err
	}
	defer c.releaseSem()
	c.mu.Lock()
	clear(c.held)
	clear(c.release)
	c.releaseAll = false
	c.mu.Unlock()
	err := c.exec(ctx, "unlock_all", func(ctx context.Context, cn *conn) error {
		return cn.ask("unlock_all")
	})
	if err != nil && !definite(err) {
		c.mu.Lock()
		c.releaseAll = true
		c.mu.Unlock()
		c.settle(ctx)
	}
	return err
}

// SetTimeout sets how long the server keeps the session's locks after
// its connection breaks, in whole milliseconds (rounded up). The value is
// sent again after every resume.
func (c *Client) SetTimeout(ctx context.Context, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("client: set_timeout: negative timeout %v", d)
	}
	return c.setting(ctx, "set_timeout", "set_timeout "+millis(d), func() {
		c.wantTimeout, c.hasTimeout = d, true
		c.timeout = d.Round(time.Millisecond)
	})
}

// setting sends line, a command that sets something of the session and
// answers one line, and once the server has taken it records it with
// record, under c.mu, to be sent again after a resume. what names the
// request in errors.
func (c *Client) setting(ctx context.Context, what, line string, record func()) error {
	return c.call(ctx, what, func(ctx context.Context, cn *conn) error {
		if err := cn.send(line); err != nil {
			return err
		}
		r, err := cn.read()
		if err != nil {
			return err
		}
		if err := r.err(); err != nil {
			return err
		}
		c.mu.Lock()
		record()
		c.mu.Unlock()
		return nil
	})
}

// Token returns the fencing token of the session's grant of name
// (exclusive, shared or a permit): ErrNotYours if only other sessions
// hold it, ErrNotLocked if nobody does.
func (c *Client) Token(ctx context.Context, name string) (uint64, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	var tok uint64
	err := c.call(ctx, "token "+strconv.Quote(name), func(ctx context.Context, cn *conn) error {
		if err := cn.send("token " + name); err != nil {
			return err
		}
		r, err := cn.read()
		if err != nil {
			return err
		}
		tok, err = parseToken(r)
		return err
	})
	return tok, err
}

// Info describes a name as the session sees it. It never reveals which
// session holds it.
type Info struct {
	Held    bool          // some session holds it
	Mine    bool          // this session holds it
	Token   uint64        // the holder's fencing token
	HeldFor time.Duration // since the current grant
	Waiters int           // requests queued for it
	// The fields below are empty from a server older than shared locks
	// and semaphores.
	Kind    Kind // a lock or a semaphore
	Mode    Mode // free, exclusive or shared (a held semaphore is shared)
	Holders int  // sessions holding it, in any mode
	Limit   int  // a semaphore's number of permits; 0 for a lock
}

// Kind is what a name is while it has holders or waiters: a lock (held
// with Lock or RLock) or a semaphore (Acquire). A name nobody holds or
// awaits can become either.
type Kind string

const (
	KindLock      Kind = "lock"
	KindSemaphore Kind = "semaphore"
)

// Mode is how a name is held.
type Mode string

const (
	ModeFree      Mode = "free"
	ModeExclusive Mode = "exclusive" // by one session, with Lock
	ModeShared    Mode = "shared"    // with RLock, or a semaphore's permits
)

// Info returns what the server knows of name, a lock or a semaphore.
func (c *Client) Info(ctx context.Context, name string) (Info, error) {
	if err := checkName(name); err != nil {
		return Info{}, err
	}
	var in Info
	err := c.block(ctx, "info "+strconv.Quote(name), "info "+name, "INFO", func(r resp) (err error) {
		in, err = parseInfo(r)
		return err
	})
	return in, err
}

// block sends line, whose answer is a block ("200 HEADER", lines, END),
// and hands the block to parse; any other answer is the server's error.
// what names the request in errors.
func (c *Client) block(ctx context.Context, what, line, header string, parse func(resp) error) error {
	return c.call(ctx, what, func(ctx context.Context, cn *conn) error {
		if err := cn.send(line); err != nil {
			return err
		}
		r, err := cn.read()
		if err != nil {
			return err
		}
		if !r.ok() || r.text != header {
			return replyOrProtocol(r)
		}
		return parse(r)
	})
}

func parseInfo(r resp) (Info, error) {
	var in Info
	for _, s := range r.stats {
		var err error
		switch s.key {
		case "held":
			in.Held = s.value == "1"
		case "mine":
			in.Mine = s.value == "1"
		case "token":
			in.Token, err = strconv.ParseUint(s.value, 10, 64)
		case "held_ms":
			var ms int64
			ms, err = strconv.ParseInt(s.value, 10, 64)
			in.HeldFor = time.Duration(ms) * time.Millisecond
		case "waiters":
			in.Waiters, err = strconv.Atoi(s.value)
		case "kind":
			in.Kind = Kind(s.value)
		case "mode":
			in.Mode = Mode(s.value)
		case "holders":
			in.Holders, err = strconv.Atoi(s.value)
		case "limit":
			in.Limit, err = strconv.Atoi(s.value)
		}
		if err != nil {
			return Info{}, fmt.Errorf("%w: bad STAT %s %q", errProtocol, s.key, s.value)
		}
	}
	return in, nil
}

// Stats are the figures of the stats command.
type Stats struct {
	Clients    int // live connections with a session
	Locks      int // held lock names
	Monitoring int // equals Clients, as in the original elock
	// All holds every STAT line, the three above included, by key.
	All map[string]string
}

// Stats returns the server's figures.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	err := c.block(ctx, "stats", "stats", "STATS", func(r resp) (err error) {
		st, err = parseStats(r)
		return err
	})
	return st, err
}

func parseStats(r resp) (Stats, error) {
	st := Stats{All: make(map[string]string, len(r.stats))}
	for _, s := range r.stats {
		st.All[s.key] = s.value
		var p *int
		switch s.key {
		case "clients":
			p = &st.Clients
		case "locks":
			p = &st.Locks
		case "monitoring":
			p = &st.Monitoring
		default:
			continue
		}
		v, err := strconv.Atoi(s.value)
		if err != nil {
			return Stats{}, fmt.Errorf("%w: bad STAT %s %q", errProtocol, s.key, s.value)
		}
		*p = v
	}
	return st, nil
}
