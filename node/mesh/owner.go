package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/elock/elock/node"
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
	// owned reports whether this node owns a partition, and the epoch its
	// unbroken ownership began at (replication.Data.OwnedSince).
	owned func(p int) (since uint64, ok bool)

	// lim bounds the requests this owner carries out, whoever sends
	// them: the home checks the same limits first, but an owner does not
	// rely on every peer having done so.
	lim requestLimits

	// listing admits at most maxListing List requests at once: each
	// scans every held lock of its partitions, with each partition held
	// meanwhile.
	listing chan struct{}

	// watchers are the watches homes registered here (watch.go).
	watchers ownerWatches
	// leaseLow reports whether this node's owner lease is gone or has
	// missed renewals, which a watch's renewal tells its home (nil: never).
	leaseLow func() bool

	mu sync.Mutex // guards waits and floors
	// waits holds the queued requests of homes, by request id, so that
	// Cancel can withdraw them, and a resume elsewhere its older homes'.
	waits map[string]*queued
	// floors is, per session, the lowest attach epoch still served: a
	// home that lost its session to a resume elsewhere is fenced off.
	floors map[string]uint64

	// testHookQueued, when set, runs between a wait's queueing and its
	// entry in waits, where its outcome may be delivered by another
	// goroutine.
	testHookQueued func(*queued)
}

// requestLimits are the client port's limits on a lock request, checked
// again where it is carried out.
type requestLimits struct {
	maxName int
	maxWait time.Duration
	// maxPermits bounds a semaphore's limit (0: any that fits 32 bits).
	maxPermits uint32
	// listBytes bounds an answer to List (0: maxListBytes).
	listBytes int
}

// check refuses a request beyond the limits, as a definite failure: the
// same request would be refused again.
func (l requestLimits) check(q lockReq) error {
	switch {
	case len(q.name) == 0 || len(q.name) > l.maxName:
		return failure.Refuse(failure.Unspecified, fmt.Sprintf("a lock name of %d bytes, outside 1..%d", len(q.name), l.maxName))
	case q.wait < 0 || q.wait > l.maxWait:
		return failure.Refuse(failure.Unspecified, fmt.Sprintf("a wait of %v, outside 0..%v", q.wait, l.maxWait))
	case q.want.Mode == locktable.Permit && (q.want.Limit == 0 || l.maxPermits > 0 && q.want.Limit > l.maxPermits):
		most := l.maxPermits
		if most == 0 {
			most = math.MaxUint32
		}
		return failure.Refuse(failure.Unspecified, fmt.Sprintf("a semaphore of %d permits, outside 1..%d", q.want.Limit, most))
	case q.want.Mode != locktable.Permit && q.want.Limit != 0:
		return failure.Refuse(failure.Unspecified, fmt.Sprintf("a %v lock with a limit of %d", q.want.Mode, q.want.Limit))
	case q.want.Value != "" && (q.want.Mode != locktable.Exclusive || len(q.want.Value) > l.maxName || strings.ContainsAny(q.want.Value, " \r\n")):
		return failure.Refuse(failure.Unspecified, fmt.Sprintf("a value of %d bytes for a %v lock", len(q.want.Value), q.want.Mode))
	}
	return nil
}

// queued is one lock request waiting in a partition's queue, answered
// once: by its outcome, or by its withdrawal.
type queued struct {
	o       *lockOwner
	req     string
	session string
	epoch   uint64 // of the home that sent it
	reply   func([]byte, error)

	mu       sync.Mutex // guards the fields below
	w        *partition.Wait
	answered bool
	stop     func() bool // ends the watch of the home's connection
}

// answer replies to the request, once, and forgets it.
func (qw *queued) answer(b []byte, err error) {
	qw.mu.Lock()
	if qw.answered {
		qw.mu.Unlock()
		return
	}
	qw.answered = true
	stop := qw.stop
	qw.mu.Unlock()
	if stop != nil {
		stop()
	}
	qw.o.mu.Lock()
	if qw.o.waits[qw.req] == qw {
		delete(qw.o.waits, qw.req)
	}
	qw.o.mu.Unlock()
	qw.reply(b, err)
}

