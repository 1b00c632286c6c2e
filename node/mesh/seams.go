package mesh

import (
	"context"
	"fmt"

	"github.com/elock/elock/node/peer"
	"github.com/elock/elock/replication"
)

// Table is the partition table as the roles see it: the table last
// applied on this node, and a channel closed when a newer one is.
// *replication.Control implements it.
//
// Contract: State never returns nil; successive States never go back to
// a lower Index; Changed returns a channel that is closed once a table
// with a higher Index than the State read after it is applied.
type Table interface {
	State() *replication.State
	Changed() <-chan struct{}
}

// waitNewer waits until a table with an index above index is applied,
// or ctx ends.
func waitNewer(ctx context.Context, t Table, index uint64) {
	for {
		ch := t.Changed()
		if t.State().Index > index {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// Caller calls a peer method on a node and returns its reply: this
// node's own handlers in process, another node's over the network.
//
// Contract: a refusal comes back as a *failure.Error whose class and
// reason the handler chose; peer.ErrUnreachable (wrapped) means nothing
// was sent; peer.ErrLost (wrapped) that the request went out and may
// have been carried out; a ctx error that ctx ended before anything was
// sent. For this node's own handlers ctx is also the caller's connection:
// when it ends, a queued wait is withdrawn.
//
// Go is Call without waiting: done receives what Call would return,
// exactly once, from whichever goroutine learns it (the one that reads the
// reply, or the handler's own for this node), so done must not block. It
// may be called before Go returns.
type Caller interface {
	Call(ctx context.Context, n replication.Node, m peer.Method, payload []byte) ([]byte, error)
	Go(ctx context.Context, n replication.Node, m peer.Method, payload []byte, done func([]byte, error))
}

// netCaller is the Caller of a running node: its own registry in
// process, a peer connection to anyone else.
type netCaller struct {
	self  replication.Incarnation
	local *peer.Registry
	pool  *peer.Pool
}

func (c netCaller) Call(ctx context.Context, n replication.Node, m peer.Method, payload []byte) ([]byte, error) {
	if n.ID == c.self.ID && n.Nonce == c.self.Nonce {
		return callLocal(ctx, c.local, m, payload)
	}
	if n.PeerAddr == "" {
		return nil, fmt.Errorf("%w: node %s has no address", peer.ErrUnreachable, n.ID)
	}
	return c.pool.Get(n.PeerAddr).Call(ctx, m, payload)
}

func (c netCaller) Go(ctx context.Context, n replication.Node, m peer.Method, payload []byte, done func([]byte, error)) {
	if n.ID == c.self.ID && n.Nonce == c.self.Nonce {
		c.local.Serve(ctx, m, payload, done)
		return
	}
	if n.PeerAddr == "" {
		done(nil, fmt.Errorf("%w: node %s has no address", peer.ErrUnreachable, n.ID))
		return
	}
	c.pool.Get(n.PeerAddr).Go(ctx, m, payload, done)
}

// callLocal runs a method of this node's registry in process and waits
// for its reply, which every handler gives exactly once.
func callLocal(ctx context.Context, reg *peer.Registry, m peer.Method, payload []byte) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	reg.Serve(ctx, m, payload, func(b []byte, err error) { ch <- result{b, err} })
	r := <-ch
	return r.b, r.err
}
