package peer

import (
	"sync"
	"time"
)

// Pool keeps one Client per remote -peer address.
type Pool struct {
	timeout time.Duration
	mu      sync.Mutex // guards clients and closed
	clients map[string]*Client
	closed  bool
}

// NewPool returns a pool whose clients dial with timeout.
func NewPool(dialTimeout time.Duration) *Pool {
	return &Pool{timeout: dialTimeout, clients: make(map[string]*Client)}
}

// Get returns the client for addr, creating it on first use. After Close
// it returns a client that fails every call with ErrClosed.
func (p *Pool) Get(addr string) *Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.clients[addr]
	if c == nil {
		c = NewClient(addr, p.timeout)
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