// outcome is the Done of a queued request.
func (qw *queued) outcome(out partition.Outcome) {
	switch {
	case errors.Is(out.Err, errWithdrawn):
		qw.answer(encodeResult(locktable.Result{Status: statusCanceled}), nil)
	case out.Err != nil:
		qw.answer(nil, out.Err)
	case out.Granted:
		qw.answer(encodeResult(locktable.Result{Status: locktable.Granted, Token: out.Token}), nil)
	default:
		qw.answer(encodeResult(locktable.Result{Status: locktable.Unavailable}), nil)
	}
}

func newLockOwner(set *partition.Set, table Table, call Caller, clients func() int, owned func(int) (uint64, bool), lim requestLimits, log *slog.Logger) *lockOwner {
	return &lockOwner{set: set, table: table, call: call, clients: clients, owned: owned, lim: lim, log: log,
		waits: make(map[string]*queued), floors: make(map[string]uint64), listing: make(chan struct{}, maxListing)}
}

// register adds the lock owner's methods. The hot ones (lock, unlock,
// cancel, drop, release, token, info) never block: they act on the
// partition set at once, on the peer connection's reader goroutine, and
// answer when the replica confirms, from the goroutine that reads the
// confirmation. No goroutine is started per request.
func (o *lockOwner) register(r *peer.Registry, w *workers) error {
	return errors.Join(
		r.Handle(peer.Lock, o.addressed(o.lock)),
		r.Handle(peer.Cancel, o.cancel),
		r.Handle(peer.Unlock, o.addressed(o.unlock)),
		r.Handle(peer.Drop, o.addressed(o.drop)),
		r.Handle(peer.Release, o.addressed(o.release)),
		r.Handle(peer.Token, o.token),
		r.Handle(peer.Info, o.info),
		r.Handle(peer.Held, w.blocking(o.held)),
		r.Handle(peer.NodeStat, w.blocking(o.nodeStat)),
		r.Handle(peer.List, w.blocking(o.list)),
		r.Handle(peer.Proclaim, o.addressed(o.proclaim)),
		r.Handle(peer.Leader, o.leader),
		r.Handle(peer.Watch, w.blocking(o.watch)),
	)
}

