package mesh

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/node/peer"
)

// lockOwner answers homes' requests for the locks of the partitions this
// node owns. Each handler decodes its request, acts on the partition set
// (which refuses partitions this node does not own, and waits for the
// replica's acknowledgement of every change), and encodes the answer.
type lockOwner struct {
	set   *partition.Set
	table Table
	call  Caller
	log   *slog.Logger
	// clients counts this node's connections with a session, for stats.
	clients func() int

	mu sync.Mutex // guards waits and floors
	// waits holds the queued requests of homes, by request id, so that
	// Cancel can withdraw them, and a resume elsewhere its older homes'.
	waits map[string]*queued
	// floors is, per session, the lowest attach epoch still served: a
	// home that lost its session to a resume elsewhere is fenced off.
	floors map[string]uint64
}

// queued is one request waiting in a partition's queue.
type queued struct {
	w       *partition.Wait
	ch      chan partition.Outcome
	session string
	epoch   uint64 // of the home that sent it
}

func newLockOwner(set *partition.Set, table Table, call Caller, clients func() int, log *slog.Logger) *lockOwner {
	return &lockOwner{set: set, table: table, call: call, clients: clients, log: log,
		waits: make(map[string]*queued), floors: make(map[string]uint64)}
}

func (o *lockOwner) register(r *peer.Registry, w *workers) error {
	return errors.Join(
		r.Handle(peer.Lock, w.blocking(o.lock)),
		r.Handle(peer.Cancel, w.blocking(o.cancel)),
		r.Handle(peer.Unlock, w.blocking(o.unlock)),
		r.Handle(peer.Drop, w.blocking(o.drop)),
		r.Handle(peer.Release, w.blocking(o.release)),
		r.Handle(peer.Token, w.blocking(o.token)),
		r.Handle(peer.Info, w.blocking(o.info)),
		r.Handle(peer.Held, w.blocking(o.held)),
		r.Handle(peer.NodeStat, w.blocking(o.nodeStat)),
	)
}

// raiseFloor fences off every home of session id older than epoch.
func (o *lockOwner) raiseFloor(id string, epoch uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if epoch > o.floors[id] {
		o.floors[id] = epoch
	}
}

// fenced refuses a request from a home that lost its session: a newer
// home has resumed it, and this node has been told so.
func (o *lockOwner) fenced(q lockReq) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if q.epoch < o.floors[q.session] {
		return errSessionMoved
	}
	return nil
}

// lock takes a lock for a session, or, with a wait, queues for it and
// answers with the outcome. The wait is withdrawn if the home's
// connection closes: the client behind it can no longer hear of a grant.
func (o *lockOwner) lock(conn context.Context, b []byte) ([]byte, error) {
	q, err := decodeLockReq(b)
	if err != nil {
		return nil, err
	}
	if err := o.fenced(q); err != nil {
		return nil, err
	}
	if q.wait <= 0 {
		res, _, err := o.set.LockAsync(q.session, q.name, 0, nil)
		if err != nil {
			return nil, lockErr(err)
		}
		return encodeResult(res), nil
	}
	ch := make(chan partition.Outcome, 1)
	res, w, err := o.set.LockAsync(q.session, q.name, q.wait, func(out partition.Outcome) { ch <- out })
	if err != nil {
		return nil, lockErr(err)
	}
	if w == nil {
		return encodeResult(res), nil
	}
	o.mu.Lock()
	o.waits[q.req] = &queued{w: w, ch: ch, session: q.session, epoch: q.epoch}
	o.mu.Unlock()
	stop := context.AfterFunc(conn, func() { o.withdraw(q.req, errWithdrawn) })
	if o.fenced(q) != nil {
		// Fenced while it was being queued: withdrawFenced may have
		// looked before it was in the table.
		o.withdraw(q.req, errSessionMoved)
	}
	out := <-ch
	stop()
	o.mu.Lock()
	delete(o.waits, q.req)
	o.mu.Unlock()
	switch {
	case errors.Is(out.Err, errWithdrawn):
		return encodeResult(locktable.Result{Status: statusCanceled}), nil
	case out.Err != nil:
		return nil, out.Err
	case out.Granted:
		return encodeResult(locktable.Result{Status: locktable.Granted, Token: out.Token}), nil
	}
	return encodeResult(locktable.Result{Status: locktable.Unavailable}), nil
}

func lockErr(err error) error {
	if err == locktable.ErrExhausted {
		return errExhausted
	}
	return err
}

// errWithdrawn tells lock that its wait was withdrawn.
var errWithdrawn = errors.New("mesh: wait withdrawn")

