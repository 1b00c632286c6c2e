package mesh

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/elock/elock/node"
	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/node/peer"
	"github.com/elock/elock/replication"
)

// meshWait is a "lock NAME SECS" of a client homed here. It asks the
// owner to queue it; if the owner goes away (a failover the client had no
// part in), it asks the new owner, for the time the wait has left, so
// that the client sees a grant or a timeout, never an error of the mesh.
type meshWait struct {
	h *home
	// ctx ends with the server (a shutdown) or the mesh; run sets it.
	ctx      context.Context
	s        node.SessionRef
	name     string
	want     locktable.Want
	done     partition.Done
	deadline time.Time

	mu       sync.Mutex // guards the fields below
	finished bool       // the outcome was delivered, or the wait withdrawn
	canceled bool
	node     replication.Node // where the current request is queued
	req      string
	// maybe: a request went unanswered, so an owner may have granted it.
	maybe bool
}

func (w *meshWait) run(ctx context.Context) {
	w.ctx = ctx
	h := w.h
	p := h.rt.partOf([]byte(w.name))
	// sent: a request went out, so one may still be queued somewhere.
	sent := false
	// last is why the last request got no answer.
	var last error
	for {
		w.mu.Lock()
		canceled, finished, maybe := w.canceled, w.finished, w.maybe
		w.mu.Unlock()
		if finished {
			return // withdrawn by Cancel between requests
		}
		if canceled {
			w.settleCanceled()
			return
		}
		if w.ctx.Err() != nil {
			w.shutDown(sent)
			return
		}
		left := time.Until(w.deadline)
		if left <= 0 {
			// Every request so far failed without an answer (an answer ends
			// the wait): no owner has said the lock was held.
			if maybe {
				w.settleLate(p, last)
			} else {
				w.giveUp(p, last)
			}
			return
		}
		st := h.table.State()
		part := st.Part(p)
		n, ok := st.Node(part.Owner)
		if !st.Initialized() || !ok || n.Nonce != part.ONonce {
			last = errors.New(failure.Partition(p) + " has no reachable owner")
			w.pause(st.Index)
			continue
		}
		req := h.newReq()
		w.mu.Lock()
		if w.canceled {
			w.mu.Unlock()
			continue
		}
		w.node, w.req = n, req
		w.mu.Unlock()
		// The request's own context lives as long as the wait may: a
		// local owner withdraws the wait if it ends.
		ctx, cancel := context.WithDeadline(w.ctx, w.deadline.Add(routeTimeout))
		sent = true
		// A final answer is delivered by the goroutine that receives it
		// (answered): a grant reaches the client without waking this one.
		type reply struct {
			b         []byte
			err       error
			delivered bool
		}
		replied := make(chan reply, 1)
		h.rt.goOwner(ctx, p, n, part.Epoch, peer.Lock, wantPayload(w.s, []byte(w.name), w.want, left, req), func(b []byte, err error) {
			replied <- reply{b, err, err == nil && w.answered(b)}
		})
		rep := <-replied
		cancel()
		if rep.delivered {
			return
		}
		b, err := rep.b, rep.err
		w.mu.Lock()
		w.node, w.req = replication.Node{}, ""
		// In the same step as the request stops being current: a Cancel
		// in between would take it for answered.
		w.maybe = w.maybe || errors.Is(err, peer.ErrLost)
		w.mu.Unlock()
		last = err
		if err == nil {
			res, derr := decodeResult(b)
			switch {
			case derr != nil:
				err = derr
			case res.Status == statusCanceled:
				return // Cancel withdrew it and answered for it
			default:
				// Anything but an answer it knows reads as refused.
				o, _ := outcomeOf(res)
				if o.Granted {
					h.sessions.held(w.s.ID, w.name, true)
				}
				w.deliver(o)
				return
			}
		}
		switch {
		case w.ctx.Err() != nil:
			w.shutDown(sent)
			return
		case errors.Is(err, peer.ErrLost):
			// As below; and the lost request may have been granted, which
			// the next one learns as a re-entrant grant, or settleLate.
			w.pause(st.Index)
		case failure.Is(err, failure.SessionMoved):
			// The session was resumed on another connection (the owner
			// withdrew the wait, or refused it): for good.
			w.deliver(partition.Outcome{Err: err})
			return
		case failure.Is(err, failure.LockDelay), failure.Is(err, failure.Full):
			// A lost partition refuses grants for minutes, a full owner
			// until locks end: say so at once, as a lock without a wait
			// does.
			w.deliver(partition.Outcome{Err: err})
			return
		case errors.Is(err, peer.ErrUnreachable), failure.ClassOf(err) == failure.Retryable:
			// The owner went away or moved: ask the new one. A grant it made
			// before it went is with the new owner too, and comes back as a
			// re-entrant grant.
			w.pause(st.Index)
		default:
			w.deliver(partition.Outcome{Err: err})
			return
		}
	}
}

