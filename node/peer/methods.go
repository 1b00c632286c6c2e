package peer

import (
	"context"
	"fmt"
	"strconv"
)

// Method names one kind of peer request. Every method of a mesh node is
// declared here, in this one block, so that no two can share an id: a
// package that serves methods registers handlers for its own, and a
// Registry refuses a second handler for any id.
type Method byte

// The methods, by who asks whom. A mixed-version mesh is not supported:
// ids and payloads change together.
const (
	// The data plane (package replication).
	Replicate Method = MinMethod + iota // owner -> replica: changes
	Snapshot                            // owner -> replica: a full copy, in chunks
	Seal                                // leader -> owner: stop serving, before a hand-over

	// The control plane (package replication).
	Heartbeat // node -> leader: renew my lease
	Status    // voter -> voter: do you belong to a cluster yet?

	// A session's home -> a lock's owner (package mesh).
	Lock     // lock NAME, or lock NAME SECS queued until granted or timed out
	Cancel   // withdraw a queued Lock
	Unlock   // unlock NAME
	Drop     // take back a grant nobody heard of, by its token
	Release  // release a session's locks in one partition (unlock_all, expiry)
	Token    // token NAME
	Info     // info NAME
	Held     // the locks a session holds here; fence its older homes
	NodeStat // this node's figures, for cluster-wide stats

	// A session's home -> its session owner (package mesh).
	Attach     // conn_id, or a connection's first command
	Detach     // the connection closed
	SetTimeout // set_timeout
	Renew      // these sessions are still attached here

	// Session owner -> home, and lock owner -> session owner (package mesh).
	Probe // is this session still attached to a live connection of yours?
	Alive // do these sessions still exist?

	// The data plane again (package replication); last, so that the ids
	// above keep their values.
	Replaced // leader -> owner: did the replica ever hold a copy at this epoch? if not, serve nothing more at it

	// The locks command (package mesh), after the ids above.
	List   // a node serving "locks" -> a lock owner: the held locks of these partitions
	Labels // a node serving "locks" -> every member: the labels of these sessions attached to you

	// Elections (package mesh), after the ids above.
	Proclaim // a session's home -> a lock's owner: proclaim NAME VALUE
	Leader   // any node -> a lock's owner: leader NAME
	Watch    // a home -> a lock's owner: register or renew these watches
	Event    // a lock's owner -> a home: a watched name changed

	endMethods
)

var methodNames = [...]string{
	"replicate", "snapshot", "seal", "heartbeat", "status",
	"lock", "cancel", "unlock", "drop", "release", "token", "info", "held", "node-stat",
	"attach", "detach", "set-timeout", "renew", "probe", "alive",
	"replaced",
	"list", "labels",
	"proclaim", "leader", "watch", "event",
}

// Methods lists every declared method.
func Methods() []Method {
	ms := make([]Method, 0, endMethods-MinMethod)
	for m := MinMethod; m < endMethods; m++ {
		ms = append(ms, m)
	}
	return ms
}

func (m Method) String() string {
	if m >= MinMethod && m < endMethods {
		return methodNames[m-MinMethod]
	}
	return "method(" + strconv.Itoa(int(m)) + ")"
}

// Registry is the one table from which a node's peer server dispatches
// requests: every method's handler, registered before the server starts.
type Registry struct {
	hs [256]HandlerFunc
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{} }

// Handle registers h for m. It refuses an undeclared method and a second
// handler for the same one: a collision is a wiring bug, found at start.
func (r *Registry) Handle(m Method, h HandlerFunc) error {
	switch {
	case m < MinMethod || m >= endMethods:
		return fmt.Errorf("peer: %v is not a declared method", m)
	case h == nil:
		return fmt.Errorf("peer: nil handler for %v", m)
	case r.hs[m] != nil:
		return fmt.Errorf("peer: a second handler for %v", m)
	}
	r.hs[m] = h
	return nil
}

// Has reports whether m has a handler.
func (r *Registry) Has(m Method) bool { return r.hs[m] != nil }

// Serve implements Handler.
func (r *Registry) Serve(conn context.Context, m Method, payload []byte, reply func([]byte, error)) {
	if h := r.hs[m]; h != nil {
		h(conn, m, payload, reply)
		return
	}
	reply(nil, fmt.Errorf("%w: no handler for %v", ErrMalformed, m))
}
