package peer

import (
	"net"
	"sync"
	"time"
)

// Pool keeps one Client per remote -peer address.
type Pool struct {
	timeout time.Duration
	source  net.Addr
	mu      sync.Mutex // guards clients and closed
	clients map[string]*Client
	closed  bool
}

// NewPool returns a pool whose clients dial with timeout, from the
// address source (see Source).
func NewPool(dialTimeout time.Duration, source net.Addr) *Pool {
	return &Pool{timeout: dialTimeout, source: source, clients: make(map[string]*Client)}
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
// it returns a client that fails every call with ErrClosed.
func (p *Pool) Get(addr string) *Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.clients[addr]
	if c == nil {
		c = NewClient(addr, p.timeout)
		c.source = p.source
		if p.closed {
			c.Close()
		} else {
			p.clients[addr] = c
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
