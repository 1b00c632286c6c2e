package peer

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Pool keeps one Client per remote -peer address.
type Pool struct {
	// Observe, if set before the first call, is told each call's method
	// and the time to its reply or failure (for metrics); it must not
	// block. nil costs nothing.
	Observe func(m Method, took time.Duration)

	timeout time.Duration
	source  net.Addr
	sec     *TLS
	mu      sync.Mutex // guards clients and closed
	clients map[string]*Client
	closed  bool
}

// NewPool returns a pool whose clients dial with timeout, from the
// address source (see Source), over TLS with sec unless it is nil.
func NewPool(dialTimeout time.Duration, source net.Addr, sec *TLS) *Pool {
	return &Pool{timeout: dialTimeout, source: source, sec: sec, clients: make(map[string]*Client)}
}

// Source is the local address a node's outgoing connections should come
// from, given the address it listens on: that address's IP, port chosen by
// the kernel, or nil when it listens on every interface. A node that binds
// one IP then also speaks from it, so a peer (or a firewall rule) sees the
// node's own address, not whichever one the kernel picks for the route:
// on loopback the kernel would pick 127.0.0.1 for every node.
func Source(listen net.Addr) net.Addr {
	ta, ok := listen.(*net.TCPAddr)
	if !ok || ta.IP == nil || ta.IP.IsUnspecified() {
		return nil
	}
	return &net.TCPAddr{IP: ta.IP}
}

// Get returns the client for addr, creating it on first use. After Close
// it returns a client that fails every call with ErrClosed. Its
// connections prove only that the other end is a node of the mesh; a
// caller that means a given node uses To.
func (p *Pool) Get(addr string) *Client { return p.client("", addr) }

// To returns the client for node id at addr: with TLS, a connection
// whose other end's certificate does not name id is closed before
// anything is sent on it (ErrUnreachable, wrapping ErrNotProved). A node
// that moved to another node's address, or anyone holding a certificate
// of the mesh who took the address, never receives what was meant for
// id, nor answers for it: a replica's acknowledgements, a leader's
// leases.
func (p *Pool) To(id, addr string) *Client { return p.client(id, addr) }

func (p *Pool) client(id, addr string) *Client {
	key := id + "@" + addr
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.clients[key]
	if c == nil {
		c = NewClient(addr, p.timeout)
		c.source, c.sec, c.want, c.observe = p.source, p.sec, id, p.Observe
		if p.closed {
			c.Close()
		} else {
			p.clients[key] = c
		}
	}
	return c
}

// Close closes every client.
func (p *Pool) Close() {
	p.mu.Lock()
	cs := p.clients
	p.clients = map[string]*Client{}
	p.closed = true
	p.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

// ErrNotProved: a node's -peer address did not prove, by its TLS
// certificate, to be the node id it claims.
var ErrNotProved = errors.New("peer: identity not proved")

// Prove checks that the node at addr holds a certificate from the mesh's
// CA that names id: gossip only claims a node's id and address, and a
// node is trusted with partitions, votes and session ids only once it
// has proved them. Without TLS there is nothing to prove it with, and
// Prove returns nil.
func (p *Pool) Prove(addr, id string) error {
	if p.sec == nil {
		return nil
	}
	d := net.Dialer{Timeout: p.timeout, LocalAddr: p.source}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrNotProved, addr, err)
	}
	tc, err := p.sec.wrap(nc, p.timeout, id)
	if err != nil {
		if errors.Is(err, ErrNotProved) {
			return err
		}
		return fmt.Errorf("%w: %s: %v", ErrNotProved, addr, err)
	}
	return tc.Close()
}
