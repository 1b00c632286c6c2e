package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/elock/elock/node"
	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/node/peer"
)

// sessionOwner keeps the records of the sessions whose ids hash to the
// partitions this node owns (see homeSessions for the protocol):
//
//   - It attaches a session to a home, and takes it over from an older
//     home once that home confirms the connection is gone or stops
//     renewing it.
//   - A session still attached whose home has not renewed it for the home
//     lease is detached, so that its timeout starts.
//   - When a session expires, every owner releases its locks.
type sessionOwner struct {
	set       *partition.Set
	rt        *router
	table     Table
	call      Caller
	homeLease time.Duration
	// maxTimeout bounds the session timeouts this owner records, whoever
	// asks: the lock-delay after a double failure is sized by it, so a
	// longer timeout reaching a record (a peer of another configuration,
	// a bug, a forged request) would let a session outlive the delay
	// that is meant to outlast it.
	maxTimeout time.Duration
	// inLockDelay reports whether partition p is owned here and still in
	// the lock-delay of a loss: a record missing from it may not have
	// ended.
	inLockDelay func(p int) bool
	log         *slog.Logger

	renewed renewals // when each record was last renewed by its home
}

func newSessionOwner(set *partition.Set, rt *router, homeLease, maxTimeout time.Duration, inLockDelay func(int) bool, log *slog.Logger) *sessionOwner {
	return &sessionOwner{set: set, rt: rt, table: rt.table, call: rt.call, homeLease: homeLease, maxTimeout: maxTimeout, inLockDelay: inLockDelay, log: log,
		renewed: renewals{m: make(map[string]renewal)}}
}

func (s *sessionOwner) register(r *peer.Registry, w *workers) error {
	return errors.Join(
		r.Handle(peer.Attach, w.blocking(s.attach)),
		r.Handle(peer.Detach, w.blocking(s.detach)),
		r.Handle(peer.SetTimeout, w.blocking(s.setTimeout)),
		r.Handle(peer.Renew, w.blocking(s.renew)),
		r.Handle(peer.Alive, w.blocking(s.alive)),
	)
}

var errAttachedElsewhere = failure.Refuse(failure.Attached, "attached to a live connection")