// answered takes an owner's answer to the current request, on the
// goroutine that received it, and delivers a final one at once if the
// wait is still live, reporting whether it did. Anything else (a wait
// being withdrawn, whose grant must be given back; an answer that does not
// decode) is left to the wait's goroutine, because that may block.
func (w *meshWait) answered(b []byte) bool {
	res, err := decodeResult(b)
	if err != nil {
		return false
	}
	o, ok := outcomeOf(res)
	if !ok {
		return false // withdrawn (statusCanceled), or not an answer
	}
	w.mu.Lock()
	if w.finished || w.canceled {
		w.mu.Unlock()
		return false
	}
	w.finished = true
	w.node, w.req = replication.Node{}, ""
	w.mu.Unlock()
	if o.Granted {
		w.h.sessions.held(w.s.ID, w.name, true)
	}
	w.done(o)
	return true
}

// outcomeOf is an owner's final answer to a wait as its outcome, and
// false for one that is not an answer (a withdrawal, a status it does
// not know).
func outcomeOf(res locktable.Result) (partition.Outcome, bool) {
	switch {
	case res.Status == locktable.Granted:
		return partition.Outcome{Granted: true, Token: res.Token, Reentrant: res.Reentrant}, true
	case res.Status == locktable.TooManyWaiters:
		return partition.Outcome{Full: true}, true
	case refusal(res.Status):
		return partition.Outcome{Refused: res}, true
	case res.Status == locktable.Unavailable:
		return partition.Outcome{}, true
	}
	return partition.Outcome{}, false
}

// refusal reports whether an owner's answer refuses the request itself,
// whatever the name's holders do: waiting or asking again cannot change
// it, so the client hears it as it is.
func refusal(st locktable.Status) bool {
	return st == locktable.KindMismatch || st == locktable.LimitMismatch || st == locktable.NoUpgrade
}

// pause waits briefly for a newer table.
func (w *meshWait) pause(index uint64) {
	ctx, cancel := context.WithTimeout(w.ctx, 100*time.Millisecond)
	waitNewer(ctx, w.h.table, index)
	cancel()
}

// deliver hands the outcome to the connection, once. A grant that comes
// after the wait was withdrawn is released: nobody will hear of it.
func (w *meshWait) deliver(o partition.Outcome) {
	w.mu.Lock()
	if w.finished {
		w.mu.Unlock()
		if o.Granted {
			ctx, cancel := context.WithTimeout(w.ctx, routeTimeout)
			if err := node.ReleaseUnwanted(ctx, w.h, w.s, []byte(w.name), o.Token); err != nil {
				w.h.log.Warn("releasing an unwanted grant failed", "session", node.LogID(w.s.ID), "err", err)
			}
			cancel()
		}
		return
	}
	w.finished = true
	w.mu.Unlock()
	w.done(o)
}

// settleCanceled ends a wait that Cancel could not withdraw for certain:
// the owner may have granted it before it went away, so ask whether the
// session holds the lock, and deliver that.
func (w *meshWait) settleCanceled() {
	ctx, cancel := context.WithTimeout(w.ctx, routeTimeout)
	defer cancel()
	_, st, err := w.h.Token(ctx, w.s, []byte(w.name))
	switch {
	case err != nil:
		// Nobody could say (this node is shutting down, the owner is out
		// of reach): not "refused", which would say nothing was granted.
		w.deliver(partition.Outcome{Err: failure.Unknown(failure.Unavailable, "lock "+w.name+": the wait was given up on while its outcome was unknown; ask token after resuming")})
	case st == locktable.Granted:
		w.deliver(partition.Outcome{Granted: true})
	default:
		w.deliver(partition.Outcome{})
	}
}

