package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/node/peer"
	"github.com/elock/elock/node/wire"
	"github.com/elock/elock/replication"
	"github.com/elock/elock/ring"
)

// routeTimeout bounds how long a command keeps looking for its
// partition's owner through a failover before it is refused as retryable:
// longer than a takeover (lease, margin, commit, replica copy).
const routeTimeout = 15 * time.Second

// Router is the Backend of a mesh node. Every command goes to the owner of
// its partition: a lock's name or a session's id hashes to one. The owner
// may be this node, in which case the call stays in the process. Across a
// failover a command is sent again to the new owner, which is safe because
// every command is idempotent for its session or told apart by the
// session's list of held locks kept here, its home.
type Router struct {
	self    replication.Incarnation
	control *replication.Control
	set     *partition.Set
	pool    *peer.Pool
	ring    *ring.Ring
	log     *slog.Logger
	// clients returns this node's count of connections with a session.
	clients func() int

	handlers map[byte]handler
	sessions *sessions
	waits    *waitTable
	nextReq  atomic.Uint64
}

func newRouter(self replication.Incarnation, c *replication.Control, s *partition.Set, pool *peer.Pool, r *ring.Ring, homeLease time.Duration, log *slog.Logger) *Router {
	rt := &Router{self: self, control: c, set: s, pool: pool, ring: r, log: log, clients: func() int { return 0 }}
	rt.waits = &waitTable{m: make(map[string]*queued)}
	rt.sessions = newSessions(rt, homeLease)
	rt.handlers = rt.ownerHandlers()
	return rt
}

var _ Backend = (*Router)(nil)
var _ Topology = (*Router)(nil)

// Methods returns the peer methods the router serves.
func (r *Router) Methods() peer.Methods { return serve(r.handlers) }

// invoke runs method on node n: here, or over the peer connection.
func (r *Router) invoke(ctx context.Context, n replication.Node, method byte, payload []byte) ([]byte, error) {
	if n.ID == r.self.ID && n.Nonce == r.self.Nonce {
		return r.handlers[method](ctx, payload)
	}
	if n.PeerAddr == "" {
		return nil, fmt.Errorf("%w: node %s has no address", peer.ErrUnreachable, n.ID)
	}
	b, err := r.pool.Get(n.PeerAddr).Call(ctx, method, payload)
	if err != nil {
		return nil, err
	}
	return decodeReply(b)
}

// errIndeterminate is returned by route when the owner may have carried
// out a request whose reply was lost.
var errIndeterminate = errors.New("node: outcome unknown")