// attach binds a session to a home, taking it over from another home
// once that home confirms its connection is gone, or its renewals have
// stopped for the home lease.
func (s *sessionOwner) attach(ctx context.Context, b []byte) ([]byte, error) {
	d := peer.Dec{B: b}
	id, home, reclaim := d.Str(), d.Str(), d.Bool()
	if err := d.End(); err != nil {
		return nil, err
	}
	if !peer.CallerIs(ctx, homeNode(home)) {
		return nil, errNotTheHome
	}
	set := s.set
	deadline := time.Now().Add(s.homeLease + time.Second)
	for {
		if time.Now().After(deadline.Add(time.Second)) {
			return nil, failure.Retry(failure.Busy, "session "+node.LogID(id)+" is changing hands; retry")
		}
		a, err := set.Attach(id, home)
		if err == nil {
			s.noteRenewal(id, time.Now())
			var e peer.Enc
			e.Uint(a.Epoch)
			e.Uint(a.Born)
			e.Bool(a.Resumed)
			e.Int(int64(a.Timeout))
			return e.B, nil
		}
		if !errors.Is(err, locktable.ErrAttached) {
			return nil, err
		}
		rec, ok, err := set.Session(id)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if rec.Home == home {
			if !reclaim {
				return nil, errAttachedElsewhere
			}
			set.Detach(id, rec.Epoch)
			continue
		}
		// Attached to another home: ask it whether the connection lives.
		switch s.probe(ctx, rec) {
		case probeLive:
			return nil, errAttachedElsewhere
		case probeGone:
			set.Detach(id, rec.Epoch)
			continue
		}
		// Unreachable: the home's renewals stop or it closes the
		// connection within the home lease; wait that out, no longer.
		last, seen := s.lastRenewal(id)
		if !seen || time.Since(last) > s.homeLease+time.Second || time.Now().After(deadline) {
			set.Detach(id, rec.Epoch)
			continue
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type probeResult int

const (
	probeUnknown probeResult = iota
	probeLive
	probeGone
)

// probe asks a session's home whether its connection is still live.
func (s *sessionOwner) probe(ctx context.Context, rec locktable.Session) probeResult {
	nodeID, nonce, _ := strings.Cut(rec.Home, "/")
	n, ok := s.table.State().Node(nodeID)
	if !ok || n.Nonce != nonce {
		return probeGone // that incarnation is no more
	}
	var e peer.Enc
	e.Str(rec.ID)
	e.Uint(rec.Epoch)
	cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	b, err := callNode(cctx, s.call, n, peer.Probe, e.B)
	if err != nil {
		return probeUnknown
	}
	live, err := decodeBool(b)
	switch {
	case err != nil:
		return probeUnknown
	case live:
		return probeLive
	}
	return probeGone
}

// errNotTheHome refuses a request about a session from a node that is
// not the home it names, or the one its record names.
var errNotTheHome = failure.Refuse(failure.Unspecified, "not from the session's home")

// homeNode is the node id of a home's name (homeName).
func homeNode(home string) string {
	id, _, _ := strings.Cut(home, "/")
	return id
}

// fromHome reports whether the caller of a request (its connection
// context ctx) is the node of rec's home: only the node a session is
// attached to speaks for its connection. A node that only holds a
// certificate of the mesh could otherwise detach anyone's session, keep
// a dead one attached, or change its timeout.
func fromHome(ctx context.Context, rec locktable.Session) bool {
	return peer.CallerIs(ctx, homeNode(rec.Home))
}

func (s *sessionOwner) detach(ctx context.Context, b []byte) ([]byte, error) {
	d := peer.Dec{B: b}
	id, epoch := d.Str(), d.Uint()
	if err := d.End(); err != nil {
		return nil, err
	}
	if rec, ok, err := s.set.Session(id); err == nil && ok && rec.Epoch == epoch && !fromHome(ctx, rec) {
		return nil, errNotTheHome
	}
	return nil, s.set.Detach(id, epoch)
}

func (s *sessionOwner) setTimeout(ctx context.Context, b []byte) ([]byte, error) {
	d := peer.Dec{B: b}
	id, timeout := d.Str(), time.Duration(d.Int())
	if err := d.End(); err != nil {
		return nil, err
	}
	if timeout < 0 || timeout > s.maxTimeout {
		return nil, failure.Refuse(failure.Unspecified, fmt.Sprintf("session timeout %v out of range 0..%v", timeout, s.maxTimeout))
	}
	if rec, ok, err := s.set.Session(id); err == nil && ok && !fromHome(ctx, rec) {
		return nil, errNotTheHome
	}
	return nil, s.set.SetTimeout(id, timeout)
}

// renew notes that a home still speaks for its sessions, and answers per
// session whether the record agrees.
func (s *sessionOwner) renew(ctx context.Context, b []byte) ([]byte, error) {
	d := peer.Dec{B: b}
	n := d.Count(2) // an id and an epoch
	type item struct {
		id    string
		epoch uint64
	}
	items := make([]item, 0, n)
	for range n {
		items = append(items, item{d.Str(), d.Uint()})
	}
	if err := d.End(); err != nil {
		return nil, err
	}
	var e peer.Enc
	now := time.Now()
	for _, it := range items {
		rec, ok, err := s.set.Session(it.id)
		switch {
		case err != nil || !ok && s.inLockDelay(s.rt.partOf([]byte(it.id))):
			// A record lost with both copies is not a session that ended.
			e.Uint(renewRetry)
		case !ok || !rec.Attached || rec.Epoch != it.epoch || !fromHome(ctx, rec):
			e.Uint(renewFenced)
		default:
			s.noteRenewal(it.id, now)
			e.Uint(renewOK)
		}
	}
	return e.B, nil
}

// sweepRecords detaches every session still attached whose home has not
// renewed it for the home lease, so that its timeout starts. A record
// this node has just taken over counts as renewed now: its home gets a
// full lease to find the new owner.
func (s *sessionOwner) sweepRecords(context.Context) {
	now := time.Now()
	for _, rec := range s.set.Sessions() {
		if !rec.Attached {
			continue
		}
		last, ok := s.lastRenewal(rec.ID)
		if !ok {
			s.noteRenewal(rec.ID, now)
		}
		if ok && now.Sub(last) > s.homeLease+time.Second {
			s.log.Info("detaching a session whose home stopped renewing it", "session", node.LogID(rec.ID), "home", rec.Home)
			s.set.Detach(rec.ID, rec.Epoch)
		}
	}
	// Forget renewals of records long gone from here.
	s.renewed.forget(now.Add(-10 * s.homeLease))
}

// recordEpoch is the epoch of the partition that holds session id's record.
func (s *sessionOwner) recordEpoch(id string) uint64 {
	return s.table.State().Part(s.rt.partOf([]byte(id))).Epoch
}

func (s *sessionOwner) noteRenewal(id string, at time.Time) {
	s.renewed.note(id, s.recordEpoch(id), at)
}

// lastRenewal is when the record's home last renewed it with this node,
// if it did since the record's partition last changed hands.
func (s *sessionOwner) lastRenewal(id string) (time.Time, bool) {
	return s.renewed.last(id, s.recordEpoch(id))
}

// releaseExpired releases, at every owner, the locks of each session the
// partition set reports expired. It does not hold up the set's timer,
// which only queues the ids; sweepLocks catches any release it misses.
func (s *sessionOwner) releaseExpired(ctx context.Context, q *expiries) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		}
		for _, x := range q.take() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cctx, cancel := context.WithTimeout(ctx, 2*routeTimeout)
				defer cancel()
				if err := s.rt.releaseEverywhere(cctx, x.id, x.epoch); err != nil {
					s.log.Warn("releasing an expired session's locks failed; the sweep will retry", "session", node.LogID(x.id), "err", err)
				}
			}()
		}
	}
}

