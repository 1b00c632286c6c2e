package node

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/node/peer"
	"github.com/elock/elock/node/wire"
)

// The owner's side of the mesh: what a partition's owner does when a home
// asks it for a lock. Each handler decodes its request, acts on the local
// partition set (which refuses partitions this node does not own, and
// waits for the replica's acknowledgement of every change), and encodes
// the answer.

func (r *Router) ownerHandlers() map[byte]handler {
	return map[byte]handler{
		mLock:       r.hLock,
		mLockWait:   r.hLockWait,
		mCancel:     r.hCancel,
		mUnlock:     r.hUnlock,
		mRelease:    r.hRelease,
		mToken:      r.hToken,
		mInfo:       r.hInfo,
		mAttach:     r.sessions.hAttach,
		mDetach:     r.sessions.hDetach,
		mSetTimeout: r.sessions.hSetTimeout,
		mHeld:       r.hHeld,
		mRenew:      r.sessions.hRenew,
		mProbe:      r.sessions.hProbe,
		mAlive:      r.sessions.hAlive,
		mStats:      r.hStats,
		mDrop:       r.hDrop,
	}
}

// lockReq is the decoded body of mLock, mLockWait, mUnlock, mToken, mInfo.
type lockReq struct {
	session string
	epoch   uint64
	name    []byte
	wait    time.Duration
	req     string
}

func decodeLockReq(b []byte) (lockReq, error) {
	d := peer.Dec{B: b}
	q := lockReq{session: d.Str(), epoch: d.Uint(), name: d.Bytes(), wait: time.Duration(d.Int()), req: d.Str()}
	return q, d.End()
}

// statusCanceled marks a wait withdrawn by mCancel or by its home's
// connection closing.
const statusCanceled = locktable.Status(0)

func encodeResult(res locktable.Result) []byte {
	var e peer.Enc
	e.Uint(uint64(res.Status))
	e.Uint(res.Token)
	e.Bool(res.Reentrant)
	return e.B
}

// fenced refuses a request from a home that lost its session: a newer
// home has resumed it, and this node has been told so.
func (r *Router) fenced(q lockReq) error {
	if r.sessions.fenced(q.session, q.epoch) {
		return errSessionMoved
	}
	return nil
}

func (r *Router) hLock(_ context.Context, b []byte) ([]byte, error) {
	q, err := decodeLockReq(b)
	if err != nil {
		return nil, err
	}
	if err := r.fenced(q); err != nil {
		return nil, err
	}
	res, _, err := r.set.LockAsync(q.session, q.name, 0, nil)
	if err != nil {
		return nil, lockErr(err)
	}
	return encodeResult(res), nil
}

func lockErr(err error) error {
	if err == locktable.ErrExhausted {
		return wire.Retry("token space of this epoch exhausted; retry")
	}
	return err
}

// waitTable holds the queued requests of remote homes, so that mCancel can
// withdraw them, and a resume elsewhere can withdraw its older homes'.
type waitTable struct {
	mu sync.Mutex // guards m
	m  map[string]*queued
}

// queued is one request waiting in a partition's queue.
type queued struct {
	w       *partition.Wait
	ch      chan partition.Outcome
	session string
	epoch   uint64 // of the home that sent it
}

// hLockWait queues a lock for up to its wait and answers with the
// outcome. The wait is withdrawn if the home's connection closes: the
// client behind it can no longer hear of a grant.
func (r *Router) hLockWait(conn context.Context, b []byte) ([]byte, error) {
	q, err := decodeLockReq(b)
	if err != nil {
		return nil, err
	}
	if err := r.fenced(q); err != nil {
		return nil, err
	}
	ch := make(chan partition.Outcome, 1)
	res, w, err := r.set.LockAsync(q.session, q.name, q.wait, func(o partition.Outcome) { ch <- o })
	if err != nil {
		return nil, lockErr(err)
	}
	if w == nil {
		return encodeResult(res), nil
	}
	r.waits.mu.Lock()
	r.waits.m[q.req] = &queued{w: w, ch: ch, session: q.session, epoch: q.epoch}
	r.waits.mu.Unlock()
	stop := context.AfterFunc(conn, func() { r.withdraw(q.req, errWithdrawn) })
	if r.fenced(q) != nil {
		// Fenced while it was being queued: withdrawFenced may have
		// looked before it was in the table.
		r.withdraw(q.req, errSessionMoved)
	}
	o := <-ch
	stop()
	r.waits.mu.Lock()
	delete(r.waits.m, q.req)
	r.waits.mu.Unlock()
	switch {
	case errors.Is(o.Err, errWithdrawn):
		return encodeResult(locktable.Result{Status: statusCanceled}), nil
	case o.Err != nil:
		return nil, o.Err
	case o.Granted:
		return encodeResult(locktable.Result{Status: locktable.Granted, Token: o.Token}), nil
	}
	return encodeResult(locktable.Result{Status: locktable.Unavailable}), nil
}

// errWithdrawn tells hLockWait that its wait was withdrawn.
var errWithdrawn = errors.New("node: wait withdrawn")

// withdraw cancels a queued remote wait and reports whether it did; its
// request is answered with why.
func (r *Router) withdraw(req string, why error) bool {
	r.waits.mu.Lock()
	qw := r.waits.m[req]
	r.waits.mu.Unlock()
	if qw == nil || !r.set.Cancel(qw.w) {
		return false
	}
	qw.ch <- partition.Outcome{Err: why}
	return true
}

