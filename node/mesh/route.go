package mesh

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/node/peer"
	"github.com/elock/elock/replication"
)

// routeTimeout bounds how long a command keeps looking for its
// partition's owner through a failover before it is refused as retryable:
// longer than a takeover (lease, margin, commit, replica copy).
const routeTimeout = 15 * time.Second

// router sends requests to the owners of partitions: a lock's name or a
// session's id hashes to one. Across a failover a request is sent again
// to the new owner, which is safe because every request is idempotent for
// its session or told apart by the session's list of held locks kept at
// its home.
type router struct {
	self  replication.Incarnation
	table Table
	call  Caller
	parts int
	log   *slog.Logger
	// timers are reused by owner calls, which make one each.
	timers sync.Pool
}

func (r *router) partOf(key []byte) int { return partition.Of(key, r.parts) }

// errIndeterminate is wrapped by route when the owner may have carried
// out a request whose reply was lost.
var errIndeterminate = errors.New("mesh: outcome unknown")

// route sends a request to the owner of partition p and returns its
// reply. It follows the partition through epoch changes: a retryable
// refusal, or an owner that cannot be reached, waits for a newer table
// and asks again, until ctx or routeTimeout ends. If the reply to a
// request that may have been carried out is lost, it asks again only when
// again is true; otherwise it returns errIndeterminate wrapped, and the
// caller decides.
func (r *router) route(ctx context.Context, p int, m peer.Method, payload []byte, again bool) ([]byte, error) {
	deadline := time.Now().Add(routeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	var last error
	// maybe: an earlier attempt may have been carried out; if none gets a
	// reply in time, the outcome of a change is unknown, not refused.
	maybe := false
	for {
		st := r.table.State()
		if st.Initialized() {
			part := st.Part(p)
			n, ok := st.Node(part.Owner)
			if ok && n.Nonce == part.ONonce {
				out, err := r.callOwner(ctx, deadline, p, n, m, address(m, p, part.Epoch, payload))
				if err == nil {
					return out, nil
				}
				last = err
				switch {
				case errors.Is(err, peer.ErrLost) && !again:
					return nil, fmt.Errorf("%w: %w", errIndeterminate, err)
				case errors.Is(err, peer.ErrLost):
					maybe = true
				case errors.Is(err, peer.ErrUnreachable):
				case failure.Is(err, failure.LockDelay), failure.Is(err, failure.Full):
					// A lost partition refuses for minutes, a full owner
					// until locks or sessions end: say so at once.
					return nil, err
				case failure.Is(err, failure.SessionMoved):
					// This home's epoch of the session is fenced off for
					// good: asking again cannot help.
					return nil, err
				case failure.ClassOf(err) == failure.Retryable:
				case errors.Is(ctx.Err(), context.Canceled) && failure.ClassOf(err) == 0:
					// Answered below: an earlier attempt may have been
					// carried out. An owner's own answer (a 504 above
					// all) is not replaced by the context's end.
				case errors.Is(err, context.DeadlineExceeded):
					// The caller's deadline or route's own: answered below.
				default:
					return nil, err // a definite answer, or an unknown outcome (504)
				}
			} else {
				last = fmt.Errorf("%s has no reachable owner", failure.Partition(p))
			}
		} else {
			last = errors.New("the partition table is not ready")
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			if maybe && !readOnly(m) {
				return nil, failure.Unknown(failure.Unavailable, failure.Partition(p)+": request abandoned ("+ctx.Err().Error()+") after it may have been carried out; outcome unknown")
			}
			return nil, ctx.Err()
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			if maybe && !readOnly(m) {
				return nil, failure.Unknown(failure.Unavailable, failure.Partition(p)+" did not answer in time ("+failure.Text(last)+"); outcome unknown")
			}
			return nil, failure.Retry(failure.Unavailable, failure.Partition(p)+" unavailable ("+failure.Text(last)+")")
		}
		// Wait for a newer table, but not long: a node that was merely slow
		// may answer on the next try with the same table.
		wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		waitNewer(wctx, r.table, st.Index)
		cancel()
	}
}

// moveCheck is how long a request waits for its owner's reply before it
// also watches the table for the partition moving to another owner.
const moveCheck = 500 * time.Millisecond

// errOwnerMoved abandons a request to an owner the table has replaced.
var errOwnerMoved = errors.New("the partition moved to another owner")

// callOwner calls method m on n, the owner of partition p, and waits for
// its reply until ctx ends or deadline passes. A request that is slow to
// answer is abandoned once the table gives the partition to another owner
// (a paused or cut-off owner never answers), so that route asks the new
// owner, which holds everything the old one confirmed. An abandoned
// request fails with peer.ErrLost: it may have been carried out. One
// timer serves the deadline and the watch; nothing else is made per call.
func (r *router) callOwner(ctx context.Context, deadline time.Time, p int, n replication.Node, m peer.Method, payload []byte) ([]byte, error) {
	if n.ID == r.self.ID && n.Nonce == r.self.Nonce {
		return callNode(ctx, r.call, n, m, payload) // this node answers; ctx ends a wait
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	abandon := r.call.Start(ctx, n, m, payload, func(b []byte, err error) { ch <- result{b, err} })
	if abandon == nil {
		res := <-ch
		return res.b, res.err
	}
	timer := r.getTimer(min(moveCheck, time.Until(deadline)))
	defer r.putTimer(timer)
	var changed <-chan struct{} // watched once the request is slow
	var why error
	for why == nil {
		select {
		case res := <-ch:
			return res.b, res.err
		case <-ctx.Done():
			why = ctx.Err()
		case <-timer.C:
			if !time.Now().Before(deadline) {
				why = context.DeadlineExceeded
				break
			}
			changed = r.table.Changed()
			if r.moved(p, n) {
				why = errOwnerMoved
				break
			}
			timer.Reset(time.Until(deadline))
		case <-changed:
			changed = r.table.Changed()
			if r.moved(p, n) {
				why = errOwnerMoved
			}
		}
	}
	abandon(why)
	res := <-ch
	if res.err != nil && why == errOwnerMoved {
		res.err = fmt.Errorf("%w: %w", res.err, errOwnerMoved)
	}
	return res.b, res.err
}

// getTimer returns a timer of the router's pool (one per owner call in
// flight), set to fire after d.
func (r *router) getTimer(d time.Duration) *time.Timer {
	if t, ok := r.timers.Get().(*time.Timer); ok {
		t.Reset(d)
		return t
	}
	return time.NewTimer(d)
}

// putTimer stops t and returns it to the pool. Since Go 1.23 a stopped
// timer's channel holds no stale value, so the next Reset starts clean.
func (r *router) putTimer(t *time.Timer) {
	t.Stop()
	r.timers.Put(t)
}

// moved reports whether the table no longer gives partition p to n.
func (r *router) moved(p int, n replication.Node) bool {
	cur := r.table.State().Part(p)
	return cur.Owner != n.ID || cur.ONonce != n.Nonce
}

// goOwner is callOwner without waiting, to n as the owner of partition p
// at epoch: done receives what callOwner would return, from the
// goroutine that learns it (see Caller). ctx ends the request (and is the
// connection of this node's own handler).
func (r *router) goOwner(ctx context.Context, p int, n replication.Node, epoch uint64, m peer.Method, payload []byte, done func([]byte, error)) {
	if err := ctx.Err(); err != nil {
		done(nil, err)
		return
	}
	payload = address(m, p, epoch, payload)
	if n.ID == r.self.ID && n.Nonce == r.self.Nonce {
		r.call.Start(ctx, n, m, payload, done)
		return
	}
	var (
		mu       sync.Mutex // guards the fields below
		answered bool
		cause    error       // why the request was abandoned
		watch    *time.Timer // set once started, unless answered first
		ctxStop  func() bool
		stop     = make(chan struct{}) // closed when answered
	)
	abandon := r.call.Start(ctx, n, m, payload, func(b []byte, err error) {
		mu.Lock()
		answered = true
		why, w, cs := cause, watch, ctxStop
		mu.Unlock()
		close(stop)
		if w != nil {
			w.Stop()
			cs()
		}
		if err != nil && why == errOwnerMoved {
			err = fmt.Errorf("%w: %w", err, errOwnerMoved)
		}
		done(b, err)
	})
	if abandon == nil {
		return
	}
	give := func(why error) {
		mu.Lock()
		if answered || cause != nil {
			mu.Unlock()
			return
		}
		cause = why
		mu.Unlock()
		abandon(why)
	}
	// The watch runs only for a request still unanswered after moveCheck;
	// the context ends the request at any time.
	w := time.AfterFunc(moveCheck, func() {
		for {
			ch := r.table.Changed()
			if r.moved(p, n) {
				give(errOwnerMoved)
				return
			}
			select {
			case <-ch:
			case <-stop:
				return
			}
		}
	})
	cs := context.AfterFunc(ctx, func() { give(ctx.Err()) })
	mu.Lock()
	if answered {
		mu.Unlock()
		w.Stop()
		cs()
		return
	}
	watch, ctxStop = w, cs
	mu.Unlock()
}

// addressedMethod reports whether m changes a lock owner's locks: its
// requests name the partition and the epoch of the ownership they are
// sent to, so that an owner can refuse one that reaches it late (see
// lockOwner.addressed).
func addressedMethod(m peer.Method) bool {
	return m == peer.Lock || m == peer.Unlock || m == peer.Drop || m == peer.Release || m == peer.Proclaim
}

// address prefixes the payload of an addressed method with partition p
// and the epoch of the table entry that named its owner.
func address(m peer.Method, p int, epoch uint64, payload []byte) []byte {
	if !addressedMethod(m) {
		return payload
	}
	e := peer.Enc{B: make([]byte, 0, 2*binary.MaxVarintLen64+len(payload))}
	e.Uint(uint64(p))
	e.Uint(epoch)
	e.B = append(e.B, payload...)
	return e.B
}

// readOnly reports whether a method changes nothing at the owner.
func readOnly(m peer.Method) bool { return m == peer.Token || m == peer.Info || m == peer.Leader }

// releaseEverywhere asks the owner of every partition to release a
// session's locks, following partitions that move meanwhile: unlock_all,
// and the expiry of a session.
func (r *router) releaseEverywhere(ctx context.Context, id string, upTo uint64) error {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		errs     []error
		released uint64
	)
	// One request per owner node would do; one per partition keeps the
	// following of moved partitions simple, and they run in parallel.
	sem := make(chan struct{}, 16)
	for p := range r.parts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var pe peer.Enc
			pe.Str(id)
			pe.Uint(uint64(p))
			pe.Uint(upTo)
			b, err := r.route(ctx, p, peer.Release, pe.B, true)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			d := peer.Dec{B: b}
			released += d.Uint()
		}()
	}
	wg.Wait()
	return releaseOutcome(released, errs)
}

// releaseOutcome is the answer of a release across partitions that let
// go of released locks and failed in len(errs) partitions. A refusal says
// nothing happened: not so once some locks were let go, or when another
// partition's outcome is unknown.
func releaseOutcome(released uint64, errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	for _, err := range errs {
		if failure.ClassOf(err) == failure.Indeterminate {
			return err
		}
	}
	if released > 0 {
		return failure.Unknown(failure.Partial, fmt.Sprintf("released %d lock(s), but not in every partition (%s); outcome unknown, send it again", released, failure.Text(errs[0])))
	}
	return errs[0]
}