// route sends a request to the owner of partition p and returns its
// reply. It follows the partition through epoch changes: a refusal as
// "moved" or "retry", or an owner that cannot be reached, waits for a
// newer table and asks again, until ctx or routeTimeout ends. If the
// reply to a request that may have been carried out is lost, it asks
// again only when again is true; otherwise it returns errIndeterminate
// wrapped, and the caller decides.
func (r *Router) route(ctx context.Context, p int, method byte, payload []byte, again bool) ([]byte, error) {
	deadline := time.Now().Add(routeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	var last error
	// maybe: an earlier attempt may have been carried out; if none gets a
	// reply in time, the outcome of a change is unknown, not refused.
	maybe := false
	for {
		st := r.control.State()
		if st.Initialized() {
			part := st.Part(p)
			n, ok := st.Node(part.Owner)
			if ok && n.Nonce == part.ONonce {
				cctx, cancel := context.WithDeadline(ctx, deadline)
				out, err := r.callOwner(cctx, p, n, method, payload)
				cancel()
				if err == nil {
					return out, nil
				}
				last = err
				var we *wire.Error
				switch {
				case errors.Is(err, peer.ErrLost) && !again:
					return nil, fmt.Errorf("%w: %v", errIndeterminate, err)
				case errors.Is(err, peer.ErrLost):
					maybe = true
				case errors.Is(err, peer.ErrUnreachable):
				case errors.As(err, &we) && we.Retryable() && strings.Contains(we.Reason, "lock-delay"):
					// A lost partition refuses for minutes: say so at once.
					return nil, err
				case errors.As(err, &we) && we.Retryable():
				case errors.Is(ctx.Err(), context.Canceled):
					return nil, ctx.Err()
				case errors.Is(err, context.DeadlineExceeded):
					// The caller's deadline or route's own: answered below.
				default:
					return nil, err // a definite answer, or an unknown outcome (504)
				}
			} else {
				last = fmt.Errorf("partition %d has no reachable owner", p)
			}
		} else {
			last = errors.New("the partition table is not ready")
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			if maybe && !readOnly(method) {
				return nil, wire.Indeterminate("partition " + strconv.Itoa(p) + ": request abandoned (" + ctx.Err().Error() + ") after it may have been carried out; outcome unknown")
			}
			return nil, ctx.Err()
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			if maybe && !readOnly(method) {
				return nil, wire.Indeterminate("partition " + strconv.Itoa(p) + " did not answer in time (" + reason(last) + "); outcome unknown")
			}
			return nil, wire.Retry("partition " + strconv.Itoa(p) + " unavailable (" + reason(last) + ")")
		}
		// Wait for a newer table, but not long: a node that was merely slow
		// may answer on the next try with the same table.
		wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		r.control.WaitNewer(wctx, st.Index)
		cancel()
	}
}

// moveCheck is how long a request waits for its owner's reply before it
// also watches the table for the partition moving to another owner.
const moveCheck = 500 * time.Millisecond

// errOwnerMoved abandons a request to an owner the table has replaced.
var errOwnerMoved = errors.New("the partition moved to another owner")

// callOwner invokes method on n, the owner of partition p. A request that
// is slow to answer is abandoned once the table gives the partition to
// another owner (a paused or cut-off owner never answers), so that route
// asks the new owner, which holds everything the old one confirmed. The
// abandoned request fails with peer.ErrLost: it may have been carried out.
func (r *Router) callOwner(ctx context.Context, p int, n replication.Node, method byte, payload []byte) ([]byte, error) {
	if n.ID == r.self.ID && n.Nonce == r.self.Nonce {
		return r.invoke(ctx, n, method, payload)
	}
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watch := time.AfterFunc(moveCheck, func() {
		for {
			ch := r.control.Changed()
			if cur := r.control.State().Part(p); cur.Owner != n.ID || cur.ONonce != n.Nonce {
				cancel(errOwnerMoved)
				return
			}
			select {
			case <-ch:
			case <-cctx.Done():
				return
			}
		}
	})
	defer watch.Stop()
	out, err := r.invoke(cctx, n, method, payload)
	if err != nil && context.Cause(cctx) == errOwnerMoved {
		err = fmt.Errorf("%w: %w", err, errOwnerMoved)
	}
	return out, err
}

// readOnly reports whether a method changes nothing at the owner.
func readOnly(method byte) bool { return method == mToken || method == mInfo }

func reason(err error) string {
	var we *wire.Error
	if errors.As(err, &we) {
		return we.Reason
	}
	if err == nil {
		return "unknown"
	}
	return err.Error()
}

func (r *Router) partOf(key []byte) int { return r.set.PartitionOf(key) }

// Attach implements Backend: the session's owner records it; if the
// session is attached to another home, it is taken over once that home
// confirms the session's connection is gone or its renewals stop.
func (r *Router) Attach(ctx context.Context, id string) (locktable.Attachment, error) {
	return r.sessions.attach(ctx, id)
}

// Detach implements Backend.
func (r *Router) Detach(ctx context.Context, s SessionRef) error {
	return r.sessions.detach(ctx, s)
}

// SetTimeout implements Backend.
func (r *Router) SetTimeout(ctx context.Context, s SessionRef, d time.Duration) error {
	var e peer.Enc
	e.Str(s.ID)
	e.Int(int64(d))
	_, err := r.route(ctx, r.partOf([]byte(s.ID)), mSetTimeout, e.B, true)
	if err == nil {
		r.sessions.setTimeout(s.ID, d)
	}
	return err
}

func lockPayload(s SessionRef, name []byte, wait time.Duration, req string) []byte {
	var e peer.Enc
	e.Str(s.ID)
	e.Uint(s.Epoch)
	e.Bytes(name)
	e.Int(int64(wait))
	e.Str(req)
	return e.B
}

func decodeResult(b []byte) (locktable.Result, error) {
	d := peer.Dec{B: b}
	res := locktable.Result{Status: locktable.Status(d.Uint()), Token: d.Uint(), Reentrant: d.Bool()}
	return res, d.End()
}

// Lock implements Backend. A lock without a wait is one round trip to the
// owner; it is safe to send again after a lost reply, because a lock the
// session already holds is granted again with the same token. A waiting
// lock returns at once as Queued and is carried by a goroutine that
// follows the partition to its new owner, minus the time already waited.
func (r *Router) Lock(ctx context.Context, s SessionRef, name []byte, wait time.Duration, done partition.Done) (locktable.Result, Wait, error) {
	if !r.sessions.current(s) {
		return locktable.Result{}, nil, errSessionMoved
	}
	if wait <= 0 {
		b, err := r.route(ctx, r.partOf(name), mLock, lockPayload(s, name, 0, ""), true)
		if err != nil {
			return locktable.Result{}, nil, err
		}
		res, err := decodeResult(b)
		if err == nil && res.Status == locktable.Granted {
			r.sessions.held(s.ID, string(name), true)
		}
		return res, nil, err
	}
	w := &meshWait{r: r, ctx: ctx, s: s, name: string(name), done: done, deadline: time.Now().Add(wait)}
	go w.run()
	return locktable.Result{Status: locktable.Queued}, w, nil
}

var errSessionMoved = wire.Retry("this session was resumed on another connection")

// Unlock implements Backend. If the reply is lost and the new owner says
// the lock is free or another's, the first request was carried out: the
// home knows the session held it.
func (r *Router) Unlock(ctx context.Context, s SessionRef, name []byte) (locktable.Result, error) {
	if !r.sessions.current(s) {
		return locktable.Result{}, errSessionMoved
	}
	payload := lockPayload(s, name, 0, "")
	b, err := r.route(ctx, r.partOf(name), mUnlock, payload, false)
	if errors.Is(err, errIndeterminate) {
		b, err = r.route(ctx, r.partOf(name), mUnlock, payload, true)
		if err == nil {
			if res, derr := decodeResult(b); derr == nil && res.Status != locktable.Unlocked && r.sessions.holds(s.ID, string(name)) {
				b, err = encodeResult(locktable.Result{Status: locktable.Unlocked}), nil
			}
		}
	}
	if err != nil {
		return locktable.Result{}, err
	}
	res, err := decodeResult(b)
	if err == nil && res.Status == locktable.Unlocked {
		r.sessions.held(s.ID, string(name), false)
	}
	return res, err
}

// Drop implements Backend. It asks again through a lost reply: taking
// back the same grant twice finds it gone the second time.
func (r *Router) Drop(ctx context.Context, s SessionRef, name []byte, token uint64) (locktable.Result, error) {
	var e peer.Enc
	e.Str(s.ID)
	e.Bytes(name)
	e.Uint(token)
	b, err := r.route(ctx, r.partOf(name), mDrop, e.B, true)
	if err != nil {
		return locktable.Result{}, err
	}
	res, err := decodeResult(b)
	if err == nil && res.Status == locktable.Unlocked {
		r.sessions.held(s.ID, string(name), false)
	}
	return res, err
}

// UnlockAll implements Backend: every owner releases the session's locks.
func (r *Router) UnlockAll(ctx context.Context, s SessionRef) error {
	if !r.sessions.current(s) {
		return errSessionMoved
	}
	if err := r.releaseEverywhere(ctx, s.ID); err != nil {
		return err
	}
	r.sessions.forgetHeld(s.ID)
	return nil
}

// releaseEverywhere asks the owner of every partition to release a
// session's locks, following partitions that move meanwhile.
func (r *Router) releaseEverywhere(ctx context.Context, id string) error {
	var e peer.Enc
	e.Str(id)
	parts := r.set.Partitions()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		released uint64
	)
	// One request per owner node would do; one per partition keeps the
	// following of moved partitions simple, and they run in parallel.
	sem := make(chan struct{}, 16)
	for p := range parts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var pe peer.Enc
			pe.Str(id)
			pe.Uint(uint64(p))
			b, err := r.route(ctx, p, mRelease, pe.B, true)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			d := peer.Dec{B: b}
			released += d.Uint()
		}()
	}
	wg.Wait()
	// A refusal says nothing happened: not so once some locks were let go.
	var we *wire.Error
	if firstErr != nil && released > 0 && !(errors.As(firstErr, &we) && we.Indeterminate()) {
		return wire.Indeterminate(fmt.Sprintf("released %d lock(s), but not in every partition (%s); outcome unknown, send it again", released, reason(firstErr)))
	}
	return firstErr
}

