package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/peer"
	"github.com/elock/elock/node/wire"
	"github.com/elock/elock/replication"
)

// Sessions span the mesh. A session's record lives on the owner of the
// partition its id hashes to (its session owner), replicated like a lock.
// Its locks live on the owners of their names. Its home is the node whose
// connection speaks for it.
//
//   - The home renews its sessions with their session owners; a session
//     owner that stops hearing renewals for a session (its home died, or is
//     cut off) detaches it, and its timeout starts.
//   - A home that cannot renew a session for long (see atRisk) closes the
//     client's connection well before its session could expire, so the
//     client learns that it is at risk and resumes elsewhere.
//   - A resume on a new home (conn_id) waits until the old home confirms
//     the connection is gone or its renewals have stopped for the lease,
//     bumps the session's epoch, and tells every node the new epoch, so that
//     a request still on its way from the old home is refused.
//   - When a session expires, its session owner has every owner release its
//     locks; lock owners also sweep, asking session owners about the
//     sessions that hold their locks, in case a release was missed.
type sessions struct {
	r         *Router
	homeLease time.Duration

	mu       sync.Mutex // guards the maps below
	attached map[string]*homeSession
	renewed  renewals          // session owner: when each record was last renewed
	floors   map[string]uint64 // lock owner: lowest epoch of a session still served

	// Hooks into the server, set by the mesh: close a session's client
	// connection, and tell whether it is still live.
	kick func(id string)
	live func(id string) bool

	stop chan struct{}
	// ctx ends with stop, for the work the loops start.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// homeSession is a session attached to a connection of this node.
type homeSession struct {
	epoch   uint64
	timeout time.Duration
	lastOK  time.Time // when the last renewal that succeeded was sent
	held    map[string]struct{}
}

// atRisk is how long a home tolerates failed renewals before it closes
// the client's connection. The session owner detaches the session a home
// lease after the last renewal it got, and ends it a timeout later; the
// client is told at half that, which leaves it time to resume elsewhere,
// and a failover of the session owner (a few seconds) does not disturb it.
func (h *homeSession) atRisk(homeLease time.Duration) time.Duration {
	return max(homeLease, h.timeout/2)
}

// setTimeout records a session's new timeout.
func (s *sessions) setTimeout(id string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.attached[id]; h != nil {
		h.timeout = d
	}
}

func newSessions(r *Router, homeLease time.Duration) *sessions {
	ctx, cancel := context.WithCancel(context.Background())
	return &sessions{
		ctx: ctx, cancel: cancel,
		r: r, homeLease: homeLease,
		attached: make(map[string]*homeSession),
		renewed:  renewals{m: make(map[string]renewal)},
		floors:   make(map[string]uint64),
		kick:     func(string) {},
		live:     func(string) bool { return false },
		stop:     make(chan struct{}),
	}
}

func (s *sessions) start() {
	s.wg.Add(3)
	go s.loop(s.homeLease/4, s.renewAll)
	go s.loop(time.Second, s.sweepRecords)
	go s.loop(5*time.Second, s.sweepLocks)
}

func (s *sessions) close() {
	close(s.stop)
	s.cancel()
	s.wg.Wait()
}

func (s *sessions) loop(every time.Duration, f func()) {
	defer s.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			f()
		}
	}
}

// current reports whether s is still the session's attachment here.
func (s *sessions) current(ref SessionRef) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.attached[ref.ID]
	return h != nil && h.epoch == ref.Epoch
}

func (s *sessions) held(id, name string, holds bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.attached[id]; h != nil {
		if holds {
			h.held[name] = struct{}{}
		} else {
			delete(h.held, name)
		}
	}
}

func (s *sessions) holds(id, name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.attached[id]
	if h == nil {
		return false
	}
	_, ok := h.held[name]
	return ok
}

func (s *sessions) forgetHeld(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.attached[id]; h != nil {
		clear(h.held)
	}
}

func (s *sessions) count(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.attached[id]; h != nil {
		return len(h.held)
	}
	return 0
}

func (s *sessions) raiseFloor(id string, epoch uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if epoch > s.floors[id] {
		s.floors[id] = epoch
	}
}

func (s *sessions) fenced(id string, epoch uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return epoch < s.floors[id]
}

// homeName is how a session record names its home: node id and nonce, so
// that a restarted node is not mistaken for the home it replaced.
func (s *sessions) homeName() string { return s.r.self.ID + "/" + s.r.self.Nonce }

