package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/elock/elock/node"
	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/peer"
	"github.com/elock/elock/replication"
)

// Sessions span the mesh. A session's record lives on the owner of the
// partition its id hashes to (its session owner, sessionowner.go),
// replicated like a lock. Its locks live on the owners of their names.
// Its home is the node whose connection speaks for it; homeSessions is
// the home's side:
//
//   - The home renews its sessions with their session owners; a session
//     owner that stops hearing renewals for a session (its home died, or is
//     cut off) detaches it, and its timeout starts.
//   - A home that cannot renew a session for long (see atRisk) closes the
//     client's connection well before its session could expire, so the
//     client learns that it is at risk and resumes elsewhere.
//   - A resume on a new home (conn_id) waits until the old home confirms
//     the connection is gone or its renewals have stopped for the lease,
//     bumps the session's epoch, and tells every lock owner the new epoch,
//     so that a request still on its way from the old home is refused.
type homeSessions struct {
	self      replication.Incarnation
	rt        *router
	table     Table
	call      Caller
	clients   Clients
	homeLease time.Duration
	log       *slog.Logger

	mu       sync.Mutex // guards attached and what it points to
	attached map[string]*homeSession
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

func newHomeSessions(self replication.Incarnation, rt *router, clients Clients, homeLease time.Duration, log *slog.Logger) *homeSessions {
	return &homeSessions{self: self, rt: rt, table: rt.table, call: rt.call, clients: clients, homeLease: homeLease, log: log,
		attached: make(map[string]*homeSession)}
}

func (s *homeSessions) register(r *peer.Registry, w *workers) error {
	return errors.Join(
		r.Handle(peer.Probe, w.blocking(s.probe)),
		r.Handle(peer.Labels, s.labels),
	)
}

// setTimeout records a session's new timeout.
func (s *homeSessions) setTimeout(id string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.attached[id]; h != nil {
		h.timeout = d
	}
}

// current reports whether ref is still the session's attachment here.
func (s *homeSessions) current(ref node.SessionRef) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.attached[ref.ID]
	return h != nil && h.epoch == ref.Epoch
}

