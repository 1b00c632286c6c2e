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

// Caller calls peer methods on nodes: this node's own handlers in
// process, another node's over the network.
//
// Contract: Start sends m to n and returns at once; done receives, exactly
// once, the reply or why there is none, from whichever goroutine learns it
// (the one that reads the reply, the handler's own for this node, the
// caller's if nothing could be sent), so done must not block. A refusal
// is a *failure.Error whose class and reason the handler chose;
// peer.ErrUnreachable (wrapped) means nothing was sent; peer.ErrLost
// (wrapped) that the request went out and may have been carried out. For
// this node's own handlers conn is the caller's connection: when it ends,
// a queued wait is withdrawn. Start returns a function that abandons the
// request (done then receives peer.ErrLost wrapping why, unless the reply
// came first), or nil when it cannot be abandoned: a call to this node,
// whose conn ends it, or one that was never sent.
type Caller interface {
	Start(conn context.Context, n replication.Node, m peer.Method, payload []byte, done func([]byte, error)) (abandon func(why error))
}

// callNode calls m on n and waits for the reply, or until ctx ends.
func callNode(ctx context.Context, c Caller, n replication.Node, m peer.Method, payload []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err // nothing sent: a caller looping on a dead context must not flood the peer
	}
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	abandon := c.Start(ctx, n, m, payload, func(b []byte, err error) { ch <- result{b, err} })
	if abandon != nil {
		select {
		case r := <-ch:
			return r.b, r.err
		case <-ctx.Done():
			abandon(ctx.Err())
		}
	}
	r := <-ch
	return r.b, r.err
}

// netCaller is the Caller of a running node: its own registry in
// process, a peer connection to anyone else.
type netCaller struct {
	self  replication.Incarnation
	local *peer.Registry
	pool  *peer.Pool
}

func (c netCaller) Start(conn context.Context, n replication.Node, m peer.Method, payload []byte, done func([]byte, error)) func(error) {
	if n.ID == c.self.ID && n.Nonce == c.self.Nonce {
		c.local.Serve(conn, m, payload, done)
		return nil
	}
	if n.PeerAddr == "" {
		done(nil, fmt.Errorf("%w: node %s has no address", peer.ErrUnreachable, n.ID))
		return nil
	}
	if p := c.pool.To(n.ID, n.PeerAddr).Start(m, payload, done); p != nil {
		return func(why error) { p.Abandon(why) }
	}
	return nil
}
