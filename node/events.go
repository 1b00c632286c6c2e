package node

import (
	"bytes"
	"slices"
	"sync"

	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/node/wire"
)

// Session events: after "events on", a connection hears "EVENT wanted
// NAME N" when someone starts waiting for a name its session holds,
// "EVENT lost NAME TOKEN" when a grant it holds is gone without its
// asking, and "EVENT session jeopardy" / "EVENT session safe" as its
// locks come to be at risk and cease to be. All come from a watch of
// each name the session holds, as the session (partition.WatchEvent's
// Mine and Unsure), kept apart from the connection's own watches; and
// jeopardy also from the home's renewals of the session (jeopardy).

// heldWatch is the watch of one name the session holds.
type heldWatch struct {
	stop func()
	// token is the grant's; 0 while it is learnt from the first event,
	// for a name held before "events on".
	token   uint64
	seq     uint64
	waiters int
	unsure  bool // the owner cannot confirm the name now
	// asked: watched again after an unlock whose outcome is not known,
	// so its going is no loss to tell (it may be that unlock landing).
	asked bool
}

// sessionEvents are the connection's session events and the lines
// waiting to go out.
type sessionEvents struct {
	mu       sync.Mutex
	on       bool
	homeRisk bool // the home cannot renew the session
	unsure   int  // held names whose owner cannot confirm them
	risk     bool // the last of jeopardy or safe told
	held     map[string]*heldWatch
	lines    [][]byte // whole EVENT lines, oldest first
	added    uint64   // lines ever queued: whether to wake the connection
}

// maxEventLines bounds the session events waiting for a slow reader:
// past it the oldest "wanted" line goes first (a later one says more),
// else the oldest line. Lost lines are bounded by the names held, and
// jeopardy and safe alternate.
const maxEventLines = 1024

// sessionEventNames are the words of session events where a watch event
// has a name: on a connection with both, a watch of one of them would
// read like a session event ("EVENT lost free 7").
var sessionEventNames = []string{"lost", "wanted", "session"}

func reservedForEvents(name []byte) bool {
	return slices.Contains(sessionEventNames, string(name))
}

func (c *conn) eventsOn() bool {
	e := &c.sessEvents
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.on
}

func (c *conn) cmdEvents() {
	if string(c.req.Args[0]) != "on" {
		c.out = wire.AppendError(c.out, wire.CodeBadRequest, "bad events: want on")
		return
	}
	if _, ok := c.s.backend.(Watcher); !ok {
		c.out = wire.AppendError(c.out, wire.CodeRetry, "events are not served by this node")
		return
	}
	if c.watchesReserved() {
		c.out = wire.AppendError(c.out, wire.CodeBadRequest, "reserved name: this connection watches lost, wanted or session, whose events would read as session events")
		return
	}
	if c.session() == nil {
		return
	}
	e := &c.sessEvents
	e.mu.Lock()
	was := e.on
	e.on = true
	if e.held == nil {
		e.held = map[string]*heldWatch{}
	}
	e.tellRisk() // a session already at risk is told so at once
	e.mu.Unlock()
	if !was {
		// What the session held before (taken on another connection and
		// resumed here, or before events on) is watched too.
		c.eventsHeld()
	}
	c.out = append(c.out, "200 events on\r\n"...)
}

// eventsHeld watches every name the session holds that is not watched
// yet, each token learnt from its first event.
func (c *conn) eventsHeld() {
	wb, ok := c.s.backend.(Watcher)
	if !ok || !c.eventsOn() {
		return
	}
	for _, name := range wb.HeldNames(c.sess.ref) {
		c.eventsGranted([]byte(name), 0)
	}
}

// eventsUnsure watches again what a failed unlock (name) or unlock_all
// (nil) may have left held, telling no loss of it.
func (c *conn) eventsUnsure(name []byte) {
	if name != nil {
		c.eventsWatch(name, 0, true)
		return
	}
	if wb, ok := c.s.backend.(Watcher); ok && c.eventsOn() {
		for _, n := range wb.HeldNames(c.sess.ref) {
			c.eventsWatch([]byte(n), 0, true)
		}
	}
}

// eventsGranted starts watching a name the session holds under token (0:
// not known), if events are on. Called by the connection's goroutine.
func (c *conn) eventsGranted(name []byte, token uint64) { c.eventsWatch(name, token, false) }