// addressed serves a request that names the partition and the epoch of
// the ownership it was sent to (see address). One sent to an earlier
// ownership of this node is refused: its sender stopped waiting for it
// when the partition moved away, and may have had it carried out by the
// next owner since, so carrying it out now would do it twice. Found by
// the fault suite: a plain lock sent to an owner that a network
// partition cut off was granted by the new owner, and unlocked; TCP
// delivered the first copy 13 s later, when the partition had come back
// to its first owner, which granted the lock again to a session whose
// client would never hear of it.
func (o *lockOwner) addressed(h peer.HandlerFunc) peer.HandlerFunc {
	return func(conn context.Context, m peer.Method, b []byte, reply func([]byte, error)) {
		d := peer.Dec{B: b}
		p, epoch := d.Uint(), d.Uint()
		if d.Err() != nil || p >= uint64(o.set.Partitions()) {
			reply(nil, peer.ErrMalformed)
			return
		}
		if since, ok := o.owned(int(p)); ok && epoch < since {
			reply(nil, failure.Retry(failure.Moved, failure.Partition(int(p))+": request sent to an earlier owner (epoch "+
				strconv.FormatUint(epoch, 10)+", owned here since "+strconv.FormatUint(since, 10)+"); retry"))
			return
		}
		h(conn, m, d.B, reply)
	}
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
func (o *lockOwner) lock(conn context.Context, _ peer.Method, b []byte, reply func([]byte, error)) {
	q, err := decodeLockReq(b)
	if err == nil {
		err = o.lim.check(q)
	}
	if err == nil {
		err = o.fenced(q)
	}
	if err != nil {
		reply(nil, err)
		return
	}
	if q.wait <= 0 {
		o.set.LockThen(q.asker(), q.name, q.want, 0, nil, func(res locktable.Result, _ *partition.Wait, err error) {
			if err != nil {
				reply(nil, lockErr(err))
				return
			}
			reply(encodeResult(res), nil)
		})
		return
	}
	qw := &queued{o: o, req: q.req, session: q.session, epoch: q.epoch, reply: reply}
	o.set.LockThen(q.asker(), q.name, q.want, q.wait, qw.outcome, func(res locktable.Result, w *partition.Wait, err error) {
		switch {
		case err != nil:
			qw.answer(nil, lockErr(err))
			return
		case w == nil:
			qw.answer(encodeResult(res), nil) // granted or refused at once
			return
		}
		// Queued. Its outcome may have been decided already (then done was
		// called before this): then there is nothing to withdraw.
		qw.mu.Lock()
		if qw.answered {
			qw.mu.Unlock()
			return
		}
		qw.w = w
		qw.mu.Unlock()
		if o.testHookQueued != nil {
			o.testHookQueued(qw)
		}
		o.mu.Lock()
		o.waits[q.req] = qw
		o.mu.Unlock()
		stop := context.AfterFunc(conn, func() { o.withdraw(q.req, errWithdrawn) })
		qw.mu.Lock()
		if qw.answered {
			// Answered since it was found unanswered above, perhaps before
			// it was in the map, where answer would have deleted it.
			qw.mu.Unlock()
			stop()
			o.mu.Lock()
			if o.waits[q.req] == qw {
				delete(o.waits, q.req)
			}
			o.mu.Unlock()
		} else {
			qw.stop = stop
			qw.mu.Unlock()
		}
		if o.fenced(q) != nil {
			// Fenced while it was being queued: withdrawFenced may have
			// looked before it was in the table.
			o.withdraw(q.req, errSessionMoved)
		}
	})
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
	if qw == nil {
		return false
	}
	qw.mu.Lock()
	w := qw.w
	qw.mu.Unlock()
	if w == nil || !o.set.Cancel(w) {
		return false
	}
	qw.outcome(partition.Outcome{Err: why})
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
func (o *lockOwner) cancel(_ context.Context, _ peer.Method, b []byte, reply func([]byte, error)) {
	d := peer.Dec{B: b}
	req := d.Str()
	if err := d.End(); err != nil {
		reply(nil, err)
		return
	}
	reply(encodeBool(o.withdraw(req, errWithdrawn)), nil)
}

func (o *lockOwner) unlock(_ context.Context, _ peer.Method, b []byte, reply func([]byte, error)) {
	q, err := decodeLockReq(b)
	if err == nil {
		err = o.fenced(q)
	}
	if err != nil {
		reply(nil, err)
		return
	}
	// Fenced again under the partition's mutex: a resume raises the floor
	// before it lists the session's locks under that mutex, so an old
	// home's unlock that passed the check above before the floor rose
	// cannot free a lock after the resumed client was told it holds it
	// (found by review).
	o.set.UnlockThen(q.asker(), q.name, func() error { return o.fenced(q) }, replyResult(reply))
}

// replyResult answers a request with a lock-side result.
func replyResult(reply func([]byte, error)) func(locktable.Result, error) {
	return func(res locktable.Result, err error) {
		if err != nil {
			reply(nil, err)
			return
		}
		reply(encodeResult(res), nil)
	}
}

// drop takes back one grant nobody heard of, named by its token: the
// table keeps it if the session has been told of it since. It is fenced
// once the session has been resumed at a newer home: the resumed client
// was told which locks the session holds, and a grant must not vanish
// under it afterwards. A Drop sent before the resume can arrive long
// after it (TCP delivers what a network partition held back once it
// heals); found by full run 9, seed 28, where such a Drop released a
// lock 0.7 s after its session's resume had completed. The grant then
// stays with the session, which unlock, unlock_all or its expiry ends.
func (o *lockOwner) drop(_ context.Context, _ peer.Method, b []byte, reply func([]byte, error)) {
	d := peer.Dec{B: b}
	q := lockReq{session: d.Str(), epoch: d.Uint(), born: d.Uint(), name: d.Bytes()}
	token := d.Uint()
	err := d.End()
	if err == nil {
		err = o.fenced(q)
	}
	if err != nil {
		reply(nil, err)
		return
	}
	o.set.DropThen(q.asker(), q.name, token, func() error { return o.fenced(q) }, replyResult(reply))
}

// release releases a session's locks in one partition, up to the attach
// epoch it names (an expired session's last, or an unlock_all's
// attachment): a release can arrive long after it was sent, and must
// leave what a later attachment or a new session under the id was told
// it holds (locktable.ReleaseSessionUpTo).
func (o *lockOwner) release(_ context.Context, _ peer.Method, b []byte, reply func([]byte, error)) {
	d := peer.Dec{B: b}
	id, p, upTo := d.Str(), int(d.Uint()), d.Uint()
	if err := d.End(); err != nil || p < 0 || p >= o.set.Partitions() {
		reply(nil, peer.ErrMalformed)
		return
	}
	o.set.ReleaseThen(id, p, upTo, func(n int, err error) {
		if err != nil {
			reply(nil, err)
			return
		}
		var e peer.Enc
		e.Uint(uint64(n))
		reply(e.B, nil)
	})
}

// proclaim changes the value a session's exclusive grant publishes,
// fenced as an unlock is.
func (o *lockOwner) proclaim(_ context.Context, _ peer.Method, b []byte, reply func([]byte, error)) {
	q, err := decodeLockReq(b)
	if err == nil {
		err = o.lim.check(q)
	}
	if err != nil {
		reply(nil, err)
		return
	}
	o.set.ProclaimThen(q.asker(), q.name, q.want.Value, func() error { return o.fenced(q) }, replyResult(reply))
}

// leader answers who leads a name: whether anyone holds it exclusively,
// with the grant's token and published value.
func (o *lockOwner) leader(_ context.Context, _ peer.Method, b []byte, reply func([]byte, error)) {
	q, err := decodeLockReq(b)
	if err != nil {
		reply(nil, err)
		return
	}
	o.set.LeaderThen(q.name, func(tok uint64, value string, ok bool, err error) {
		if err != nil {
			reply(nil, err)
			return
		}
		var e peer.Enc
		e.Bool(ok)
		e.Uint(tok)
		e.Str(value)
		reply(e.B, nil)
	})
}

func (o *lockOwner) token(_ context.Context, _ peer.Method, b []byte, reply func([]byte, error)) {
	q, err := decodeLockReq(b)
	if err != nil {
		reply(nil, err)
		return
	}
	o.set.TokenThen(q.asker(), q.name, func(tok uint64, st locktable.Status, err error) {
		if err != nil {
			reply(nil, err)
			return
		}
		reply(encodeResult(locktable.Result{Status: st, Token: tok}), nil)
	})
}

func (o *lockOwner) info(_ context.Context, _ peer.Method, b []byte, reply func([]byte, error)) {
	q, err := decodeLockReq(b)
	if err != nil {
		reply(nil, err)
		return
	}
	o.set.InfoThen(q.asker(), q.name, func(in locktable.Info, err error) {
		if err != nil {
			reply(nil, err)
			return
		}
		var e peer.Enc
		e.Bool(in.Held)
		e.Bool(in.Mine)
		e.Uint(in.Token)
		e.Int(int64(in.HeldFor))
		e.Uint(uint64(in.Waiters))
		e.Uint(uint64(in.Kind))
		e.Uint(uint64(in.Mode))
		e.Uint(uint64(in.Holders))
		e.Uint(uint64(in.Limit))
		reply(e.B, nil)
	})
}

// held lists the locks a session holds in the given partitions, and
// fences every home of it older than epoch: the session has been resumed
// elsewhere, and a request still on its way from the old home must not
// act for it. It also lists the partitions it does not serve, which the
// home asks their new owners about.
func (o *lockOwner) held(_ context.Context, b []byte) ([]byte, error) {
	d := peer.Dec{B: b}
	id, born, epoch := d.Str(), d.Uint(), d.Uint()
	n := d.Len()
	if n > o.set.Partitions() {
		return nil, peer.ErrMalformed
	}
	parts := make([]int, n)
	for i := range parts {
		parts[i] = int(d.Uint())
	}
	if err := d.End(); err != nil {
		return nil, err
	}
	for _, p := range parts {
		if p < 0 || p >= o.set.Partitions() {
			return nil, peer.ErrMalformed
		}
	}
	o.raiseFloor(id, epoch)
	o.withdrawFenced(id, epoch)
	var (
		mu     sync.Mutex // guards names and missed
		names  []string
		missed []int
		wg     sync.WaitGroup
	)
	// Claimed as listed, their epochs raised to the resume's: a Drop or an
	// unlock_all from an older home cannot take a lock after the resumed
	// client was told of it (found by review). In parallel: each may wait
	// for its replica, and the home asks again after 2 s.
	for _, p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ns, err := o.set.ClaimHeldIn(partition.Asker{Session: id, Epoch: epoch, Born: born}, p)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				missed = append(missed, p)
				return
			}
			names = append(names, ns...)
		}()
	}
	wg.Wait()
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
	aliveYes     = 0 // the attach epoch that created the live session follows
	aliveNo      = 1 // the session owner serves the partition and has no record: expired; the epoch bound follows
	aliveUnknown = 2
)

