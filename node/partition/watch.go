// Watches: callers told of every confirmed change of a name's state.

package partition

import (
	"github.com/elock/elock/node/locktable"
)

// WatchEvent is a name's state as a watcher is told it.
type WatchEvent struct {
	Name  string
	State locktable.NameState
	// Last is the highest token this node has seen the name granted
	// with since it was first watched here: what a free name reports,
	// because the table forgets free names.
	Last uint64
	// Seq orders the events of one name at this node (it numbers the
	// events of the name's partition, and only grows). Events are told
	// from whichever goroutine confirms a change, so two may arrive out
	// of order: a watcher keeps the one with the highest Seq.
	Seq uint64
	// Mine is the token of the grant the watch's session holds, 0 when
	// it holds none (or the watch is no session's): how a session learns
	// that one of its shared grants or permits is gone while others stay.
	Mine uint64
	// Unsure, in an event with no Seq and no State, tells that the
	// name's state cannot be confirmed now (its owner is unreachable or
	// without a lease), or, when false, that it can again. Only a mesh
	// tells it; watchers of the state alone ignore it.
	Unsure bool
}

// IsRisk reports whether e only tells whether the name's state can be
// confirmed (see Unsure), and carries no state.
func (e WatchEvent) IsRisk() bool { return e.Seq == 0 }

// nameWatch is the watchers of one name.
type nameWatch struct {
	subs map[uint64]sub
	next uint64 // ids of subs
	seq  uint64
	last uint64
}

// sub is one watcher: whom to tell, and the session whose grant it
// reports as Mine ("" for none).
type sub struct {
	fn      func(WatchEvent)
	session string
}

// told is an event and the watchers to tell it to, each with its own
// Mine.
type told struct {
	ev   WatchEvent
	to   []func(WatchEvent)
	mine []uint64
}

func (e told) tell() {
	for i, fn := range e.to {
		ev := e.ev
		ev.Mine = e.mine[i]
		fn(ev)
	}
}

func (nw *nameWatch) told(name string, t *locktable.Table) told {
	e := told{ev: nw.event(name, t), to: make([]func(WatchEvent), 0, len(nw.subs)), mine: make([]uint64, 0, len(nw.subs))}
	for _, s := range nw.subs {
		var mine uint64
		if s.session != "" {
			mine = t.TokenOf(s.session, []byte(name))
		}
		e.to, e.mine = append(e.to, s.fn), append(e.mine, mine)
	}
	return e
}

// Watch tells fn name's state now, and again after every confirmed change
// of it, until stop is called; with a session, each event also tells
// that session's grant of name (Mine). fn is called with no partition
// mutex held, from any goroutine, and must not block. It may be told an
// event with a lower Seq after a higher one (see WatchEvent), and the
// first event may come after the next.
func (s *Set) Watch(name []byte, session string, fn func(WatchEvent)) (stop func(), err error) {
	p := s.partOf(name)
	key := string(name)
	var (
		id  uint64
		now WatchEvent
	)
	err = s.readConfirmed(p, func(t *locktable.Table, _ locktable.Time) {
		if p.watches == nil {
			p.watches = make(map[string]*nameWatch)
		}
		nw := p.watches[key]
		if nw == nil {
			nw = &nameWatch{subs: make(map[uint64]sub)}
			p.watches[key] = nw
		}
		nw.next++
		id = nw.next
		nw.subs[id] = sub{fn, session}
		p.watchSeq++
		nw.seq = p.watchSeq
		now = nw.event(key, t)
		if session != "" {
			now.Mine = t.TokenOf(session, name)
		}
	})
	stop = func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if nw := p.watches[key]; nw != nil {
			delete(nw.subs, id)
			if len(nw.subs) == 0 {
				delete(p.watches, key)
			}
		}
	}
	if err != nil {
		stop()
		return nil, err
	}
	fn(now)
	return stop, nil
}

func (nw *nameWatch) event(name string, t *locktable.Table) WatchEvent {
	st := t.State([]byte(name))
	nw.last = max(nw.last, st.Token)
	return WatchEvent{Name: name, State: st, Last: nw.last, Seq: nw.seq}
}

// noteWatched turns the watched names an operation changed into events,
// with their state as the operation left it. Called with p.mu held,
// after the operation; the events are told by settle.
func (s *Set) noteWatched(p *part, pend *pending) {
	for _, name := range pend.watched {
		nw := p.watches[name]
		if nw == nil {
			continue
		}
		p.watchSeq++
		nw.seq = p.watchSeq
		pend.events = append(pend.events, nw.told(name, p.table))
	}
	pend.watched = pend.watched[:0]
}