// withdraw cancels a queued wait and reports whether it did; its request
// is answered with why.
func (o *lockOwner) withdraw(req string, why error) bool {
	o.mu.Lock()
	qw := o.waits[req]
	o.mu.Unlock()
	if qw == nil || !o.set.Cancel(qw.w) {
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
func (o *lockOwner) withdrawFenced(id string, epoch uint64) {
	var reqs []string
	o.mu.Lock()
	for req, qw := range o.waits {
		if qw.session == id && qw.epoch < epoch {
			reqs = append(reqs, req)
		}
	}
	o.mu.Unlock()
	for _, req := range reqs {
		o.withdraw(req, errSessionMoved)
	}
}

// cancel withdraws a queued wait, and answers whether it did: if not, its
// outcome was decided first and is on its way.
func (o *lockOwner) cancel(_ context.Context, b []byte) ([]byte, error) {
	d := peer.Dec{B: b}
	req := d.Str()
	if err := d.End(); err != nil {
		return nil, err
	}
	return encodeBool(o.withdraw(req, errWithdrawn)), nil
}

func (o *lockOwner) unlock(_ context.Context, b []byte) ([]byte, error) {
	q, err := decodeLockReq(b)
	if err != nil {
		return nil, err
	}
	if err := o.fenced(q); err != nil {
		return nil, err
	}
	res, err := o.set.Unlock(q.session, q.name)
	if err != nil {
		return nil, err
	}
	return encodeResult(res), nil
}

// drop takes back one grant nobody heard of. It is not fenced: it names
// the grant by its token, and the table keeps it if the session has been
// told of it since.
func (o *lockOwner) drop(_ context.Context, b []byte) ([]byte, error) {
	d := peer.Dec{B: b}
	session, name, token := d.Str(), d.Bytes(), d.Uint()
	if err := d.End(); err != nil {
		return nil, err
	}
	res, err := o.set.Drop(session, name, token)
	if err != nil {
		return nil, err
	}
	return encodeResult(res), nil
}

// release releases a session's locks in one partition.
func (o *lockOwner) release(_ context.Context, b []byte) ([]byte, error) {
	d := peer.Dec{B: b}
	id, p := d.Str(), int(d.Uint())
	if err := d.End(); err != nil || p < 0 || p >= o.set.Partitions() {
		return nil, peer.ErrMalformed
	}
	n, err := o.set.ReleaseSessionIn(id, []int{p})
	if err != nil {
		return nil, err
	}
	var e peer.Enc
	e.Uint(uint64(n))
	return e.B, nil
}

func (o *lockOwner) token(_ context.Context, b []byte) ([]byte, error) {
	q, err := decodeLockReq(b)
	if err != nil {
		return nil, err
	}
	tok, st, err := o.set.Token(q.session, q.name)
	if err != nil {
		return nil, err
	}
	return encodeResult(locktable.Result{Status: st, Token: tok}), nil
}

func (o *lockOwner) info(_ context.Context, b []byte) ([]byte, error) {
	q, err := decodeLockReq(b)
	if err != nil {
		return nil, err
	}
	in, err := o.set.Info(q.session, q.name)
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

// held lists the locks a session holds in the given partitions, and
// fences every home of it older than epoch: the session has been resumed
// elsewhere, and a request still on its way from the old home must not
// act for it. It also lists the partitions it does not serve, which the
// home asks their new owners about.
func (o *lockOwner) held(_ context.Context, b []byte) ([]byte, error) {
	d := peer.Dec{B: b}
	id, epoch := d.Str(), d.Uint()
	parts := make([]int, d.Len())
	for i := range parts {
		parts[i] = int(d.Uint())
	}
	if err := d.End(); err != nil {
		return nil, err
	}
	o.raiseFloor(id, epoch)
	o.withdrawFenced(id, epoch)
	var names []string
	var missed []int
	for _, p := range parts {
		if p < 0 || p >= o.set.Partitions() {
			return nil, peer.ErrMalformed
		}
		ns, err := o.set.HeldNamesIn(id, p)
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

// nodeStat returns this node's own figures: its clients, and the locks of
// the partitions it owns.
func (o *lockOwner) nodeStat(context.Context, []byte) ([]byte, error) {
	c := o.set.Counts()
	var e peer.Enc
	e.Uint(uint64(o.clients()))
	e.Uint(uint64(c.Locks))
	e.Uint(uint64(c.Waiters))
	e.Uint(uint64(c.Sessions))
	e.Uint(c.Grants)
	return e.B, nil
}

// Alive statuses, in a session owner's answer.
const (
	aliveYes     = 0
	aliveNo      = 1 // the session owner serves the partition and has no record: expired
	aliveUnknown = 2
)

// sweepLocks asks, for every session holding or awaiting a lock here,
// its session owner whether it still exists, and releases the locks of
// sessions that have ended. It is the backstop for a missed expiry
// release.
func (o *lockOwner) sweepLocks(ctx context.Context) {
	holders := o.set.Holders()
	if len(holders) == 0 {
		return
	}
	st := o.table.State()
	byNode := make(map[string][]string)
	for id := range holders {
		owner := st.Part(partition.Of([]byte(id), o.set.Partitions())).Owner
		byNode[owner] = append(byNode[owner], id)
	}
	for nodeID, ids := range byNode {
		n, ok := st.Node(nodeID)
		if !ok {
			continue
		}
		var e peer.Enc
		e.Uint(uint64(len(ids)))
		for _, id := range ids {
			e.Str(id)
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		b, err := o.call.Call(cctx, n, peer.Alive, e.B)
		cancel()
		if err != nil {
			continue
		}
		d := peer.Dec{B: b}
		for _, id := range ids {
			if d.Uint() == aliveNo {
				o.log.Info("releasing the locks of an ended session", "session", id)
				o.set.ReleaseSessionIn(id, holders[id])
				o.mu.Lock()
				delete(o.floors, id)
				o.mu.Unlock()
			}
		}
	}
}

// errExhausted refuses a grant when the partition's epoch has no tokens
// left; the control plane moves it to a new epoch.
var errExhausted = failure.Retry(failure.Exhausted, "token space of this epoch exhausted; retry")
