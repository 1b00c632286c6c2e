package client

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
)

// State is what a watched name is: held exclusively, held shared, or
// free.
type State int

const (
	// Free: nobody holds the name.
	Free State = iota
	// Held: one session holds the name exclusively, as a lock or as the
	// leader of an election.
	Held
	// Shared: the name is held by shared lockers or semaphore holders.
	Shared
)

func (s State) String() string {
	switch s {
	case Free:
		return "free"
	case Held:
		return "held"
	case Shared:
		return "shared"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Event is one state of a watched name, as the server told it.
type Event struct {
	Name  string
	State State
	// Token is the fencing token of the exclusive grant (Held), of the
	// latest grant (Shared), or of the last grant (Free; 0 if the name
	// was never held). It never goes back on one watch's channel.
	Token uint64
	// Value is what the leader published with Campaign or Proclaim; ""
	// for a plain lock, and for any state but Held.
	Value string
	// Holders is the number of holders of a Shared name.
	Holders int
}

// Watch tells the states of name on the returned channel: the current
// one at once, then one at every change, until ctx ends or the Client
// closes, when the channel is closed. Watching holds no lock and works
// alongside every other call of the Client; but as every call, the
// request itself waits while a Lock of the same Client waits.
//
// A slow reader misses nothing but intermediate states: events not yet
// received are replaced by the newest one, so the channel always leads
// to the current state, and memory stays bounded. After the connection
// is re-established the client watches again and the server tells the
// current state again, which may repeat the last event. Tokens on one
// channel never go back: an older one that arrives late is dropped.
//
// The server bounds the watches of a connection (its -max-watches): more
// get a *ServerError 429. Watches of one name by one Client share one
// on the server. When ctx ends, "unwatch" is sent best-effort, bounded
// by the dial timeout.
func (c *Client) Watch(ctx context.Context, name string) (<-chan Event, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	w := &watcher{name: name, out: make(chan Event), wake: make(chan struct{}, 1)}
	// Registered before the request, so that the first event, which may
	// come right after the reply, finds it.
	c.watches.add(w)
	err := c.call(ctx, "watch "+strconv.Quote(name), func(ctx context.Context, cn *conn) error {
		return cn.ask("watch " + name)
	})
	if err != nil {
		// A refused watch left nothing on the server; a cancelled one
		// closed the connection, and the server's watches with it.
		c.watches.remove(w)
		c.watches.forget(name)
		return nil, err
	}
	c.watches.wg.Add(1)
	go c.runWatch(ctx, w)
	return w.out, nil
}

// runWatch delivers w's events until ctx ends or the Client closes.
func (c *Client) runWatch(ctx context.Context, w *watcher) {
	defer c.watches.wg.Done()
	defer func() {
		close(w.out)
		if c.watches.remove(w) && c.life.Err() == nil {
			c.unwatch(w.name)
		}
	}()
	for {
		select {
		case <-w.wake:
		case <-ctx.Done():
			return
		case <-c.life.Done():
			return
		}
		ev, ok := w.take()
		if !ok {
			continue
		}
		select {
		case w.out <- ev:
		case <-ctx.Done():
			return
		case <-c.life.Done():
			return
		}
	}
}

// unwatch ends the server's watch of name, unless it is watched again by
// the time the request goes out. It is best-effort: if it cannot be sent
// within the dial timeout (a Lock may be waiting), the events that keep
// coming are dropped.
func (c *Client) unwatch(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.dialTimeout)
	defer cancel()
	err := c.call(ctx, "unwatch "+strconv.Quote(name), func(ctx context.Context, cn *conn) error {
		if !c.watches.forget(name) {
			return nil
		}
		return cn.ask("unwatch " + name)
	})
	if err != nil {
		c.log.Debug("unwatch", "name", name, "err", err)
	}
}

// rewatch watches every watched name on a new connection: watches
// belong to the connection, not the session. The server tells each
// name's current state again.
func (c *Client) rewatch(cn *conn) error {
	names := c.watches.names()
	if len(names) == 0 {
		return nil
	}
	lines := make([]string, len(names))
	for i, n := range names {
		lines[i] = "watch " + n
	}
	if err := cn.send(lines...); err != nil {
		return err
	}
	rs, err := cn.readN(len(lines))
	if err != nil {
		return err
	}
	for i, r := range rs {
		if err := r.err(); err != nil {
			c.log.Warn("watch again after reconnect refused", "name", names[i], "err", err)
		}
	}
	return nil
}

// watcher is one Watch: its newest undelivered event, and the highest
// token it has taken.
type watcher struct {
	name string
	out  chan Event
	wake chan struct{} // capacity 1

	mu      sync.Mutex
	pending Event
	has     bool
	maxTok  uint64
}

// offer makes ev the next event to deliver, replacing an undelivered
// one, unless its token is older than one already taken. It never
// blocks: it runs on the connection's reader.
func (w *watcher) offer(ev Event) {
	w.mu.Lock()
	if ev.Token < w.maxTok {
		w.mu.Unlock()
		return
	}
	w.maxTok, w.pending, w.has = ev.Token, ev, true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *watcher) take() (Event, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ev, ok := w.pending, w.has
	w.has = false
	return ev, ok
}

// watchHub routes EVENT lines to the watchers of their name.
type watchHub struct {
	mu     sync.Mutex
	byName map[string]map[*watcher]struct{}
	// last is the newest state of each name the server may be watching
	// for this Client: a second watcher of a name gets it at once, since
	// the server tells the state only to the first "watch".
	last map[string]*Event
	wg   sync.WaitGroup // the runWatch goroutines
}

func newWatchHub() *watchHub {
	return &watchHub{byName: make(map[string]map[*watcher]struct{}), last: make(map[string]*Event)}
}

func (h *watchHub) add(w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ws := h.byName[w.name]
	if ws == nil {
		ws = make(map[*watcher]struct{})
		h.byName[w.name] = ws
	}
	ws[w] = struct{}{}
	if ev := h.last[w.name]; ev != nil {
		w.offer(*ev)
	} else {
		h.last[w.name] = nil
	}
}

// remove drops w and reports whether it was the name's last watcher.
func (h *watchHub) remove(w *watcher) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	ws := h.byName[w.name]
	if _, ok := ws[w]; !ok {
		return false
	}
	delete(ws, w)
	if len(ws) > 0 {
		return false
	}
	delete(h.byName, w.name)
	return true
}

