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
	// Seq orders the events of one name at this node. Events are told
	// from whichever goroutine confirms a change, so two may arrive out
	// of order: a watcher keeps the one with the highest Seq.
	Seq uint64
}

// nameWatch is the watchers of one name.
type nameWatch struct {
	subs map[uint64]func(WatchEvent)
	next uint64 // ids of subs
	seq  uint64
	last uint64
}

// told is an event and the watchers to tell it to.
type told struct {
	ev WatchEvent
	to []func(WatchEvent)
}

// Watch tells fn name's state now, and again after every confirmed change
// of it, until stop is called. fn is called with no partition mutex held,
// from any goroutine, and must not block. It may be told an event with a
// lower Seq after a higher one (see WatchEvent), and the first event may
// come after the next.
func (s *Set) Watch(name []byte, fn func(WatchEvent)) (stop func(), err error) {
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
			nw = &nameWatch{subs: make(map[uint64]func(WatchEvent))}
			p.watches[key] = nw
		}
		nw.next++
		id = nw.next
		nw.subs[id] = fn
		nw.seq++
		now = nw.event(key, t)
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
		nw.seq++
		e := told{ev: nw.event(name, p.table), to: make([]func(WatchEvent), 0, len(nw.subs))}
		for _, fn := range nw.subs {
			e.to = append(e.to, fn)
		}
		pend.events = append(pend.events, e)
	}
	pend.watched = pend.watched[:0]
}