// shutDown ends a wait because this node is shutting down. Once a
// request has gone out it may still be queued at an owner, and granted to
// the session (which lives on elsewhere) after this connection closes:
// the client must not hear "nothing happened".
func (w *meshWait) shutDown(sent bool) {
	if !sent {
		w.deliver(partition.Outcome{Err: w.ctx.Err()})
		return
	}
	w.deliver(partition.Outcome{Err: failure.Unknown(failure.ShuttingDown, "lock "+w.name+": this node is shutting down while the wait may still be queued; outcome unknown, ask token after resuming")})
}

// settleLate ends a wait whose time ran out after a request went
// unanswered: an owner may have granted it, so ask whether the session
// holds the lock. If it does, the wait was granted; if another session
// holds it and the wait was exclusive, the lock was held (409); if it is
// free, or the wait was shared or for a permit (which other holders need
// not have kept out), no owner ever said it was refused and nothing was
// granted, so the wait is refused as retryable, never answered 409. If
// no owner can say, the outcome is unknown.
func (w *meshWait) settleLate(p int, last error) {
	ctx, cancel := context.WithTimeout(w.ctx, routeTimeout)
	defer cancel()
	tok, st, err := w.h.Token(ctx, w.s, []byte(w.name))
	switch {
	case err != nil:
		w.deliver(partition.Outcome{Err: failure.Unknown(failure.Unavailable, "lock "+w.name+": its owner did not answer in time; outcome unknown")})
	case st == locktable.Granted:
		w.h.sessions.held(w.s.ID, w.name, true)
		w.deliver(partition.Outcome{Granted: true, Token: tok})
	case st == locktable.NotYours && w.want.Mode == locktable.Exclusive:
		w.deliver(partition.Outcome{})
	default:
		// Free, or held by others in a mode that may have admitted this
		// request (readers, or permits to spare): nothing says it was
		// refused.
		w.giveUp(p, last)
	}
}

// giveUp ends a wait whose time ran out before any owner answered it.
// Nothing says the lock was held meanwhile (its owner may have been down
// all along), so the client must not hear 409; nor is a new request sent
// after the client's time is up. The wait is refused as a lock without a
// wait is when no owner answers: retryable, nothing happened. (Found by
// the fault suite: a wait answered 409 while the lock was free makes a
// history that is not linearizable.)
func (w *meshWait) giveUp(p int, last error) {
	w.deliver(partition.Outcome{Err: failure.Retry(failure.Unavailable, failure.Partition(p)+" unavailable ("+failure.Text(last)+")")})
}

// Cancel implements Wait.
func (w *meshWait) Cancel() bool {
	w.mu.Lock()
	if w.finished {
		w.mu.Unlock()
		return false
	}
	w.canceled = true
	n, req := w.node, w.req
	if req == "" {
		if w.maybe {
			// A request went unanswered: its owner may have granted it
			// (the reply lost with a connection or an owner). Only asking
			// tells, so the wait asks (settleCanceled) and its outcome
			// follows; a grant then goes back. Answering "withdrawn" here
			// left the session holding a lock nobody knew of.
			w.mu.Unlock()
			return false
		}
		// Between requests, none lost: nothing is queued anywhere.
		w.finished = true
		w.mu.Unlock()
		return true
	}
	w.mu.Unlock()
	var e peer.Enc
	e.Str(req)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b, err := callNode(ctx, w.h.call, n, peer.Cancel, e.B)
	if withdrawn, derr := decodeBool(b); err == nil && derr == nil && withdrawn {
		// The wait may have settled meanwhile (the request it withdrew had
		// been given up on, and the wait asked elsewhere): then its outcome
		// was delivered, and the connection must take it.
		w.mu.Lock()
		settled := w.finished
		w.finished = true
		w.mu.Unlock()
		return !settled
	}
	return false
}