// forget reports whether name is unwatched, and if so forgets its state,
// for an "unwatch" about to be sent.
func (h *watchHub) forget(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.byName[name]) > 0 {
		return false
	}
	delete(h.last, name)
	return true
}

// names returns the watched names, for a new connection; the states of
// names no longer watched are forgotten, since the new connection does
// not watch them.
func (h *watchHub) names() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	names := make([]string, 0, len(h.byName))
	for n := range h.last {
		if len(h.byName[n]) == 0 {
			delete(h.last, n)
		}
	}
	for n := range h.byName {
		names = append(names, n)
	}
	return names
}

// event takes one EVENT line from a connection's reader. A line it
// cannot parse is dropped: it concerns no reply, so the reply stream is
// still in step.
func (h *watchHub) event(line []byte) {
	ev, ok := parseEvent(line)
	if !ok {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	prev, watched := h.last[ev.Name]
	if !watched {
		return
	}
	if prev == nil || ev.Token >= prev.Token {
		h.last[ev.Name] = &ev
	}
	for w := range h.byName[ev.Name] {
		w.offer(ev)
	}
}

// watching reports whether line is an event of a watched name.
func (h *watchHub) watching(line []byte) bool {
	ev, ok := parseEvent(line)
	if !ok {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	_, watched := h.last[ev.Name]
	return watched
}

// close joins the runWatch goroutines; the Client's life has ended.
func (h *watchHub) close() { h.wg.Wait() }

// parseEvent parses "EVENT <name> held <token> <value|->", "EVENT <name>
// shared <holders> <token>" or "EVENT <name> free <token>".
func parseEvent(line []byte) (Event, bool) {
	f := bytes.Fields(line)
	if len(f) < 4 || string(f[0]) != "EVENT" {
		return Event{}, false
	}
	ev := Event{Name: string(f[1])}
	num := func(b []byte) (uint64, bool) {
		v, err := strconv.ParseUint(string(b), 10, 64)
		return v, err == nil
	}
	var ok bool
	switch string(f[2]) {
	case "held":
		if len(f) != 5 {
			return Event{}, false
		}
		ev.State = Held
		ev.Token, ok = num(f[3])
		if string(f[4]) != "-" {
			ev.Value = string(f[4])
		}
	case "shared":
		if len(f) != 5 {
			return Event{}, false
		}
		ev.State = Shared
		var n uint64
		if n, ok = num(f[3]); !ok || n > uint64(maxInt) {
			return Event{}, false
		}
		ev.Holders = int(n)
		ev.Token, ok = num(f[4])
	case "free":
		if len(f) != 4 {
			return Event{}, false
		}
		ev.State = Free
		ev.Token, ok = num(f[3])
	}
	return ev, ok
}

const maxInt = int(^uint(0) >> 1)

// String is the event as the server tells it, without "EVENT ".
func (e Event) String() string {
	switch e.State {
	case Held:
		v := e.Value
		if v == "" {
			v = "-"
		}
		return fmt.Sprintf("%s held %d %s", e.Name, e.Token, v)
	case Shared:
		return fmt.Sprintf("%s shared %d %d", e.Name, e.Holders, e.Token)
	}
	return fmt.Sprintf("%s free %d", e.Name, e.Token)
}