// alive answers a lock owner's sweep: which of these sessions still
// exist?
func (s *sessionOwner) alive(_ context.Context, b []byte) ([]byte, error) {
	d := peer.Dec{B: b}
	n := d.Len()
	ids := make([]string, 0, n)
	for range n {
		ids = append(ids, d.Str())
	}
	if err := d.End(); err != nil {
		return nil, err
	}
	var e peer.Enc
	for _, id := range ids {
		rec, ok, bound, err := s.set.SessionBound(id)
		switch {
		case err != nil || !ok && s.inLockDelay(s.rt.partOf([]byte(id))):
			e.Uint(aliveUnknown)
		case ok:
			e.Uint(aliveYes)
			e.Uint(rec.Born)
		default:
			e.Uint(aliveNo)
			e.Uint(bound)
		}
	}
	return e.B, nil
}

// expiries is the queue through which the partition set tells the session
// owner that sessions expired. It is built before the set, whose Expired
// hook adds to it, and drained by the session owner's loop, so that
// neither needs the other finished. It never blocks the set's timer.
type expiries struct {
	mu   sync.Mutex // guards ids
	ids  []expiry
	wake chan struct{} // capacity 1
}

// expiry is a session that expired, and the attach epoch it ended at.
type expiry struct {
	id    string
	epoch uint64
}

func newExpiries() *expiries { return &expiries{wake: make(chan struct{}, 1)} }

func (q *expiries) add(id string, epoch uint64) {
	q.mu.Lock()
	q.ids = append(q.ids, expiry{id, epoch})
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *expiries) take() []expiry {
	q.mu.Lock()
	defer q.mu.Unlock()
	ids := q.ids
	q.ids = nil
	return ids
}

// every runs f every d until ctx ends.
func every(ctx context.Context, d time.Duration, f func(context.Context)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f(ctx)
		}
	}
}