// attach binds session id to a connection of this node (conn_id, or a
// connection's first command).
func (s *sessions) attach(ctx context.Context, id string) (locktable.Attachment, error) {
	var e peer.Enc
	e.Str(id)
	e.Str(s.homeName())
	s.mu.Lock()
	_, here := s.attached[id]
	s.mu.Unlock()
	// If the session owner says the session is attached to this very node
	// but no connection here has it, an earlier attach's reply was lost:
	// take it over.
	e.Bool(!here)
	b, err := s.r.route(ctx, s.r.partOf([]byte(id)), mAttach, e.B, true)
	if err != nil {
		var we *wire.Error
		if errors.As(err, &we) && we.Code == wire.CodeForbidden {
			return locktable.Attachment{}, locktable.ErrAttached
		}
		return locktable.Attachment{}, err
	}
	d := peer.Dec{B: b}
	a := locktable.Attachment{Epoch: d.Uint(), Resumed: d.Bool(), Timeout: time.Duration(d.Int())}
	if err := d.End(); err != nil {
		return a, err
	}
	h := &homeSession{epoch: a.Epoch, timeout: a.Timeout, lastOK: time.Now(), held: make(map[string]struct{})}
	if a.Resumed {
		// Learn the session's locks, and fence its older homes everywhere.
		names, err := s.heldEverywhere(ctx, id, a.Epoch)
		if err != nil {
			s.r.log.Warn("could not list a resumed session's locks", "session", id, "err", err)
		}
		for _, n := range names {
			h.held[n] = struct{}{}
		}
	}
	s.mu.Lock()
	s.attached[id] = h
	s.mu.Unlock()
	return a, nil
}

// heldEverywhere asks the owner of every partition for the locks session
// id holds there, and fences its older homes. It follows partitions that
// are changing hands, so a resume during a takeover still finds every
// lock: one request per owner node, then the partitions it did not serve
// again, until routeTimeout.
func (s *sessions) heldEverywhere(ctx context.Context, id string, epoch uint64) ([]string, error) {
	left := make([]int, s.r.set.Partitions())
	for i := range left {
		left[i] = i
	}
	var names []string
	deadline := time.Now().Add(routeTimeout)
	for len(left) > 0 {
		st := s.r.control.State()
		byOwner := map[string][]int{}
		for _, p := range left {
			byOwner[st.Part(p).Owner] = append(byOwner[st.Part(p).Owner], p)
		}
		left = left[:0]
		var mu sync.Mutex
		var wg sync.WaitGroup
		for ownerID, ps := range byOwner {
			n, ok := st.Node(ownerID)
			if !ok {
				left = append(left, ps...)
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				var e peer.Enc
				e.Str(id)
				e.Uint(epoch)
				e.Uint(uint64(len(ps)))
				for _, p := range ps {
					e.Uint(uint64(p))
				}
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				b, err := s.r.invoke(cctx, n, mHeld, e.B)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					left = append(left, ps...)
					return
				}
				d := peer.Dec{B: b}
				for range d.Len() {
					names = append(names, d.Str())
				}
				for range d.Len() {
					left = append(left, int(d.Uint()))
				}
				if d.End() != nil {
					left = append(left, ps...)
				}
			}()
		}
		wg.Wait()
		if len(left) == 0 {
			break
		}
		if err := ctx.Err(); err != nil {
			return names, err
		}
		if time.Now().After(deadline) {
			return names, fmt.Errorf("%d partitions did not answer", len(left))
		}
		wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		s.r.control.WaitNewer(wctx, st.Index)
		cancel()
	}
	return names, nil
}

// detach ends this node's attachment of a session: its connection closed.
func (s *sessions) detach(ctx context.Context, ref SessionRef) error {
	s.mu.Lock()
	h := s.attached[ref.ID]
	if h == nil || h.epoch != ref.Epoch {
		s.mu.Unlock()
		return nil // taken over elsewhere meanwhile; nothing of ours to end
	}
	delete(s.attached, ref.ID)
	s.mu.Unlock()
	var e peer.Enc
	e.Str(ref.ID)
	e.Uint(ref.Epoch)
	_, err := s.r.route(ctx, s.r.partOf([]byte(ref.ID)), mDetach, e.B, true)
	return err
}

