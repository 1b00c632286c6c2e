package mesh

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elock/elock/node"
	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/node/peer"
)

// handler is the body of a peer method of the mesh: it may block, and it
// runs on a goroutine of its own.
type handler func(conn context.Context, payload []byte) ([]byte, error)

// workers runs the goroutines the roles start per request (a blocking
// peer method, a queued wait) and joins them. Each ends with its own
// context, which also ends when the mesh closes.
type workers struct {
	ctx    context.Context // ends when the mesh closes
	mu     sync.Mutex      // guards closed and wg.Add
	closed bool
	wg     sync.WaitGroup
	// busy counts the blocking peer requests in progress, up to max
	// (0: maxBlocking).
	busy atomic.Int64
	max  int64
}

// maxBlocking bounds the blocking peer requests (attaches, renewals,
// resumes' Held, ...) a node carries out at once, each on a goroutine of
// its own: peers that send them faster than they end are refused beyond
// it, as retryable (their routes ask again shortly), rather than growing
// goroutines without end. A mass reconnect after a node fails sends
// thousands of attaches to the session owners, each done in well under
// a millisecond unless it must ask an old home.
const maxBlocking = 4096

// errBusy refuses a blocking request beyond maxBlocking.
var errBusy = failure.Retry(failure.Busy, "too many peer requests in progress; retry")

// start runs f on a goroutine of its own, with a context that ends with
// parent or with the mesh. It reports false, running nothing, once the
// mesh has closed.
func (w *workers) start(parent context.Context, f func(ctx context.Context)) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		ctx, cancel := context.WithCancel(parent)
		stop := context.AfterFunc(w.ctx, cancel)
		defer func() {
			stop()
			cancel()
		}()
		f(ctx)
	}()
	return true
}

// close refuses new work and waits for what runs, which ends because ctx
// has ended.
func (w *workers) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.wg.Wait()
}

// errClosed refuses work after the mesh has closed.
var errClosed = failure.Retry(failure.ShuttingDown, "shutting down")

// blocking adapts a handler to the peer layer, whose handlers must not
// block: it runs on a goroutine of its own, with a copy of the payload.
func (w *workers) blocking(h handler) peer.HandlerFunc {
	return func(conn context.Context, _ peer.Method, payload []byte, reply func([]byte, error)) {
		limit := w.max
		if limit == 0 {
			limit = maxBlocking
		}
		if w.busy.Add(1) > limit {
			w.busy.Add(-1)
			reply(nil, errBusy)
			return
		}
		p := append([]byte(nil), payload...)
		if !w.start(conn, func(ctx context.Context) {
			defer w.busy.Add(-1)
			reply(h(ctx, p))
		}) {
			w.busy.Add(-1)
			reply(nil, errClosed)
		}
	}
}

// lockReq is the body of Lock, Unlock, Token and Info: a session as one
// attachment of it (id and epoch, which fences off older homes, and the
// epoch it was born at, which tells its locks from an earlier session's
// under the id), a name, and for Lock the wait and the request's id, by
// which Cancel withdraws it.
type lockReq struct {
	session string
	epoch   uint64
	born    uint64
	name    []byte
	wait    time.Duration
	req     string
	// want is a Lock's mode; an exclusive request leaves it out, so the
	// original protocol's payloads are what they always were.
	want locktable.Want
}

func (q lockReq) asker() partition.Asker {
	return partition.Asker{Session: q.session, Epoch: q.epoch, Born: q.born}
}

func lockPayload(s node.SessionRef, name []byte, wait time.Duration, req string) []byte {
	return wantPayload(s, name, locktable.Want{}, wait, req)
}

// wantPayload is lockPayload for a lock in the mode want gives.
func wantPayload(s node.SessionRef, name []byte, want locktable.Want, wait time.Duration, req string) []byte {
	// Sized once: appending to an empty buffer would grow it three times.
	e := peer.Enc{B: make([]byte, 0, 40+len(s.ID)+len(name)+len(req))}
	e.Str(s.ID)
	e.Uint(s.Epoch)
	e.Uint(s.Born)
	e.Bytes(name)
	e.Int(int64(wait))
	e.Str(req)
	if want != (locktable.Want{}) {
		e.Uint(uint64(want.Mode))
		e.Uint(uint64(want.Limit))
		if want.Value != "" {
			e.Str(want.Value)
		}
	}
	return e.B
}

func decodeLockReq(b []byte) (lockReq, error) {
	d := peer.Dec{B: b}
	q := lockReq{session: d.Str(), epoch: d.Uint(), born: d.Uint(), name: d.Bytes(), wait: time.Duration(d.Int()), req: d.Str()}
	if len(d.B) > 0 {
		mode, limit := d.Uint(), d.Uint()
		if mode > uint64(locktable.Permit) || limit > math.MaxUint32 {
			return q, fmt.Errorf("%w: a lock of mode %d with limit %d", peer.ErrMalformed, mode, limit)
		}
		q.want = locktable.Want{Mode: locktable.Mode(mode), Limit: uint32(limit)}
		if len(d.B) > 0 {
			q.want.Value = d.Str()
		}
	}
	return q, d.End()
}

// heldPayload is the body of Held: a resume of session id (born at born)
// at epoch asks an owner for the session's locks in partitions ps.
func heldPayload(id string, born, epoch uint64, ps []int) []byte {
	var e peer.Enc
	e.Str(id)
	e.Uint(born)
	e.Uint(epoch)
	e.Uint(uint64(len(ps)))
	for _, p := range ps {
		e.Uint(uint64(p))
	}
	return e.B
}

// statusCanceled is the status of a Lock whose wait was withdrawn, by
// Cancel or because its home's connection closed.
const statusCanceled = locktable.Status(0)

func encodeResult(res locktable.Result) []byte {
	e := peer.Enc{B: make([]byte, 0, 24)}
	e.Uint(uint64(res.Status))
	e.Uint(res.Token)
	e.Bool(res.Reentrant)
	if res.Kind != 0 || res.Limit != 0 {
		e.Uint(uint64(res.Kind))
		e.Uint(uint64(res.Limit))
	}
	return e.B
}

func decodeResult(b []byte) (locktable.Result, error) {
	d := peer.Dec{B: b}
	res := locktable.Result{Status: locktable.Status(d.Uint()), Token: d.Uint(), Reentrant: d.Bool()}
	if len(d.B) > 0 {
		res.Kind, res.Limit = locktable.Kind(min(d.Uint(), 1)), uint32(min(d.Uint(), math.MaxUint32))
	}
	return res, d.End()
}

// encodeBool and decodeBool carry a yes or no answer (Cancel: withdrawn;
// Probe: live).
func encodeBool(v bool) []byte {
	var e peer.Enc
	e.Bool(v)
	return e.B
}

func decodeBool(b []byte) (bool, error) {
	d := peer.Dec{B: b}
	v := d.Bool()
	return v, d.End()
}