func (s *homeSessions) held(id, name string, holds bool) {
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

func (s *homeSessions) holds(id, name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.attached[id]
	if h == nil {
		return false
	}
	_, ok := h.held[name]
	return ok
}

// names lists the names the home knows session id holds.
func (s *homeSessions) names(id string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.attached[id]
	if h == nil {
		return nil
	}
	out := make([]string, 0, len(h.held))
	for n := range h.held {
		out = append(out, n)
	}
	return out
}

func (s *homeSessions) forgetHeld(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.attached[id]; h != nil {
		clear(h.held)
	}
}

func (s *homeSessions) count(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.attached[id]; h != nil {
		return len(h.held)
	}
	return 0
}

// homeName is how a session record names its home: node id and nonce, so
// that a restarted node is not mistaken for the home it replaced.
func homeName(inc replication.Incarnation) string { return inc.ID + "/" + inc.Nonce }

// attach binds session id to a connection of this node (conn_id, or a
// connection's first command).
func (s *homeSessions) attach(ctx context.Context, id string) (locktable.Attachment, error) {
	var e peer.Enc
	e.Str(id)
	e.Str(homeName(s.self))
	s.mu.Lock()
	_, here := s.attached[id]
	s.mu.Unlock()
	// If the session owner says the session is attached to this very node
	// but no connection here has it, an earlier attach's reply was lost:
	// take it over.
	e.Bool(!here)
	sent := time.Now()
	b, err := s.rt.route(ctx, s.rt.partOf([]byte(id)), peer.Attach, e.B, true)
	if err != nil {
		if failure.Is(err, failure.Attached) {
			return locktable.Attachment{}, locktable.ErrAttached
		}
		return locktable.Attachment{}, err
	}
	d := peer.Dec{B: b}
	a := locktable.Attachment{Epoch: d.Uint(), Born: d.Uint(), Resumed: d.Bool(), Timeout: time.Duration(d.Int())}
	if err := d.End(); err != nil {
		return a, err
	}
	// The session owner attached the session when it answered, and
	// detaches it a home lease after the last renewal it hears: renew it
	// from now on, not from when this attach returns. Listing a resumed
	// session's locks can outlast the lease (an owner that does not
	// answer is asked again until routeTimeout), and a record detached
	// meanwhile would expire under a client told that it had resumed.
	h := &homeSession{epoch: a.Epoch, timeout: a.Timeout, lastOK: sent, held: make(map[string]struct{})}
	s.mu.Lock()
	s.attached[id] = h
	s.mu.Unlock()
	if !a.Resumed {
		return a, nil
	}
	// Learn the session's locks, and fence its older homes everywhere.
	names, err := s.heldEverywhere(ctx, id, a.Born, a.Epoch)
	if err != nil {
		s.log.Warn("could not list a resumed session's locks", "session", node.LogID(id), "err", err)
	}
	s.mu.Lock()
	stale := time.Since(h.lastOK) > s.homeLease
	s.mu.Unlock()
	if stale {
		// No renewal has got through for a home lease (the attach itself
		// may have waited for a new session owner, or the owner is cut
		// off): the session owner may have detached the session. Ask it.
		s.confirm(ctx, id, h)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.attached[id] != h:
		// A renewal was fenced: the session was taken over or ended.
		return locktable.Attachment{}, errResumeLost
	case time.Since(h.lastOK) > s.homeLease:
		delete(s.attached, id)
		return locktable.Attachment{}, errResumeUnrenewed
	}
	for _, n := range names {
		h.held[n] = struct{}{}
	}
	return a, nil
}

var (
	errResumeLost      = failure.Retry(failure.SessionMoved, "the session was taken over or ended while it resumed here; retry")
	errResumeUnrenewed = failure.Retry(failure.Unavailable, "the session's owner did not answer while it resumed here; retry")
)

// confirm renews one session with its session owner, following its
// partition for up to a home lease, and applies the answer as renewAll
// does.
func (s *homeSessions) confirm(ctx context.Context, id string, h *homeSession) {
	cctx, cancel := context.WithTimeout(ctx, s.homeLease)
	defer cancel()
	for cctx.Err() == nil {
		var e peer.Enc
		e.Uint(1)
		e.Str(id)
		e.Uint(h.epoch)
		sent := time.Now()
		b, err := s.rt.route(cctx, s.rt.partOf([]byte(id)), peer.Renew, e.B, true)
		if err != nil {
			return
		}
		d := peer.Dec{B: b}
		switch d.Uint() {
		case renewOK:
			s.renewed(id, h.epoch, sent)
			return
		case renewFenced:
			s.lose(id, h.epoch, "session taken over or ended elsewhere")
			return
		}
		// renewRetry: the owner cannot serve the partition yet.
		select {
		case <-cctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// renewed notes a renewal of session id at epoch, sent at sent, that its
// session owner accepted.
func (s *homeSessions) renewed(id string, epoch uint64, sent time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.attached[id]; h != nil && h.epoch == epoch && sent.After(h.lastOK) {
		h.lastOK = sent
	}
}

// heldEverywhere asks the owner of every partition for the locks session
// id holds there, and fences its older homes. It follows partitions that
// are changing hands, so a resume during a takeover still finds every
// lock: one request per owner node, then the partitions it did not serve
// again, until routeTimeout.
func (s *homeSessions) heldEverywhere(ctx context.Context, id string, born, epoch uint64) ([]string, error) {
	left := make([]int, s.rt.parts)
	for i := range left {
		left[i] = i
	}
	var names []string
	deadline := time.Now().Add(routeTimeout)
	for len(left) > 0 {
		st := s.table.State()
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
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				b, err := callNode(cctx, s.call, n, peer.Held, heldPayload(id, born, epoch, ps))
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
		waitNewer(wctx, s.table, st.Index)
		cancel()
	}
	return names, nil
}

// detach ends this node's attachment of a session: its connection closed.
func (s *homeSessions) detach(ctx context.Context, ref node.SessionRef) error {
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
	_, err := s.rt.route(ctx, s.rt.partOf([]byte(ref.ID)), peer.Detach, e.B, true)
	return err
}

// probe answers a session owner: is this session attached here, at that
// epoch, to a connection whose client has not hung up?
func (s *homeSessions) probe(_ context.Context, b []byte) ([]byte, error) {
	d := peer.Dec{B: b}
	id, epoch := d.Str(), d.Uint()
	if err := d.End(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	h := s.attached[id]
	s.mu.Unlock()
	return encodeBool(h != nil && h.epoch == epoch && s.clients.Live(id)), nil
}

// Renewal statuses, one per session in a session owner's answer.
const (
	renewOK     = 0
	renewFenced = 1 // the session is no longer attached here at that epoch
	renewRetry  = 2 // the session owner cannot serve its partition now
)

// renewAll renews every session attached here with its session owner,
// one request per session owner node, and closes the connection of any
// session it could not renew for the home lease.
func (s *homeSessions) renewAll(ctx context.Context) {
	type item struct {
		id    string
		epoch uint64
	}
	st := s.table.State()
	byNode := make(map[string][]item)
	s.mu.Lock()
	for id, h := range s.attached {
		owner := st.Part(s.rt.partOf([]byte(id))).Owner
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
			cctx, cancel := context.WithTimeout(ctx, s.homeLease/2)
			defer cancel()
			b, err := callNode(cctx, s.call, n, peer.Renew, e.B)
			if err != nil {
				return
			}
			d := peer.Dec{B: b}
			for _, it := range items {
				switch d.Uint() {
				case renewOK:
					s.renewed(it.id, it.epoch, sent)
				case renewFenced:
					s.lose(it.id, it.epoch, "session taken over or ended elsewhere")
				}
			}
		}()
	}
	wg.Wait()
	var late []string
	risk := make(map[string]bool)
	s.mu.Lock()
	for id, h := range s.attached {
		since := time.Since(h.lastOK)
		if since > h.atRisk(s.homeLease) {
			late = append(late, id)
		}
		risk[id] = since > s.homeLease/2
	}
	s.mu.Unlock()
	for id, r := range risk {
		// Half a home lease without a renewal: the session owner may
		// detach the session at a home lease, and its locks then live
		// only its timeout.
		s.clients.Jeopardy(id, r)
	}
	for _, id := range late {
		s.log.Warn("closing a client whose session could not be renewed: it may expire; the client should resume", "session", node.LogID(id))
		s.clients.Kick(id)
	}
}

// lose forgets a session that this node no longer speaks for and closes
// its client's connection.
func (s *homeSessions) lose(id string, epoch uint64, why string) {
	s.mu.Lock()
	h := s.attached[id]
	if h == nil || h.epoch != epoch {
		s.mu.Unlock()
		return
	}
	delete(s.attached, id)
	s.mu.Unlock()
	s.log.Warn("session lost by this home", "session", node.LogID(id), "why", why)
	s.clients.Kick(id)
}