// hAttach runs on the session owner.
func (s *sessions) hAttach(ctx context.Context, b []byte) ([]byte, error) {
	d := peer.Dec{B: b}
	id, home, reclaim := d.Str(), d.Str(), d.Bool()
	if err := d.End(); err != nil {
		return nil, err
	}
	set := s.r.set
	deadline := time.Now().Add(s.homeLease + time.Second)
	for {
		if time.Now().After(deadline.Add(time.Second)) {
			return nil, wire.Retry("session " + id + " is changing hands; retry")
		}
		a, err := set.Attach(id, home)
		if err == nil {
			s.noteRenewal(id, time.Now())
			var e peer.Enc
			e.Uint(a.Epoch)
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
				return nil, &wire.Error{Code: wire.CodeForbidden, Reason: "attached to a live connection"}
			}
			set.Detach(id, rec.Epoch)
			continue
		}
		// Attached to another home: ask it whether the connection lives.
		switch s.probe(ctx, rec) {
		case probeLive:
			return nil, &wire.Error{Code: wire.CodeForbidden, Reason: "attached to a live connection"}
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
func (s *sessions) probe(ctx context.Context, rec locktable.Session) probeResult {
	nodeID, nonce, _ := strings.Cut(rec.Home, "/")
	n, ok := s.r.control.State().Node(nodeID)
	if !ok || n.Nonce != nonce {
		return probeGone // that incarnation is no more
	}
	var e peer.Enc
	e.Str(rec.ID)
	e.Uint(rec.Epoch)
	cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	b, err := s.r.invoke(cctx, replication.Node{ID: n.ID, Nonce: n.Nonce, PeerAddr: n.PeerAddr}, mProbe, e.B)
	switch {
	case err != nil:
		return probeUnknown
	case string(b) == "live":
		return probeLive
	}
	return probeGone
}

// hProbe runs on a home: is this session attached to a live connection?
func (s *sessions) hProbe(_ context.Context, b []byte) ([]byte, error) {
	d := peer.Dec{B: b}
	id, epoch := d.Str(), d.Uint()
	if err := d.End(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	h := s.attached[id]
	s.mu.Unlock()
	if h != nil && h.epoch == epoch && s.live(id) {
		return []byte("live"), nil
	}
	return []byte("gone"), nil
}

func (s *sessions) hDetach(_ context.Context, b []byte) ([]byte, error) {
	d := peer.Dec{B: b}
	id, epoch := d.Str(), d.Uint()
	if err := d.End(); err != nil {
		return nil, err
	}
	return nil, s.r.set.Detach(id, epoch)
}

func (s *sessions) hSetTimeout(_ context.Context, b []byte) ([]byte, error) {
	d := peer.Dec{B: b}
	id, timeout := d.Str(), time.Duration(d.Int())
	if err := d.End(); err != nil {
		return nil, err
	}
	return nil, s.r.set.SetTimeout(id, timeout)
}

// Renewal statuses.
const (
	renewOK     = 0
	renewFenced = 1 // the session is no longer attached here at that epoch
	renewRetry  = 2 // the session owner cannot serve its partition now
)

// renewAll renews every session attached here with its session owner,
// one request per session owner node, and closes the connection of any
// session it could not renew for the home lease.
func (s *sessions) renewAll() {
	s.mu.Lock()
	type item struct {
		id    string
		epoch uint64
	}
	st := s.r.control.State()
	byNode := make(map[string][]item)
	for id, h := range s.attached {
		owner := st.Part(s.r.partOf([]byte(id))).Owner
		byNode[owner] = append(byNode[owner], item{id, h.epoch})
	}
	s.mu.Unlock()
	sent := time.Now()
	var wg sync.WaitGroup
	for nodeID, items := range byNode {
		n, ok := st.Node(nodeID)
		if !ok {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var e peer.Enc
			e.Uint(uint64(len(items)))
			for _, it := range items {
				e.Str(it.id)
				e.Uint(it.epoch)
			}
			ctx, cancel := context.WithTimeout(s.ctx, s.homeLease/2)
			defer cancel()
			b, err := s.r.invoke(ctx, n, mRenew, e.B)
			if err != nil {
				return
			}
			d := peer.Dec{B: b}
			for _, it := range items {
				switch d.Uint() {
				case renewOK:
					s.mu.Lock()
					if h := s.attached[it.id]; h != nil && h.epoch == it.epoch {
						h.lastOK = sent
					}
					s.mu.Unlock()
				case renewFenced:
					s.lose(it.id, it.epoch, "session taken over or ended elsewhere")
				}
			}
		}()
	}
	wg.Wait()
	s.mu.Lock()
	var late []string
	for id, h := range s.attached {
		if time.Since(h.lastOK) > h.atRisk(s.homeLease) {
			late = append(late, id)
		}
	}
	s.mu.Unlock()
	for _, id := range late {
		s.r.log.Warn("closing a client whose session could not be renewed: it may expire; the client should resume", "session", id)
		s.kick(id)
	}
}

// lose forgets a session that this node no longer speaks for and closes
// its client's connection.
func (s *sessions) lose(id string, epoch uint64, why string) {
	s.mu.Lock()
	h := s.attached[id]
	if h == nil || h.epoch != epoch {
		s.mu.Unlock()
		return
	}
	delete(s.attached, id)
	s.mu.Unlock()
	s.r.log.Warn("session lost by this home", "session", id, "why", why)
	s.kick(id)
}

// hRenew runs on the session owner.
func (s *sessions) hRenew(_ context.Context, b []byte) ([]byte, error) {
	d := peer.Dec{B: b}
	n := d.Len()
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
		rec, ok, err := s.r.set.Session(it.id)
		switch {
		case err != nil || !ok && s.r.control.Data().InLockDelay(s.r.partOf([]byte(it.id))):
			// A record lost with both copies is not a session that ended.
			e.Uint(renewRetry)
		case !ok || !rec.Attached || rec.Epoch != it.epoch:
			e.Uint(renewFenced)
		default:
			s.noteRenewal(it.id, now)
			e.Uint(renewOK)
		}
	}
	return e.B, nil
}

// sweepRecords runs on session owners: a session still attached whose
// home has not renewed it for the home lease is detached, so that its
// timeout starts. A record this node has just taken over counts as
// renewed now: its home gets a full lease to find the new owner.
func (s *sessions) sweepRecords() {
	now := time.Now()
	for _, rec := range s.r.set.Sessions() {
		if !rec.Attached {
			continue
		}
		last, ok := s.lastRenewal(rec.ID)
		if !ok {
			s.noteRenewal(rec.ID, now)
		}
		if ok && now.Sub(last) > s.homeLease+time.Second {
			s.r.log.Info("detaching a session whose home stopped renewing it", "session", rec.ID, "home", rec.Home)
			s.r.set.Detach(rec.ID, rec.Epoch)
		}
	}
	// Forget renewals of records long gone from here.
	s.renewed.forget(now.Add(-10 * s.homeLease))
}

// recordEpoch is the epoch of the partition that holds session id's record.
func (s *sessions) recordEpoch(id string) uint64 {
	return s.r.control.State().Part(s.r.partOf([]byte(id))).Epoch
}

func (s *sessions) noteRenewal(id string, at time.Time) {
	s.renewed.note(id, s.recordEpoch(id), at)
}

// lastRenewal is when the record's home last renewed it with this node,
// if it did since the record's partition last changed hands.
func (s *sessions) lastRenewal(id string) (time.Time, bool) {
	return s.renewed.last(id, s.recordEpoch(id))
}

// expired runs when a session expires on its session owner: every owner
// releases the session's locks. It does not hold up the caller, the
// deadline timer of the partitions; sweepLocks catches any it misses.
func (s *sessions) expired(id string) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, 2*routeTimeout)
		defer cancel()
		if err := s.r.releaseEverywhere(ctx, id); err != nil {
			s.r.log.Warn("releasing an expired session's locks failed; the sweep will retry", "session", id, "err", err)
		}
	}()
}

