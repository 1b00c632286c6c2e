package node

import (
	"context"
	"errors"
	"os"
	"syscall"
	"time"

	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
)

// A "lock NAME SECS" that cannot be granted at once waits here, while the
// connection goes on being read, so that a client that goes away leaves
// the queue at once.

// waitLock asks for a lock that may wait: granted at once if it can be,
// else queued, in one request. While it is queued the connection goes on
// being read, so a client that goes away leaves the queue at once;
// requests pipelined behind it are buffered, not run.
func (c *conn) waitLock(ref SessionRef, name []byte, want locktable.Want, wait time.Duration) (locktable.Result, error) {
	c.direct = 0
	// Replies to the requests before this one reach the client first:
	// while they are buffered, onOutcome leaves the grant to this
	// goroutine, which appends it after them.
	c.buffered.Store(len(c.out) > 0)
	res, w, err := c.s.backend.Lock(c.s.ctx, ref, name, want, wait, c.done)
	if err != nil || w == nil {
		c.buffered.Store(false)
		return res, err // answered at once, in order with the rest
	}
	// Queued: the replies before it go out now, not after the wait.
	ok := c.flush()
	c.buffered.Store(false)
	var o partition.Outcome
	if ok {
		o, ok = c.awaitOutcome()
	}
	if !ok {
		// The client went away (or half-closed), or the server is
		// shutting down.
		if w.Cancel() {
			return locktable.Result{}, context.Canceled
		}
		o = <-c.outcome
		if o.Granted && c.direct == 0 {
			// Granted as the client went away: the grant never reaches
			// anyone able to use it, so it goes on to the next waiter.
			return c.unwanted(ref, name, o.Token)
		}
	}
	if o.Err != nil || !o.Granted {
		return o.Result()
	}
	if c.direct == 0 && peerHungUp(c.raw) {
		// The client closed while the grant was on its way: it must not
		// keep a lock it will never hear of.
		c.eof = true
		return c.unwanted(ref, name, o.Token)
	}
	// onOutcome wrote c.direct bytes of the reply already; finish it.
	if !o.Reentrant {
		c.sess.held++
	}
	c.out = append(c.out, c.grantReply[c.direct:]...)
	c.granted = true
	return locktable.Result{Status: locktable.Granted, Token: o.Token, Reentrant: o.Reentrant}, errReplied
}

// unwanted releases a grant that no client will hear of.
func (c *conn) unwanted(ref SessionRef, name []byte, token uint64) (locktable.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), backendTimeout)
	defer cancel()
	if err := ReleaseUnwanted(ctx, c.s.backend, ref, name, token); err != nil {
		c.s.log.Warn("releasing an unwanted grant failed", "session", LogID(ref.ID), "err", err)
	}
	return locktable.Result{}, context.Canceled
}

// ReleaseUnwanted takes back a grant that no client will hear of, by its
// token. The owner keeps it if a client of the session may have heard of
// it since through another request (a resumed connection's re-entrant
// lock or wait): taking it then would leave two holders. Left in place,
// a grant nobody heard of refuses everyone else until its session ends.
// A Drop is fenced, as an unlock is, once the session has been resumed
// at another home: the resumed client was told which locks it holds, and
// the grant then stays with the session until unlock, unlock_all or its
// expiry ends it (see the lock owner's drop). An owner that took the
// partition over since the grant cannot tell who heard of it; then only
// the session's current home may release it, by unlock.
func ReleaseUnwanted(ctx context.Context, b Backend, ref SessionRef, name []byte, token uint64) error {
	if token != 0 {
		res, err := b.Drop(ctx, ref, name, token)
		if err != nil || res.Status != locktable.Granted {
			return err
		}
	}
	_, err := b.Unlock(ctx, ref, name)
	return err
}

// onOutcome is the Done of this connection's waits. It runs on the
// goroutine that decided the outcome. A hand-over is on the critical path
// of every contended client, so it answers the client right here with one
// non-blocking write instead of waiting for this connection's goroutine
// to be scheduled. Then it wakes that goroutine out of its read: the
// deadline first, so that the wake-up can never outlive the wait.
func (c *conn) onOutcome(o partition.Outcome) {
	c.wake.Lock()
	defer c.wake.Unlock()
	if o.Granted && o.Err == nil && c.raw != nil && !c.buffered.Load() && !peerHungUp(c.raw) {
		c.raw.Write(func(fd uintptr) bool {
			k, _ := syscall.Write(int(fd), c.grantReply)
			c.direct = max(k, 0)
			return true // one attempt; never wait for room
		})
	}
	c.nc.SetReadDeadline(time.Unix(1, 0))
	c.outcome <- o // never blocks: one outcome per wait, and room for one
}

// awaitOutcome reads the connection until the wait's outcome arrives. It
// returns false if the client sends EOF or breaks the connection, or the
// server shuts down, before that.
func (c *conn) awaitOutcome() (partition.Outcome, bool) {
	defer c.nc.SetReadDeadline(time.Time{})
	for {
		select {
		case o := <-c.outcome:
			return o, true
		default:
		}
		if c.s.ctx.Err() != nil {
			return partition.Outcome{}, false
		}
		if c.w-c.r >= c.watchLimit() {
			// Enough is buffered behind the wait: stop reading
			// (back-pressure) and wait for the outcome alone.
			select {
			case o := <-c.outcome:
				return o, true
			case <-c.s.ctx.Done():
				return partition.Outcome{}, false
			}
		}
		if c.w == len(c.buf) {
			// Grow into a new array: the request being served still points
			// into the old one, so compacting in place is not allowed here.
			nb := make([]byte, max(2*len(c.buf), c.w-c.r+4096))
			c.w = copy(nb, c.buf[c.r:c.w])
			c.r = 0
			c.buf = nb
		}
		n, err := c.nc.Read(c.buf[c.w:])
		c.w += n
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Woken: the outcome is here, events are, or the server is
			// closing.
			select {
			case o := <-c.outcome:
				return o, true
			default:
			}
			if c.s.ctx.Err() != nil {
				return partition.Outcome{}, false
			}
			if !c.eventsDuringWait() {
				return partition.Outcome{}, false
			}
		default:
			c.readError(err)
			return partition.Outcome{}, false
		}
	}
}

// errReplied tells cmdLock that waitLock has answered already.
var errReplied = errors.New("node: replied")

// watchLimit bounds what is buffered of the requests pipelined behind a
// blocked lock; past it, the connection is not read (back-pressure).
func (c *conn) watchLimit() int { return 16 * c.s.cfg.MaxLine }
