package mesh

import (
	"sync"
	"time"
)

// renewals is a session owner's account of when each session's home last
// renewed the session's record, and under which epoch of the record's
// partition. A record that moved away and came back must not be judged by
// a renewal from before it left: its home renewed it elsewhere meanwhile,
// and a stale time would get a live session detached.
type renewals struct {
	mu sync.Mutex
	m  map[string]renewal
}

type renewal struct {
	at    time.Time
	epoch uint64
}

func (r *renewals) note(id string, epoch uint64, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[id] = renewal{at: at, epoch: epoch}
}

// last is when id was last renewed here, if it was under epoch.
func (r *renewals) last(id string, epoch uint64) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	x, ok := r.m[id]
	if !ok || x.epoch != epoch {
		return time.Time{}, false
	}
	return x.at, true
}

// forget drops every renewal older than before.
func (r *renewals) forget(before time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, x := range r.m {
		if x.at.Before(before) {
			delete(r.m, id)
		}
	}
}