// Alive statuses.
const (
	aliveYes     = 0
	aliveNo      = 1 // the session owner serves the partition and has no record: expired
	aliveUnknown = 2
)

// sweepLocks runs on lock owners: for every session holding or awaiting a
// lock here, ask its session owner whether it still exists, and release
// the locks of sessions that have ended. It is the backstop for a missed
// expiry release.
func (s *sessions) sweepLocks() {
	holders := s.r.set.Holders()
	if len(holders) == 0 {
		return
	}
	st := s.r.control.State()
	byNode := make(map[string][]string)
	for id := range holders {
		owner := st.Part(s.r.partOf([]byte(id))).Owner
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
		ctx, cancel := context.WithTimeout(s.ctx, 2*time.Second)
		b, err := s.r.invoke(ctx, n, mAlive, e.B)
		cancel()
		if err != nil {
			continue
		}
		d := peer.Dec{B: b}
		for _, id := range ids {
			if d.Uint() == aliveNo {
				s.r.log.Info("releasing the locks of an ended session", "session", id)
				s.r.set.ReleaseSessionIn(id, holders[id])
				s.mu.Lock()
				delete(s.floors, id)
				s.mu.Unlock()
			}
		}
	}
}

// hAlive runs on session owners.
func (s *sessions) hAlive(_ context.Context, b []byte) ([]byte, error) {
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
		_, ok, err := s.r.set.Session(id)
		switch {
		case err != nil || !ok && s.r.control.Data().InLockDelay(s.r.partOf([]byte(id))):
			e.Uint(aliveUnknown)
		case ok:
			e.Uint(aliveYes)
		default:
			e.Uint(aliveNo)
		}
	}
	return e.B, nil
}