// Token implements Backend.
func (r *Router) Token(ctx context.Context, s SessionRef, name []byte) (uint64, locktable.Status, error) {
	b, err := r.route(ctx, r.partOf(name), mToken, lockPayload(s, name, 0, ""), true)
	if err != nil {
		return 0, 0, err
	}
	res, err := decodeResult(b)
	return res.Token, res.Status, err
}

// Info implements Backend.
func (r *Router) Info(ctx context.Context, s SessionRef, name []byte) (locktable.Info, error) {
	b, err := r.route(ctx, r.partOf(name), mInfo, lockPayload(s, name, 0, ""), true)
	if err != nil {
		return locktable.Info{}, err
	}
	d := peer.Dec{B: b}
	in := locktable.Info{Held: d.Bool(), Mine: d.Bool(), Token: d.Uint(), HeldFor: time.Duration(d.Int()), Waiters: int(d.Uint())}
	return in, d.End()
}

// HeldBy implements Backend, from the locks the home knows the session
// holds (rebuilt from the owners when the session is resumed here).
func (r *Router) HeldBy(_ context.Context, s SessionRef) (int, error) {
	return r.sessions.count(s.ID), nil
}

// Stats implements Backend: clients and locks of the whole cluster, the
// sum of every live node's own figures.
func (r *Router) Stats(ctx context.Context, localClients int) (Stats, error) {
	st := r.control.State()
	var (
		mu  sync.Mutex
		sum Stats
		wg  sync.WaitGroup
	)
	for _, n := range st.Nodes {
		if n.Leaving && n.ID != r.self.ID {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			b, err := r.invoke(cctx, n, mStats, nil)
			if err != nil {
				return
			}
			d := peer.Dec{B: b}
			c, l, w, s, g := d.Uint(), d.Uint(), d.Uint(), d.Uint(), d.Uint()
			if d.End() != nil {
				return
			}
			mu.Lock()
			sum.Clients += int(c)
			sum.Locks += int(l)
			sum.Waiters += int(w)
			sum.Sessions += int(s)
			sum.Grants += g
			mu.Unlock()
		}()
	}
	wg.Wait()
	owned, replicated, unsynced := r.control.Data().Roles()
	ready := 0
	if r.Ready() {
		ready = 1
	}
	sum.Extra = []StatLine{
		{"node_id", r.self.ID},
		{"node_ready", strconv.Itoa(ready)},
		{"cluster_index", strconv.FormatUint(st.Index, 10)},
		{"cluster_leader", orDash(r.control.Leader())},
		{"node_partitions_owned", strconv.Itoa(owned)},
		{"node_partitions_replicated", strconv.Itoa(replicated)},
		{"node_partitions_unsynced", strconv.Itoa(unsynced)},
		{"node_lease", strconv.FormatBool(r.control.LeaseValid())},
	}
	return sum, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Ready reports whether this node has a partition table, every partition
// a live owner, and every partition this node owns can serve.
func (r *Router) Ready() bool {
	st := r.control.State()
	if !st.Initialized() || !r.control.LeaseValid() {
		return false
	}
	// Every owner must be a live member, at the incarnation the table
	// names: a dead owner's partitions are not served until taken over.
	live := map[string]string{}
	for _, m := range r.ring.Members() {
		if m.State == ring.Alive {
			live[m.ID] = m.Nonce
		}
	}
	for _, p := range st.Parts {
		if nonce, ok := live[p.Owner]; !ok || nonce != p.ONonce {
			return false
		}
	}
	return r.control.Data().Serving() && r.control.Data().Reconciled() >= st.Index
}

// Members implements Topology.
func (r *Router) Members(context.Context) ([]Member, error) {
	var out []Member
	for _, m := range r.ring.Members() {
		out = append(out, Member{ID: m.ID, Addr: m.ClientAddr, State: m.State.String(), Voter: m.Voter})
	}
	return out, nil
}

// Where implements Topology.
func (r *Router) Where(_ context.Context, name []byte) (Placement, error) {
	p := r.partOf(name)
	part := r.control.State().Part(p)
	pl := Placement{Partition: p, Owner: orDash(part.Owner), Replica: orDash(part.Replica), Epoch: part.Epoch}
	return pl, nil
}
