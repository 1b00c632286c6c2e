package replication

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/peer"
)

// The owner's side of the data stream: every partition this node owns
// sends its changes to its replica over one link per replica node.

// linkTo returns the link to a replica node, starting it if needed.
func (d *Data) linkTo(id string) *link {
	d.mu.Lock()
	defer d.mu.Unlock()
	if lk := d.links[id]; lk != nil {
		return lk
	}
	lk := &link{d: d, id: id, wake: make(chan struct{}, 1), inflight: make(chan struct{}, maxInflight), pending: make(map[int]bool)}
	d.links[id] = lk
	if !d.closed {
		d.wg.Add(1)
		go lk.run()
	}
	return lk
}

// addr returns a node's -peer address from the current table.
func (d *Data) addr(id string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n, ok := d.state.Node(id); ok {
		return n.PeerAddr
	}
	return ""
}

// link carries one owner node's changes to one replica node, for every
// partition it replicates there. Batches are pipelined: what is recorded
// goes out at once, up to maxInflight batches ahead of the replica's
// acknowledgements, in order on one connection, which the replica applies
// in order. What is recorded while the link is busy goes in one batch, so
// a busy link sends many operations per message and per syscall.
//
// (Sending a change from the goroutine that recorded it, when the link is
// idle, was tried and measured: it saves a wake-up when load is light but
// costs more than it saves under load, where it batches worse.)
type link struct {
	d        *Data
	id       string
	wake     chan struct{}
	inflight chan struct{} // a slot per batch in flight

	mu      sync.Mutex // guards pending and failed
	pending map[int]bool
	failed  error // set by a batch that failed; the loop backs off
}

// maxInflight bounds the batches a link sends ahead of acknowledgements.
const maxInflight = 8

// poke marks p as having something to send and wakes the loop.
func (lk *link) poke(p int) {
	lk.mu.Lock()
	lk.pending[p] = true
	lk.mu.Unlock()
	lk.wakeLoop()
}

func (lk *link) wakeLoop() {
	select {
	case lk.wake <- struct{}{}:
	default:
	}
}

func (lk *link) take() ([]int, error) {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	err := lk.failed
	lk.failed = nil
	ps := make([]int, 0, len(lk.pending))
	for p := range lk.pending {
		ps = append(ps, p)
	}
	clear(lk.pending)
	slices.Sort(ps)
	return ps, err
}

func (lk *link) fail(err error, ps []int) {
	lk.mu.Lock()
	if lk.failed == nil {
		lk.failed = err
	}
	for _, p := range ps {
		lk.pending[p] = true
	}
	lk.mu.Unlock()
	lk.wakeLoop()
}

func (lk *link) run() {
	defer lk.d.wg.Done()
	backoff := time.Duration(0)
	for {
		select {
		case <-lk.d.stop:
			return
		case <-lk.wake:
		}
		ps, failed := lk.take()
		if failed != nil {
			// Back off, then send every partition again in full.
			backoff = min(max(2*backoff, 50*time.Millisecond), time.Second)
			lk.d.log.Debug("replication link failed", "replica", lk.id, "err", failed, "backoff", backoff)
			select {
			case <-lk.d.stop:
				return
			case <-time.After(backoff):
			}
		} else if len(ps) > 0 {
			backoff = 0
		}
		if len(ps) > 0 {
			if err := lk.send(ps); err != nil {
				lk.fail(err, ps)
			}
		}
	}
}

// sent is one partition's part of a batch.
type sent struct {
	p     int
	epoch uint64
	to    uint64
}

// send ships, for each partition, a full copy if the replica lacks one,
// else the recorded changes; acknowledgements are taken in as they come.
func (lk *link) send(ps []int) error {
	d := lk.d
	batch, body, copies, changes := lk.collect(ps)
	// A failed copy must not cost the changes already taken out of other
	// partitions for this batch: they go out regardless, and the error
	// comes back after them (the caller backs off and tries the copies
	// again). Returning at once dropped those changes, and a partition
	// whose positions nothing would send again waited for its replica
	// forever: found by the fault suite as a hot lock refused for 30 s
	// after healing, its owner sealed again and again for a hand-over.
	var copyErr error
	for _, p := range copies {
		// One failed copy is enough for this round: a replica that does
		// not answer would cost a timeout per copy.
		if copyErr = lk.snapshot(p); copyErr != nil {
			break
		}
	}
	if len(batch) == 0 {
		return copyErr
	}
	select {
	case lk.inflight <- struct{}{}:
	case <-d.stop:
		return nil
	}
	if err := lk.ship(batch, body); err != nil {
		return err
	}
	if obs := d.cfg.ObserveBatch; obs != nil {
		obs(changes)
	}
	return copyErr
}

