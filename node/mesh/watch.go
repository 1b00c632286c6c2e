// Watches in a mesh: a home registers each of its connections' watches
// at the owner of the name's partition, and renews them all, in one
// message per owner, every watchRenew. The owner tells the home of every
// confirmed change (Event), and forgets a watch that is not renewed, so
// a lost home or a dropped peer connection leaves nothing behind. After a
// takeover the renewal reaches the new owner, which registers the watch
// afresh and tells its current state.

package mesh

import (
	"context"
	"sync"
	"time"

	"github.com/elock/elock/node"
	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/node/peer"
)

const (
	// watchRenew is how often a home renews its watches; an owner forgets
	// one not renewed for watchExpiry.
	watchRenew  = time.Second
	watchExpiry = 5 * watchRenew
	// watchBatch bounds the watches of one renewal message.
	watchBatch = 256
	// seqBits: an event's order is its ownership's epoch, then the
	// owner's sequence: a new owner's events come after an old one's.
	seqBits = 40
)

// homeWatch is one watch of a connection of this home.
type homeWatch struct {
	id      string
	name    string
	session string // whose grant the owner tells (Mine); "" for none
	fn      func(partition.WatchEvent)
	// tell orders the Unsure events of the watch: renewals may overlap.
	tell sync.Mutex
	// Guarded by homeWatches.mu:
	// unsure: the last renewal did not reach an owner that serves the
	// name with a lease to spare, or it did but has not told the state
	// since (after a takeover, say: whether the grant survived is not
	// known until then).
	unsure bool
	// seen is the highest ownership epoch a state event came from.
	seen uint64
}

// homeWatches are the watches of this home's connections, by id.
type homeWatches struct {
	mu   sync.Mutex
	byID map[string]*homeWatch
	// fresh are the sessions' watches not registered yet: kick wakes
	// registerFresh for them (nil: the next renewal registers them).
	fresh []*homeWatch
	kick  chan struct{}
}

// Watch implements node.Watcher: registered at the owner, and renewed
// from then on. A connection's own watch is registered before Watch
// returns; a session's is registered by registerFresh, so that neither a
// grant's reply nor "events on" waits for owners. A session's watch is
// also told when the name's state cannot be confirmed (WatchEvent.Unsure):
// its owner did not answer a renewal, does not own the name, is short of
// lease, or has not told the state since it took the name over.
func (h *home) Watch(name []byte, session string, fn func(partition.WatchEvent)) (func(), error) {
	w := &homeWatch{id: h.newReq(), name: string(name), session: session, fn: fn}
	h.watches.mu.Lock()
	if h.watches.byID == nil {
		h.watches.byID = make(map[string]*homeWatch)
	}
	h.watches.byID[w.id] = w
	if session != "" {
		h.watches.fresh = append(h.watches.fresh, w)
	}
	kick := h.watches.kick
	h.watches.mu.Unlock()
	if session != "" {
		select {
		case kick <- struct{}{}:
		default:
		}
	} else {
		ctx, cancel := context.WithTimeout(h.work.ctx, 2*watchRenew)
		h.renew(ctx, []*homeWatch{w})
		cancel()
	}
	return func() {
		h.watches.mu.Lock()
		delete(h.watches.byID, w.id)
		h.watches.mu.Unlock()
	}, nil
}

// HeldNames implements node.Watcher, from the names the home knows the
// session holds.
func (h *home) HeldNames(s node.SessionRef) []string { return h.sessions.names(s.ID) }

// registerFresh registers the sessions' new watches as they come, in
// batches, until ctx ends.
func (h *home) registerFresh(ctx context.Context, kick <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		}
		h.watches.mu.Lock()
		ws := h.watches.fresh
		h.watches.fresh = nil
		h.watches.mu.Unlock()
		rctx, cancel := context.WithTimeout(ctx, 2*watchRenew)
		h.renew(rctx, ws)
		cancel()
	}
}

// renewWatches renews every watch of this home at its owner, each call
// bounded: an owner that does not answer (paused, cut off) must neither
// hold back the renewals of the others nor leave its watches' sessions
// out of jeopardy.
func (h *home) renewWatches(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*watchRenew)
	defer cancel()
	h.watches.mu.Lock()
	ws := make([]*homeWatch, 0, len(h.watches.byID))
	for _, w := range h.watches.byID {
		ws = append(ws, w)
	}
	h.watches.fresh = nil // all of them are renewed here
	h.watches.mu.Unlock()
	h.renew(ctx, ws)
}