// withdrawFenced withdraws the queued waits that session id's homes older
// than epoch sent: the session has been resumed elsewhere. Granted later,
// such a wait would reach a home that can no longer tell its client, and
// the session would hold a lock nobody knew of until that home gave it
// back (found by the fault suite).
func (r *Router) withdrawFenced(id string, epoch uint64) {
	var reqs []string
	r.waits.mu.Lock()
	for req, qw := range r.waits.m {
		if qw.session == id && qw.epoch < epoch {
			reqs = append(reqs, req)
		}
	}
	r.waits.mu.Unlock()
	for _, req := range reqs {
		r.withdraw(req, errSessionMoved)
	}
}

func (r *Router) hCancel(_ context.Context, b []byte) ([]byte, error) {
	d := peer.Dec{B: b}
	req := d.Str()
	if err := d.End(); err != nil {
		return nil, err
	}
	if r.withdraw(req, errWithdrawn) {
		return []byte("canceled"), nil
	}
	return []byte("decided"), nil
}

func (r *Router) hUnlock(_ context.Context, b []byte) ([]byte, error) {
	q, err := decodeLockReq(b)
	if err != nil {
		return nil, err
	}
	if err := r.fenced(q); err != nil {
		return nil, err
	}
	res, err := r.set.Unlock(q.session, q.name)
	if err != nil {
		return nil, err
	}
	return encodeResult(res), nil
}

// hDrop takes back one grant nobody heard of. It is not fenced: it names
// the grant by its token, and the table keeps it if the session has been
// told of it since.
func (r *Router) hDrop(_ context.Context, b []byte) ([]byte, error) {
	d := peer.Dec{B: b}
	session, name, token := d.Str(), d.Bytes(), d.Uint()
	if err := d.End(); err != nil {
		return nil, err
	}
	res, err := r.set.Drop(session, name, token)
	if err != nil {
		return nil, err
	}
	return encodeResult(res), nil
}

// hRelease releases a session's locks in one partition.
func (r *Router) hRelease(_ context.Context, b []byte) ([]byte, error) {
	d := peer.Dec{B: b}
	id, p := d.Str(), int(d.Uint())
	if err := d.End(); err != nil || p < 0 || p >= r.set.Partitions() {
		return nil, peer.ErrMalformed
	}
	n, err := r.set.ReleaseSessionIn(id, []int{p})
	if err != nil {
		return nil, err
	}
	var e peer.Enc
	e.Uint(uint64(n))
	return e.B, nil
}

func (r *Router) hToken(_ context.Context, b []byte) ([]byte, error) {
	q, err := decodeLockReq(b)
	if err != nil {
		return nil, err
	}
	tok, st, err := r.set.Token(q.session, q.name)
	if err != nil {
		return nil, err
	}
	return encodeResult(locktable.Result{Status: st, Token: tok}), nil
}

func (r *Router) hInfo(_ context.Context, b []byte) ([]byte, error) {
	q, err := decodeLockReq(b)
	if err != nil {
		return nil, err
	}
	in, err := r.set.Info(q.session, q.name)
	if err != nil {
		return nil, err
	}
	var e peer.Enc
	e.Bool(in.Held)
	e.Bool(in.Mine)
	e.Uint(in.Token)
	e.Int(int64(in.HeldFor))
	e.Uint(uint64(in.Waiters))
	return e.B, nil
}

// hHeld lists the locks a session holds in the given partitions, and
// fences every home of it older than epoch: the session has been resumed
// elsewhere, and a request still on its way from the old home must not
// act for it. It also lists the partitions it does not serve, which the
// home asks their new owners about.
func (r *Router) hHeld(_ context.Context, b []byte) ([]byte, error) {
	d := peer.Dec{B: b}
	id, epoch := d.Str(), d.Uint()
	parts := make([]int, d.Len())
	for i := range parts {
		parts[i] = int(d.Uint())
	}
	if err := d.End(); err != nil {
		return nil, err
	}
	r.sessions.raiseFloor(id, epoch)
	r.withdrawFenced(id, epoch)
	var names []string
	var missed []int
	for _, p := range parts {
		if p < 0 || p >= r.set.Partitions() {
			return nil, peer.ErrMalformed
		}
		ns, err := r.set.HeldNamesIn(id, p)
		if err != nil {
			missed = append(missed, p)
			continue
		}
		names = append(names, ns...)
	}
	var e peer.Enc
	e.Uint(uint64(len(names)))
	for _, n := range names {
		e.Str(n)
	}
	e.Uint(uint64(len(missed)))
	for _, p := range missed {
		e.Uint(uint64(p))
	}
	return e.B, nil
}

// hStats returns this node's own figures: its clients, and the locks of
// the partitions it owns.
func (r *Router) hStats(context.Context, []byte) ([]byte, error) {
	c := r.set.Counts()
	var e peer.Enc
	e.Uint(uint64(r.clients()))
	e.Uint(uint64(c.Locks))
	e.Uint(uint64(c.Waiters))
	e.Uint(uint64(c.Sessions))
	e.Uint(c.Grants)
	return e.B, nil
}
