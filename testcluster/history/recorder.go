package history

import (
	"fmt"
	"sync"
	"time"
)

// Recorder records a history. It is safe for concurrent use by any number
// of clients. Times come from the monotonic clock, as offsets from
// NewRecorder.
type Recorder struct {
	start time.Time

	mu   sync.Mutex
	ops  []Operation // guarded by mu; a Pending indexes it
	done []bool      // guarded by mu; done[i]: ops[i] has its outcome
}

// NewRecorder returns an empty recorder whose clock starts now.
func NewRecorder() *Recorder {
	return &Recorder{start: time.Now()}
}

// Now returns the recorder's current time.
func (r *Recorder) Now() time.Duration { return time.Since(r.start) }

// Pending is an operation that has been invoked and awaits its outcome.
// Exactly one of Return and Unknown must be called on it; calling a second
// one panics. An operation left pending when History is called is taken as
// Unknown.
type Pending struct {
	r *Recorder
	i int
}

// Invoke records that op is being sent now. Call it just before writing
// the request.
func (r *Recorder) Invoke(op Op) *Pending {
	return r.InvokeAt(op, r.Now())
}

// InvokeAt records op as invoked at the given time, for operations that are
// not requests sent now.
func (r *Recorder) InvokeAt(op Op, at time.Duration) *Pending {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, Operation{Op: op, Call: at, Return: Never, Result: Result{Status: Unknown}})
	r.done = append(r.done, false)
	return &Pending{r: r, i: len(r.ops) - 1}
}

// Detach records that session was detached from its connection: the
// server may expire it, and release its locks, at any time from
// detached+timeout on. It adds an Expire operation invoked then, of
// unknown outcome until the test knows better (Return(Result{Status: OK})
// once it knows the session expired).
//
// detached must be the earliest time the server may have detached the
// session. For a lost connection that is the invocation time of the last
// request answered on it (or of the conn_id that attached it, if none),
// not the time the client noticed: the server may notice first. A Resume
// of the session invoked after detached that returns OK before
// detached+timeout cancels the Expire.
func (r *Recorder) Detach(client int, session string, detached, timeout time.Duration) *Pending {
	p := r.InvokeAt(Op{Client: client, Session: session, Kind: Expire}, detached+timeout)
	r.mu.Lock()
	r.ops[p.i].Detached = detached
	r.mu.Unlock()
	return p
}

// Call returns the operation's invocation time.
func (p *Pending) Call() time.Duration {
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	return p.r.ops[p.i].Call
}

// Return records the answer, received now. A Status of Unknown is the same
// as calling Unknown. An operation invoked in the future (an Expire) that
// returns earlier is recorded as returning at its invocation.
func (p *Pending) Return(res Result) {
	if res.Status == Unknown {
		p.Unknown()
		return
	}
	now := p.r.Now()
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	o := p.finish()
	o.Result = res
	o.Return = max(now, o.Call)
}

// Unknown records that the outcome will never be known: the request may
// take effect at any time after its invocation, or never.
func (p *Pending) Unknown() {
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	o := p.finish()
	o.Result = Result{Status: Unknown}
	o.Return = Never
}

// finish marks the operation done and returns it. p.r.mu must be held.
func (p *Pending) finish() *Operation {
	if p.r.done[p.i] {
		panic(fmt.Sprintf("history: operation %d (%s) completed twice", p.i, p.r.ops[p.i].describe()))
	}
	p.r.done[p.i] = true
	return &p.r.ops[p.i]
}

// History returns a copy of the operations recorded so far, in invocation
// order of the calls to Invoke. Pending operations appear as Unknown.
func (r *Recorder) History() []Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := make([]Operation, len(r.ops))
	copy(h, r.ops)
	return h
}