// renew registers or renews ws at their owners, one message per owner
// and batch, in parallel, and waits for the answers.
func (h *home) renew(ctx context.Context, ws []*homeWatch) {
	st := h.table.State()
	if !st.Initialized() {
		return
	}
	type entry struct {
		w     *homeWatch
		epoch uint64
	}
	byNode := make(map[string][]entry)
	for _, w := range ws {
		part := st.Part(h.rt.partOf([]byte(w.name)))
		byNode[part.Owner] = append(byNode[part.Owner], entry{w, part.Epoch})
	}
	// An unsure watch that has no state from this epoch asks the owner
	// to tell it again: the push that told it may have been lost.
	again := make(map[*homeWatch]bool)
	h.watches.mu.Lock()
	for _, es := range byNode {
		for _, x := range es {
			again[x.w] = x.w.unsure && x.w.seen < x.epoch
		}
	}
	h.watches.mu.Unlock()
	var wg sync.WaitGroup
	for id, es := range byNode {
		n, ok := st.Node(id)
		if !ok {
			for _, x := range es {
				h.confirmed(x.w, x.epoch, false)
			}
			continue
		}
		for len(es) > 0 {
			batch := es[:min(len(es), watchBatch)]
			es = es[len(batch):]
			var e peer.Enc
			e.Str(h.self.ID)
			e.Uint(uint64(len(batch)))
			for _, x := range batch {
				e.Str(x.w.id)
				e.Str(x.w.name)
				e.Uint(x.epoch)
				e.Str(x.w.session)
				e.Bool(again[x.w])
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				// A refusal or a lost call is tried again at the next
				// renewal, at whichever owner the table then names.
				b, err := callNode(ctx, h.call, n, peer.Watch, e.B)
				d := peer.Dec{B: b}
				leased := err == nil && d.Bool()
				for _, x := range batch {
					h.confirmed(x.w, x.epoch, leased && d.Bool())
				}
			}()
		}
	}
	wg.Wait()
}

// confirmed records whether w's owner at epoch took its renewal with a
// lease to spare, and tells a session's watch whether it is unsure. A
// watch that was unsure turns sure only once a state from that epoch has
// come. Told at every renewal (the session skips repeats), so that a
// tell overtaken by another is made good within a renewal.
func (h *home) confirmed(w *homeWatch, epoch uint64, ok bool) {
	if w.session == "" {
		return
	}
	w.tell.Lock()
	defer w.tell.Unlock()
	h.watches.mu.Lock()
	live := h.watches.byID[w.id] == w
	w.unsure = !ok || w.unsure && w.seen < epoch
	unsure := w.unsure
	h.watches.mu.Unlock()
	if live {
		w.fn(partition.WatchEvent{Name: w.name, Unsure: unsure})
	}
}

// event takes an owner's event for one of this home's watches.
func (h *home) event(_ context.Context, _ peer.Method, b []byte, reply func([]byte, error)) {
	d := peer.Dec{B: b}
	id, epoch, seq, last, mine := d.Str(), d.Uint(), d.Uint(), d.Uint(), d.Uint()
	st := decodeState(&d)
	if err := d.End(); err != nil || seq == 0 || seq >= 1<<seqBits {
		reply(nil, peer.ErrMalformed)
		return
	}
	h.watches.mu.Lock()
	w := h.watches.byID[id]
	if w != nil {
		w.seen = max(w.seen, epoch)
	}
	h.watches.mu.Unlock()
	if w != nil {
		w.fn(partition.WatchEvent{Name: w.name, State: st, Last: last, Seq: epoch<<seqBits | seq, Mine: mine})
	}
	reply(nil, nil)
}

func encodeState(e *peer.Enc, st locktable.NameState) {
	e.Bool(st.Free)
	e.Uint(uint64(st.Mode))
	e.Uint(st.Token)
	e.Str(st.Value)
	e.Uint(uint64(st.Holders))
	e.Uint(uint64(st.Waiters))
}

