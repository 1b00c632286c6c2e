package node

import (
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/node/wire"
)

// Watches: "watch NAME" tells the connection of every change of NAME,
// as EVENT lines between its replies.

// Watcher is implemented by backends that can watch names.
type Watcher interface {
	// Watch tells fn name's state now and after every confirmed change,
	// until stop is called; with a session, also the token of that
	// session's grant of name, and (in a mesh) whether the name's state
	// can be confirmed at all (see partition.Set.Watch, WatchEvent).
	Watch(name []byte, session string, fn func(partition.WatchEvent)) (stop func(), err error)
	// HeldNames lists the names the session holds, as far as this node
	// knows them.
	HeldNames(s SessionRef) []string
}

// Watch implements Watcher.
func (l *Local) Watch(name []byte, session string, fn func(partition.WatchEvent)) (func(), error) {
	return l.Set.Watch(name, session, fn)
}

// HeldNames implements Watcher.
func (l *Local) HeldNames(s SessionRef) []string { return l.Set.HeldNames(s.ID) }

// watches are a connection's watches and the events they wait to send.
// A slow reader's events coalesce: only the latest state of a name waits,
// so what waits is bounded by the names watched, not by the changes.
type watches struct {
	mu      sync.Mutex
	stops   map[string]func()
	seq     map[string]uint64 // the highest Seq taken, per name
	top     map[string]uint64 // the highest token told, per name
	pending map[string]partition.WatchEvent
	order   []string // names with a pending event, oldest first
}

// tell takes an event from any goroutine and wakes the connection.
func (c *conn) tell(e partition.WatchEvent) {
	w := &c.watch
	w.mu.Lock()
	if _, on := w.stops[e.Name]; !on || e.IsRisk() || e.Seq <= w.seq[e.Name] {
		// Unwatched, no state (a session's concern), or older than what
		// the connection has: a watcher never goes back to an older state.
		w.mu.Unlock()
		return
	}
	w.seq[e.Name] = e.Seq
	// A free name reports the highest token the connection has heard
	// of it: an owner that took the partition over never saw the
	// earlier grants, and must not make the token go back.
	top := max(w.top[e.Name], e.Last, e.State.Token)
	w.top[e.Name] = top
	if e.State.Free {
		e.Last = top
	}
	if _, queued := w.pending[e.Name]; !queued {
		w.order = append(w.order, e.Name)
	}
	w.pending[e.Name] = e
	w.mu.Unlock()
	c.wakeForEvents()
}

// wakeForEvents wakes the connection's goroutine to write events: the
// read deadline moves, and the flag the loop takes it back by is set,
// under wake so that no wake-up is lost (see rearm).
func (c *conn) wakeForEvents() {
	c.wake.Lock()
	c.nc.SetReadDeadline(time.Unix(1, 0))
	c.woken.Store(true)
	c.wake.Unlock()
}

// rearm takes back the read deadline an event moved, unless a grant has
// arrived meanwhile: that wake-up is the wait's, and stays. Under wake,
// so that a wake-up after the check is never undone.
func (c *conn) rearm() {
	c.wake.Lock()
	defer c.wake.Unlock()
	if c.woken.Swap(false) && len(c.outcome) == 0 {
		c.nc.SetReadDeadline(time.Time{})
	}
}

// eventsDuringWait writes the pending events while a lock waits, unless
// the grant has begun to go out directly (then they follow it). From
// here on the grant is left to this goroutine, which appends it after
// whatever it wrote. It reports false if the connection broke.
func (c *conn) eventsDuringWait() bool {
	c.wake.Lock()
	started := c.direct > 0 || len(c.outcome) > 0
	if !started {
		c.buffered.Store(true)
	}
	c.wake.Unlock()
	c.rearm()
	if started {
		return true
	}
	c.appendEvents()
	c.appendSessionEvents()
	return c.flush()
}

// drainEvents appends the pending events to the output, between whole
// replies. Called by the connection's goroutine only.
func (c *conn) drainEvents() {
	c.rearm()
	c.appendEvents()
	c.appendSessionEvents()
}

// appendEvents appends the pending events to the output.
func (c *conn) appendEvents() {
	w := &c.watch
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, name := range w.order {
		e := w.pending[name]
		delete(w.pending, name)
		st := e.State
		switch {
		case st.Free:
			c.out = wire.AppendEvent(c.out, name, "free", 0, e.Last, "")
		case st.Mode == locktable.Exclusive:
			c.out = wire.AppendEvent(c.out, name, "held", 0, st.Token, st.Value)
		default:
			c.out = wire.AppendEvent(c.out, name, "shared", uint64(st.Holders), st.Token, "")
		}
	}
	w.order = w.order[:0]
}

func (c *conn) cmdWatch() {
	name := c.req.Args[0]
	if !c.name(name) {
		return
	}
	wb, ok := c.s.backend.(Watcher)
	if !ok {
		c.fail(failure.Refuse(failure.Unspecified, "watch is not served by this node"))
		return
	}
	if reservedForEvents(name) && c.eventsOn() {
		c.out = wire.AppendError(c.out, wire.CodeBadRequest, "reserved name: "+string(name)+" cannot be watched on a connection with events on, where its events would read as session events")
		return
	}
	w := &c.watch
	w.mu.Lock()
	if w.stops == nil {
		w.stops, w.seq, w.top, w.pending = map[string]func(){}, map[string]uint64{}, map[string]uint64{}, map[string]partition.WatchEvent{}
	}
	_, on := w.stops[string(name)]
	full := !on && len(w.stops) >= c.s.cfg.MaxWatches
	if !on && !full {
		w.stops[string(name)] = func() {} // taken; the real stop below
	}
	w.mu.Unlock()
	switch {
	case full:
		c.out = wire.AppendError(c.out, wire.CodeLimit, "too many watches on this connection (max "+strconv.Itoa(c.s.cfg.MaxWatches)+")")
		return
	case on:
		c.out = append(c.out, wire.Watching...)
		return
	}
	// The reply comes before the first event: events are drained after
	// the request's reply is in the output.
	stop, err := wb.Watch(name, "", c.tell)
	w.mu.Lock()
	if err != nil {
		delete(w.stops, string(name))
		w.mu.Unlock()
		c.fail(err)
		return
	}
	w.stops[string(name)] = stop
	w.mu.Unlock()
	c.out = append(c.out, wire.Watching...)
}

func (c *conn) cmdUnwatch() {
	name := string(c.req.Args[0])
	w := &c.watch
	w.mu.Lock()
	stop, on := w.stops[name]
	delete(w.stops, name)
	delete(w.seq, name)
	delete(w.top, name)
	if _, queued := w.pending[name]; queued {
		delete(w.pending, name)
		w.order = slices.DeleteFunc(w.order, func(n string) bool { return n == name })
	}
	w.mu.Unlock()
	if on {
		stop()
	}
	c.out = append(c.out, wire.OK...)
}

// watchesReserved reports whether the connection watches a name that
// session events would make ambiguous (see sessionEventNames).
func (c *conn) watchesReserved() bool {
	w := &c.watch
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, n := range sessionEventNames {
		if _, on := w.stops[n]; on {
			return true
		}
	}
	return false
}

// stopWatches ends every watch of a closing connection.
func (c *conn) stopWatches() {
	w := &c.watch
	w.mu.Lock()
	stops := w.stops
	w.stops = nil
	w.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
}