func (c *conn) eventsWatch(name []byte, token uint64, asked bool) {
	e := &c.sessEvents
	key := string(name)
	e.mu.Lock()
	if hw := e.held[key]; e.on && hw != nil {
		// Watched already. A grant under another token means the one
		// watched is gone, though its event has not come yet.
		added := e.added
		switch {
		case token == 0 || token == hw.token:
		case hw.token == 0 || hw.asked:
			hw.token, hw.asked = token, false
		default:
			e.add(wire.AppendSessionEvent(nil, "lost", key, hw.token))
			hw.token = token
		}
		e.mu.Unlock()
		c.wakeIf(added)
		return
	}
	if !e.on {
		e.mu.Unlock()
		return
	}
	hw := &heldWatch{token: token, asked: asked}
	e.held[key] = hw
	e.mu.Unlock()
	stop, err := c.s.backend.(Watcher).Watch(name, c.sess.ref.ID, func(ev partition.WatchEvent) { c.heldChanged(key, hw, ev) })
	e.mu.Lock()
	if err != nil || e.held[key] != hw {
		if e.held[key] == hw {
			delete(e.held, key)
		}
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
	if e.held[name] != hw {
		e.mu.Unlock()
		return
	}
	added := e.added
	if ev.IsRisk() {
		if hw.unsure != ev.Unsure {
			hw.unsure = ev.Unsure
			if ev.Unsure {
				e.unsure++
			} else {
				e.unsure--
			}
			e.tellRisk()
		}
		e.mu.Unlock()
		c.wakeIf(added)
		return
	}
	if ev.Seq <= hw.seq {
		e.mu.Unlock()
		return
	}
	hw.seq = ev.Seq
	var stop func()
	switch {
	case hw.token == 0 && ev.Mine == 0:
		// Held when listed, and not now: whether it was lost or released
		// in between cannot be told without its token. Not watched.
		stop = e.forget(name, hw)
	case hw.token == 0:
		hw.token = ev.Mine
	case ev.Mine != hw.token && hw.asked:
		// Gone after an unlock of unknown outcome: that unlock, maybe.
		stop = e.forget(name, hw)
	case ev.Mine != hw.token:
		// Not held by this grant any more, and this connection did not
		// release it (an unlock stops the watch first).
		e.add(wire.AppendSessionEvent(nil, "lost", name, hw.token))
		stop = e.forget(name, hw)
	case ev.State.Waiters > hw.waiters:
		e.add(wire.AppendSessionEvent(nil, "wanted", name, uint64(ev.State.Waiters)))
	}
	hw.waiters = ev.State.Waiters
	e.mu.Unlock()
	if stop != nil {
		stop()
	}
	c.wakeIf(added)
}

// wakeIf wakes the connection's goroutine if lines were queued since
// the count was added.
func (c *conn) wakeIf(added uint64) {
	e := &c.sessEvents
	e.mu.Lock()
	more := e.added != added
	e.mu.Unlock()
	if more {
		c.wakeForEvents()
	}
}

// add queues a line, dropping a line past maxEventLines (see there).
// e.mu held.
func (e *sessionEvents) add(line []byte) {
	if len(e.lines) >= maxEventLines {
		i := slices.IndexFunc(e.lines, func(l []byte) bool { return bytes.HasPrefix(l, []byte("EVENT wanted ")) })
		e.lines = slices.Delete(e.lines, max(i, 0), max(i, 0)+1)
	}
	e.lines = append(e.lines, line)
	e.added++
}

// forget stops tracking hw and returns its stop, to be called once e.mu
// is released. e.mu held.
func (e *sessionEvents) forget(name string, hw *heldWatch) func() {
	delete(e.held, name)
	if hw.unsure {
		hw.unsure = false
		e.unsure--
		e.tellRisk()
	}
	if hw.stop == nil {
		return func() {}
	}
	return hw.stop
}

// tellRisk queues jeopardy or safe when the session's risk changed:
// at risk while the home cannot renew it or an owner of a name it holds
// cannot confirm that name. e.mu held.
func (e *sessionEvents) tellRisk() {
	risk := e.homeRisk || e.unsure > 0
	if !e.on || risk == e.risk {
		return
	}
	e.risk = risk
	if risk {
		e.add([]byte("EVENT session jeopardy\r\n"))
	} else {
		e.add([]byte("EVENT session safe\r\n"))
	}
}

// jeopardy takes the home's view of the session's risk (see tellRisk).
func (c *conn) jeopardy(atRisk bool) {
	e := &c.sessEvents
	e.mu.Lock()
	added := e.added
	e.homeRisk = atRisk
	e.tellRisk()
	e.mu.Unlock()
	c.wakeIf(added)
}

// eventsReleased stops watching a name the session released (all of
// them when name is nil).
func (c *conn) eventsReleased(name []byte) {
	e := &c.sessEvents
	e.mu.Lock()
	added := e.added
	var stops []func()
	for n, hw := range e.held {
		if name == nil || n == string(name) {
			stops = append(stops, e.forget(n, hw))
		}
	}
	e.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
	c.wakeIf(added)
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