// sweepLocks asks, for every session holding or awaiting a lock here,
// its session owner whether it still exists, and releases the locks of
// sessions that have ended. It is the backstop for a missed expiry
// release, also when a new session has since taken the same id: locks
// and waits older than the attach that created it are the ended one's,
// which the new session never took and which would otherwise stay held
// for as long as it lives. It also asks about the sessions this owner
// keeps only a floor for (a resume told it of, holding nothing here),
// and forgets the floors of those that ended: each resume leaves one on
// every owner, which would otherwise stay for the node's life.
func (o *lockOwner) sweepLocks(ctx context.Context) {
	holders := o.set.Holders()
	ids := make(map[string]struct{}, len(holders))
	for id := range holders {
		ids[id] = struct{}{}
	}
	o.mu.Lock()
	for id := range o.floors {
		ids[id] = struct{}{}
	}
	o.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	st := o.table.State()
	byNode := make(map[string][]string)
	for id := range ids {
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
		b, err := callNode(cctx, o.call, n, peer.Alive, e.B)
		cancel()
		if err != nil {
			continue
		}
		d := peer.Dec{B: b}
	answers:
		for _, id := range ids {
			switch d.Uint() {
			case aliveNo:
				// Only up to the epochs given out when the session owner
				// answered: a new session under this id, attached since,
				// may already have locked here.
				upTo := d.Uint()
				if d.Err() != nil {
					break answers
				}
				if h, ok := holders[id]; ok {
					o.log.Info("releasing the locks of an ended session", "session", node.LogID(id))
					o.set.ReleaseSessionIn(id, h.Parts, upTo)
				}
				// A newer session under this id, attached since the
				// answer, may have been resumed here: keep its floor.
				o.mu.Lock()
				if o.floors[id] <= upTo {
					delete(o.floors, id)
				}
				o.mu.Unlock()
			case aliveYes:
				born := d.Uint()
				if d.Err() != nil {
					break answers
				}
				// Every lock and wait the live session made carries an
				// epoch from born on (a resume raises those it lists);
				// anything older is an ended session's.
				if h, ok := holders[id]; ok && born > 0 && h.Oldest < born {
					o.log.Info("releasing the locks an ended session left under a reused id", "session", node.LogID(id))
					o.set.ReleaseSessionIn(id, h.Parts, born-1)
				}
			}
		}
	}
}

// errExhausted refuses a grant when the partition's epoch has no tokens
// left; the control plane moves it to a new epoch.
var errExhausted = failure.Retry(failure.Exhausted, "token space of this epoch exhausted; retry")