func decodeState(d *peer.Dec) locktable.NameState {
	st := locktable.NameState{Free: d.Bool(), Mode: locktable.Mode(min(d.Uint(), uint64(locktable.Permit))), Token: d.Uint(), Value: d.Str()}
	st.Holders, st.Waiters = int(min(d.Uint(), 1<<31)), int(min(d.Uint(), 1<<31))
	return st
}

// ownerWatch is a home's watch registered here.
type ownerWatch struct {
	stop    func()
	p       int
	epoch   uint64
	renewed time.Time
}

// ownerWatches are the watches homes registered at this owner, by id.
type ownerWatches struct {
	mu   sync.Mutex
	byID map[string]*ownerWatch
	ctx  context.Context // ends with the mesh; bounds the events' calls
}

// watch registers or renews a home's watches of names whose partitions
// this node owns at the epoch the home names. The answer tells whether
// this node's lease has time to spare, then whether each watch is
// registered here.
func (o *lockOwner) watch(_ context.Context, b []byte) ([]byte, error) {
	d := peer.Dec{B: b}
	home := d.Str()
	n := d.Count(5)
	type entry struct {
		id, name string
		epoch    uint64
		session  string
		again    bool
	}
	es := make([]entry, 0, n)
	for range n {
		es = append(es, entry{d.Str(), d.Str(), d.Uint(), d.Str(), d.Bool()})
	}
	if err := d.End(); err != nil {
		return nil, err
	}
	var out peer.Enc
	out.Bool(o.leaseLow == nil || !o.leaseLow())
	now := time.Now()
	for _, x := range es {
		out.Bool(o.registerWatch(home, x.id, x.name, x.session, x.epoch, x.again, now))
	}
	return out.B, nil
}

// registerWatch registers or renews one watch, and reports whether it is
// registered here. Registered again (again), it tells the state again.
func (o *lockOwner) registerWatch(home, id, name, session string, epoch uint64, again bool, now time.Time) bool {
	if name == "" || len(name) > o.lim.maxName {
		return false
	}
	p := o.set.PartitionOf([]byte(name))
	if _, ok := o.owned(p); !ok {
		return false // not this node's now: the home asks the owner its table names
	}
	o.watchers.mu.Lock()
	if w := o.watchers.byID[id]; w != nil && w.epoch == epoch && !again {
		w.renewed = now
		o.watchers.mu.Unlock()
		return true
	}
	o.watchers.mu.Unlock()
	stop, err := o.set.Watch([]byte(name), session, func(ev partition.WatchEvent) { o.push(home, id, epoch, ev) })
	if err != nil {
		return false
	}
	o.watchers.mu.Lock()
	if o.watchers.byID == nil {
		o.watchers.byID = make(map[string]*ownerWatch)
	}
	if old := o.watchers.byID[id]; old != nil {
		old.stop()
	}
	o.watchers.byID[id] = &ownerWatch{stop: stop, p: p, epoch: epoch, renewed: now}
	o.watchers.mu.Unlock()
	return true
}

// push sends an event to the home that watches. Fire and forget: a lost
// event is made good by the next one, or by the state a new owner tells.
func (o *lockOwner) push(homeID, id string, epoch uint64, ev partition.WatchEvent) {
	n, ok := o.table.State().Node(homeID)
	o.watchers.mu.Lock()
	ctx := o.watchers.ctx
	o.watchers.mu.Unlock()
	if !ok || ctx == nil || ctx.Err() != nil {
		return
	}
	var e peer.Enc
	e.Str(id)
	e.Uint(epoch)
	e.Uint(ev.Seq % (1 << seqBits))
	e.Uint(ev.Last)
	e.Uint(ev.Mine)
	encodeState(&e, ev.State)
	o.call.Start(ctx, n, peer.Event, e.B, func([]byte, error) {})
}

// expireWatches forgets the watches not renewed in time, and those of
// partitions this node no longer owns.
func (o *lockOwner) expireWatches(context.Context) {
	o.watchers.mu.Lock()
	var stops []func()
	for id, w := range o.watchers.byID {
		if _, owned := o.owned(w.p); time.Since(w.renewed) > watchExpiry || !owned {
			stops = append(stops, w.stop)
			delete(o.watchers.byID, id)
		}
	}
	o.watchers.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
}
