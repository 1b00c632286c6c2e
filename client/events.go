package client

import "sync"

// LostLock reports a lock the client believed it held and no longer does:
// an exclusive or shared lock, or a semaphore's permit.
type LostLock struct {
	Name  string
	Token uint64 // the fencing token it was held with
	// Err says why: it wraps ErrSessionLost when the whole session went
	// (expired, not resumed in time, or the resume was refused), and is
	// ErrLockLost when only this lock was found gone or re-granted.
	Err error
}

// dispatcher hands lost-lock reports to the application's function on its
// own goroutine, so that the function never runs under the Client's locks
// and a slow one never stalls the connection.
type dispatcher struct {
	fn   func(LostLock)
	mu   sync.Mutex
	q    []LostLock
	wake chan struct{} // capacity 1
	stop chan struct{}
	done chan struct{}
}

func newDispatcher(fn func(LostLock)) *dispatcher {
	return &dispatcher{
		fn:   fn,
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
}

func (d *dispatcher) push(evs []LostLock) {
	if d.fn == nil || len(evs) == 0 {
		return
	}
	d.mu.Lock()
	d.q = append(d.q, evs...)
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// start runs the delivery goroutine; close stops and joins it.
func (d *dispatcher) start() {
	if d.fn == nil {
		close(d.done)
		return
	}
	go d.run()
}

func (d *dispatcher) run() {
	defer close(d.done)
	for {
		d.deliver()
		select {
		case <-d.wake:
		case <-d.stop:
			// Reports made before Close still reach the application.
			d.deliver()
			return
		}
	}
}

func (d *dispatcher) deliver() {
	for {
		d.mu.Lock()
		q := d.q
		d.q = nil
		d.mu.Unlock()
		if len(q) == 0 {
			return
		}
		for _, ev := range q {
			d.fn(ev)
		}
	}
}

func (d *dispatcher) close() {
	close(d.stop)
	<-d.done
}
