package node

import (
	"sync"

	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/node/wire"
)

// Session events: after "events on", a connection hears "EVENT wanted
// NAME N" when someone starts waiting for a name its session holds, and
// "EVENT lost NAME TOKEN" when an exclusive grant it holds is gone
// without its asking. Both come from a watch of each name the session
// took on this connection, kept apart from the connection's own watches.

// heldWatch is the watch of one name the session holds.
type heldWatch struct {
	stop    func()
	token   uint64
	excl    bool
	seq     uint64
	waiters int
	lost    bool
}

// sessionEvents are the connection's session events and the lines
// waiting to go out.
type sessionEvents struct {
	mu    sync.Mutex
	on    bool
	risk  bool // the last of jeopardy or safe told
	held  map[string]*heldWatch
	lines [][]byte // whole EVENT lines, oldest first
}

// maxEventLines bounds the session events waiting for a slow reader:
// past it the oldest "wanted" lines go first (a later one says more).
const maxEventLines = 1024

func (c *conn) cmdEvents() {
	if string(c.req.Args[0]) != "on" {
		c.out = wire.AppendError(c.out, wire.CodeBadRequest, "bad events: want on")
		return
	}
	if _, ok := c.s.backend.(Watcher); !ok {
		c.out = wire.AppendError(c.out, wire.CodeRetry, "events are not served by this node")
		return
	}
	if c.session() == nil {
		return
	}
	e := &c.sessEvents
	e.mu.Lock()
	e.on = true
	if e.held == nil {
		e.held = map[string]*heldWatch{}
	}
	e.mu.Unlock()
	c.out = append(c.out, "200 events on\r\n"...)
}

// granted starts watching a name the session was just granted, if
// events are on. Called by the connection's goroutine.
func (c *conn) eventsGranted(name []byte, token uint64, want locktable.Want) {
	e := &c.sessEvents
	e.mu.Lock()
	if !e.on || e.held[string(name)] != nil {
		e.mu.Unlock()
		return
	}
	hw := &heldWatch{token: token, excl: want.Mode == locktable.Exclusive}
	e.held[string(name)] = hw
	e.mu.Unlock()
	key := string(name)
	stop, err := c.s.backend.(Watcher).Watch(name, func(ev partition.WatchEvent) { c.heldChanged(key, hw, ev) })
	e.mu.Lock()
	if err != nil || e.held[key] != hw {
		e.mu.Unlock()
		if err == nil {
			stop()
		}
		return
	}
	hw.stop = stop
	e.mu.Unlock()
}

// heldChanged turns a state change of a held name into session events.
func (c *conn) heldChanged(name string, hw *heldWatch, ev partition.WatchEvent) {
	e := &c.sessEvents
	e.mu.Lock()
	if e.held[name] != hw || ev.Seq <= hw.seq || hw.lost {
		e.mu.Unlock()
		return
	}
	hw.seq = ev.Seq
	st := ev.State
	var line []byte
	switch {
	case hw.excl && (st.Free || st.Mode != locktable.Exclusive || st.Token != hw.token):
		// Not held by this grant any more, and this connection did not
		// release it (an unlock stops the watch first).
		hw.lost = true
		line = wire.AppendSessionEvent(nil, "lost", name, hw.token)
	case st.Waiters > hw.waiters:
		line = wire.AppendSessionEvent(nil, "wanted", name, uint64(st.Waiters))
	}
	hw.waiters = st.Waiters
	if line != nil {
		if len(e.lines) >= maxEventLines {
			e.lines = e.lines[1:]
		}
		e.lines = append(e.lines, line)
	}
	e.mu.Unlock()
	if line != nil {
		c.wakeForEvents()
	}
}

// jeopardy turns the home's view of the session's risk into "EVENT
// session jeopardy" and "EVENT session safe", on each change only.
func (c *conn) jeopardy(atRisk bool) {
	e := &c.sessEvents
	e.mu.Lock()
	if !e.on || e.risk == atRisk {
		e.mu.Unlock()
		return
	}
	e.risk = atRisk
	line := "EVENT session safe\r\n"
	if atRisk {
		line = "EVENT session jeopardy\r\n"
	}
	if len(e.lines) >= maxEventLines {
		e.lines = e.lines[1:]
	}
	e.lines = append(e.lines, []byte(line))
	e.mu.Unlock()
	c.wakeForEvents()
}

// eventsReleased stops watching a name the session released (all of
// them when name is nil).
func (c *conn) eventsReleased(name []byte) {
	e := &c.sessEvents
	e.mu.Lock()
	var stops []func()
	for n, hw := range e.held {
		if name == nil || n == string(name) {
			delete(e.held, n)
			if hw.stop != nil {
				stops = append(stops, hw.stop)
			}
		}
	}
	e.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
}

// appendSessionEvents moves the waiting session events to the output.
func (c *conn) appendSessionEvents() {
	e := &c.sessEvents
	e.mu.Lock()
	for _, l := range e.lines {
		c.out = append(c.out, l...)
	}
	e.lines = e.lines[:0]
	e.mu.Unlock()
}