// collect takes out the recorded changes of the partitions ps that can go
// in one batch, encoded, and lists those that need a full copy first;
// changes counts the changes in the batch.
func (lk *link) collect(ps []int) (batch []sent, body []byte, copies []int, changes int) {
	d := lk.d
	var enc peer.Enc
	for _, p := range ps {
		l := d.parts[p]
		l.mu.Lock()
		if l.role != owner || l.link != lk || l.frozenAt == l.epoch {
			// A frozen epoch sends nothing: it never syncs its replica.
			// What it recorded without one (expiries, claims) waits for
			// the next epoch's full copy, which confirms it.
			l.mu.Unlock()
			continue
		}
		if !l.synced {
			l.mu.Unlock()
			copies = append(copies, p)
			continue
		}
		out := l.out
		l.out = nil
		epoch := l.epoch
		l.mu.Unlock()
		if len(out) == 0 {
			continue
		}
		enc.Uint(uint64(p))
		enc.Uint(epoch)
		enc.Uint(out[0].from)
		enc.Uint(out[len(out)-1].to)
		cnt := 0
		for _, en := range out {
			cnt += len(en.changes)
		}
		enc.Uint(uint64(cnt))
		changes += cnt
		for _, en := range out {
			for _, c := range en.changes {
				encodeChange(&enc, c)
			}
		}
		batch = append(batch, sent{p, epoch, out[len(out)-1].to})
	}
	return batch, enc.B, copies, changes
}

// ship queues one collected batch on the replica's connection. The caller
// holds an inflight slot, which the reply (or a failure) frees. On error
// the batch's partitions need full copies.
func (lk *link) ship(batch []sent, body []byte) error {
	d := lk.d
	e := peer.Enc{B: make([]byte, 0, 8+len(body))}
	e.Uint(uint64(len(batch)))
	e.B = append(e.B, body...)
	addr := d.addr(lk.id)
	if addr == "" {
		<-lk.inflight
		for _, b := range batch {
			lk.unsync(b.p)
		}
		return fmt.Errorf("replica %s has no address", lk.id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.AwaitTimeout)
	d.cfg.Pool.To(lk.id, addr).Go(ctx, peer.Replicate, e.B, func(reply []byte, err error) {
		cancel()
		<-lk.inflight
		var ps []int
		for _, b := range batch {
			ps = append(ps, b.p)
		}
		if err != nil {
			for _, b := range batch {
				lk.unsync(b.p)
			}
			lk.fail(err, ps)
			return
		}
		dec := peer.Dec{B: reply}
		for range dec.Len() {
			p, status := int(dec.Uint()), dec.Uint()
			for _, b := range batch {
				if b.p != p {
					continue
				}
				l := d.parts[p]
				var ready []confirm
				l.mu.Lock()
				if l.role == owner && l.epoch == b.epoch && l.link == lk {
					if status == repOK {
						ready = l.ack(b.to)
					} else {
						l.synced = false
					}
				}
				l.mu.Unlock()
				// The answers that waited for these changes go out from
				// here, the goroutine that read the acknowledgement.
				answerConfirms(ready)
				if status != repOK {
					lk.poke(p) // send a full copy
				}
			}
		}
		if err := dec.End(); err != nil {
			lk.fail(err, ps)
		}
	})
	return nil
}

// unsync marks p as needing a full copy again.
func (lk *link) unsync(p int) {
	l := lk.d.parts[p]
	l.mu.Lock()
	if l.link == lk {
		l.synced = false
	}
	l.mu.Unlock()
}

// snapshotChunk bounds one snapshot message, below peer.MaxFrame.
const snapshotChunk = 4 << 20

// snapshot sends a full copy of p, taken consistently with the positions
// recorded around it: every change up to the copy's position is in it.
func (lk *link) snapshot(p int) error {
	d := lk.d
	l := d.parts[p]
	var (
		data  []byte
		seq   uint64
		epoch uint64
		ok    bool
	)
	d.set.With(p, func(t *locktable.Table, now locktable.Time) *locktable.Table {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.role != owner || l.link != lk || l.frozenAt == l.epoch {
			return t
		}
		data, seq, epoch, ok = t.Snapshot(now), l.seq, l.epoch, true
		l.out = nil
		return t
	})
	if !ok {
		return nil
	}
	addr := d.addr(lk.id)
	if addr == "" {
		return fmt.Errorf("replica %s has no address", lk.id)
	}
	for off := 0; ; off += snapshotChunk {
		end := min(off+snapshotChunk, len(data))
		var e peer.Enc
		e.Uint(uint64(p))
		e.Uint(epoch)
		e.Uint(seq)
		e.Uint(uint64(off))
		e.Uint(uint64(len(data)))
		e.Bytes(data[off:end])
		ctx, cancel := context.WithTimeout(context.Background(), d.cfg.AwaitTimeout)
		_, err := d.cfg.Pool.To(lk.id, addr).Call(ctx, peer.Snapshot, e.B)
		cancel()
		if err != nil {
			return fmt.Errorf("replica %s refused the copy of partition %d: %w", lk.id, p, err)
		}
		if end == len(data) {
			break
		}
	}
	var ready []confirm
	l.mu.Lock()
	if l.role == owner && l.epoch == epoch && l.link == lk && l.frozenAt != epoch {
		l.synced, l.copiedAt = true, epoch
		ready = l.ack(seq)
	}
	l.mu.Unlock()
	answerConfirms(ready)
	// Changes recorded while the copy travelled go next.
	lk.poke(p)
	return nil
}

func encodeChange(e *peer.Enc, c locktable.Change) {
	e.Uint(uint64(c.Kind))
	e.Str(c.Name)
	e.Str(c.Session)
	e.Uint(c.Token)
	e.Int(int64(c.Age))
	e.Int(int64(c.Timeout))
	e.Bool(c.Attached)
	e.Uint(c.Epoch)
	e.Uint(c.Born)
	e.Str(c.Home)
	e.Int(int64(c.Left))
	e.Uint(uint64(c.Mode))
	e.Uint(uint64(c.Limit))
	e.Str(c.Value)
}
