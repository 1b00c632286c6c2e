package client

import (
	"bytes"
	"strconv"
)

// SessionEvent is what the server tells a session that asked for events
// (WithEvents): its locks are at risk or safe again, someone started
// waiting for a name it holds, or an exclusive grant of it is gone.
type SessionEvent struct {
	Kind    SessionEventKind
	Name    string // Wanted, Lost
	Waiters int    // Wanted: how many wait now
	Token   uint64 // Lost: the grant's token
}

// SessionEventKind says what a SessionEvent reports.
type SessionEventKind string

const (
	Jeopardy SessionEventKind = "jeopardy" // the session's locks may be lost soon
	Safe     SessionEventKind = "safe"     // the jeopardy has passed
	Wanted   SessionEventKind = "wanted"   // someone waits for a name the session holds
	Lost     SessionEventKind = "lost"     // a grant went without an unlock
)

// WithEvents asks the server for session events ("events on") on every
// connection, and sends them on ch. Delivery never blocks the
// connection: an event that finds ch full is dropped, so give ch room.
// A lost grant is also reported to WithOnLost's function when the
// client believed it held it. A jeopardy told on a connection that then
// broke is followed by Safe once a new connection has resumed the
// session (where the server tells a jeopardy again if it persists).
// Names lost, wanted and session cannot be watched by such a client:
// their events would read as session events.
func WithEvents(ch chan<- SessionEvent) Option { return func(c *config) { c.events = ch } }

// parseSessionEvent parses "EVENT session jeopardy|safe", "EVENT wanted
// NAME N" and "EVENT lost NAME TOKEN".
func parseSessionEvent(line []byte) (SessionEvent, bool) {
	f := bytes.Fields(line)
	if len(f) < 3 || string(f[0]) != "EVENT" {
		return SessionEvent{}, false
	}
	switch string(f[1]) {
	case "session":
		if len(f) == 3 && (string(f[2]) == "jeopardy" || string(f[2]) == "safe") {
			return SessionEvent{Kind: SessionEventKind(f[2])}, true
		}
	case "wanted":
		if len(f) != 4 {
			break
		}
		if n, err := strconv.Atoi(string(f[3])); err == nil && n >= 0 {
			return SessionEvent{Kind: Wanted, Name: string(f[2]), Waiters: n}, true
		}
	case "lost":
		if len(f) != 4 {
			break
		}
		if t, err := strconv.ParseUint(string(f[3]), 10, 64); err == nil {
			return SessionEvent{Kind: Lost, Name: string(f[2]), Token: t}, true
		}
	}
	return SessionEvent{}, false
}

// onEvent routes a connection's EVENT line: a watched name's state to
// its watchers, else a session event to WithEvents' channel. (The server
// refuses to watch a name called "session", "wanted" or "lost" on a
// connection with events on, so no line reads both ways.)
func (c *Client) onEvent(line []byte) {
	if c.cfg.events != nil && !c.watches.watching(line) {
		if ev, ok := parseSessionEvent(line); ok {
			c.sessionEvent(ev)
			return
		}
	}
	c.watches.event(line)
}

// sessionEvent keeps what a session event says of the client's state,
// and passes it on: a lost grant it believed held is forgotten and
// reported as lost.
func (c *Client) sessionEvent(ev SessionEvent) {
	var lost []LostLock
	c.mu.Lock()
	switch ev.Kind {
	case Jeopardy:
		c.atRisk = true
	case Safe:
		c.atRisk = false
	case Lost:
		if tok, ok := c.held[ev.Name]; ok && tok == ev.Token {
			delete(c.held, ev.Name)
			lost = []LostLock{{Name: ev.Name, Token: ev.Token, Err: ErrLockLost}}
		}
	}
	c.mu.Unlock()
	if len(lost) > 0 {
		c.report(lost)
	}
	select {
	case c.cfg.events <- ev:
	default:
	}
}

// eventsOn asks for session events on a new connection, if wanted.
func (c *Client) eventsOn(cn *conn) error {
	if c.cfg.events == nil {
		return nil
	}
	// A jeopardy told on an earlier connection is over: the session is
	// resumed on this one, whose server tells a jeopardy again if it
	// persists. Told before asking, so that it comes before any event of
	// this connection.
	c.mu.Lock()
	was := c.atRisk
	c.atRisk = false
	c.mu.Unlock()
	if was {
		select {
		case c.cfg.events <- SessionEvent{Kind: Safe}:
		default:
		}
	}
	if err := cn.send("events on"); err != nil {
		return err
	}
	r, err := cn.read()
	if err != nil {
		return err
	}
	if !r.ok() {
		c.log.Warn("events on refused", "err", r.err())
	}
	return nil
}
