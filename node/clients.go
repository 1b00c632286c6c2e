package node

import (
	"sync"
	"sync/atomic"
)

// Clients is this node's registry of client connections by the session
// attached to each. The server records every attachment in it; a mesh is
// given the same registry, to close a session's connection when it can
// no longer keep the session safe (Kick), and to answer whether a session
// is still live here (Live). It is built before both, so neither needs
// the other to be finished.
type Clients struct {
	mu       sync.Mutex       // guards attached and labels
	attached map[string]*conn // session id -> the connection it is attached to
	// labels are the sessions' labels ("label TEXT"), kept while the
	// connection that set one is attached: not replicated state, so a
	// label lives with its connection (like Redis's CLIENT SETNAME), and
	// a client that resumes its session elsewhere sets it again.
	labels map[string]string
	n      atomic.Int64 // connections with a session
}

// NewClients returns an empty registry.
func NewClients() *Clients {
	return &Clients{attached: make(map[string]*conn), labels: make(map[string]string)}
}

func (cs *Clients) bind(id string, c *conn) {
	cs.mu.Lock()
	cs.attached[id] = c
	cs.mu.Unlock()
	cs.n.Add(1)
}

func (cs *Clients) unbind(id string, c *conn) {
	cs.mu.Lock()
	if cs.attached[id] == c {
		delete(cs.attached, id)
		delete(cs.labels, id)
	}
	cs.mu.Unlock()
	cs.n.Add(-1)
}

func (cs *Clients) get(id string) *conn {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.attached[id]
}

// hungUp reports whether session id is attached to a connection of this
// node whose client has already hung up.
func (cs *Clients) hungUp(id string) bool {
	c := cs.get(id)
	return c != nil && peerHungUp(c.raw)
}

// Kick closes the connection a session is attached to here, if any: the
// mesh could not keep the session safe, and the client should resume it.
func (cs *Clients) Kick(id string) {
	if c := cs.get(id); c != nil {
		c.nc.Close()
	}
}

// Live reports whether session id is attached to a connection of this
// node whose client has not hung up.
func (cs *Clients) Live(id string) bool {
	c := cs.get(id)
	return c != nil && !peerHungUp(c.raw)
}

// Count returns this node's count of connections with a session.
func (cs *Clients) Count() int { return int(cs.n.Load()) }

// setLabel sets the label of session id while c holds it ("" clears it).
func (cs *Clients) setLabel(id string, c *conn, label string) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	switch {
	case cs.attached[id] != c:
	case label == "":
		delete(cs.labels, id)
	default:
		cs.labels[id] = label
	}
}

// Labels returns the labels of those of ids that are attached here and
// set one. A nil registry knows none.
func (cs *Clients) Labels(ids []string) map[string]string {
	out := make(map[string]string)
	if cs == nil {
		return out
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, id := range ids {
		if l, ok := cs.labels[id]; ok {
			out[id] = l
		}
	}
	return out
}

// Jeopardy tells session id's connection here, if any, whether its
// locks are at risk (see sessionEvents).
func (cs *Clients) Jeopardy(id string, atRisk bool) {
	if c := cs.get(id); c != nil {
		c.jeopardy(atRisk)
	}
}
