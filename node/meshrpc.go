package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/elock/elock/node/peer"
	"github.com/elock/elock/node/wire"
	"github.com/elock/elock/replication"
)

// Peer methods served by a mesh node for other nodes: the home of a
// session asks the owner of a partition, and the owners of sessions and
// locks talk to each other. Methods 16-31 belong to package replication.
const (
	mLock       byte = peer.MinMethod + 32 + iota // lock without waiting
	mLockWait                                     // lock NAME SECS
	mCancel                                       // withdraw a queued mLockWait
	mUnlock                                       // unlock NAME
	mRelease                                      // release a session's locks here (unlock_all, expiry)
	mToken                                        // token NAME
	mInfo                                         // info NAME
	mAttach                                       // session owner: conn_id
	mDetach                                       // session owner: the connection closed
	mSetTimeout                                   // session owner: set_timeout
	mHeld                                         // which locks does a session hold here; fence older homes
	mRenew                                        // home -> session owner: these sessions are attached here
	mProbe                                        // session owner -> home: is this session still attached to you?
	mAlive                                        // lock owner -> session owner: are these sessions alive?
	mStats                                        // node figures, for cluster-wide stats
	mDrop                                         // take back a grant nobody heard of
)

// A reply's first byte says how to read the rest.
const (
	replyOK  byte = 0
	replyErr byte = 1
)

// encodeErr turns a handler's error into a reply any node can decode: a
// wire error keeps its code and reason, and a refusal from a node that
// does not own the partition says so, so that the home refreshes its table
// before it asks again.
func encodeErr(err error) []byte {
	e := peer.Enc{B: []byte{replyErr}}
	var we *wire.Error
	if !errors.As(err, &we) {
		we = wire.Retry(err.Error())
	}
	e.Uint(uint64(we.Code))
	e.Str(we.Reason)
	e.Bool(errors.Is(err, replication.ErrMoved))
	return e.B
}

// movedError is a refusal that came with "not owned here".
type movedError struct{ we *wire.Error }

func (e movedError) Error() string   { return e.we.Error() }
func (e movedError) Unwrap() []error { return []error{e.we, replication.ErrMoved} }

// decodeReply splits a reply into its payload or its error.
func decodeReply(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty reply", peer.ErrMalformed)
	}
	if b[0] == replyOK {
		return b[1:], nil
	}
	d := peer.Dec{B: b[1:]}
	we := &wire.Error{Code: int(d.Uint()), Reason: d.Str()}
	moved := d.Bool()
	if d.End() != nil {
		return nil, fmt.Errorf("%w: bad error reply", peer.ErrMalformed)
	}
	if moved {
		return nil, movedError{we}
	}
	return nil, we
}

// handler is the body of a peer method: it may block, and it runs on a
// goroutine of its own when called from another node.
type handler func(conn context.Context, payload []byte) ([]byte, error)

// serve adapts handlers to peer methods.
func serve(hs map[byte]handler) peer.Methods {
	ms := make(peer.Methods, len(hs))
	for m, h := range hs {
		ms[m] = func(conn context.Context, _ byte, payload []byte, reply func([]byte, error)) {
			p := append([]byte(nil), payload...)
			go func() { reply(wrap(h(conn, p))) }()
		}
	}
	return ms
}

func wrap(b []byte, err error) ([]byte, error) {
	if err != nil {
		return encodeErr(err), nil
	}
	return append([]byte{replyOK}, b...), nil
}
