package history

import (
	"errors"
	"fmt"
	"sync"
)

// ErrStaleToken is returned by FencedResource.Write for a token not above
// the highest the resource has accepted for the name.
var ErrStaleToken = errors.New("history: stale fencing token")

// FencedResource is the resource a lock protects, reduced to its fence: it
// accepts a write for a name only with a token strictly above every token
// it accepted for that name. It is safe for concurrent use.
//
// Call Write once per new grant, with its token, while holding the lock. A
// re-entrant grant carries the same token and would be refused.
type FencedResource struct {
	mu       sync.Mutex
	last     map[string]uint64 // guarded by mu: highest accepted token per name
	accepted uint64            // guarded by mu
	rejected []Rejection       // guarded by mu
}

// Rejection is a refused write.
type Rejection struct {
	Name string
	// Token is the refused token; Last the highest accepted before it.
	Token, Last uint64
}

func (r Rejection) String() string {
	if r.Token == 0 {
		return fmt.Sprintf("lock %q: write without a token refused", r.Name)
	}
	return fmt.Sprintf("lock %q: write with token %d refused, token %d was already accepted", r.Name, r.Token, r.Last)
}

// NewFencedResource returns a resource that has accepted nothing.
func NewFencedResource() *FencedResource {
	return &FencedResource{last: map[string]uint64{}}
}

// Write accepts a write to name with token, or returns an error wrapping
// ErrStaleToken.
func (f *FencedResource) Write(name string, token uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	last, seen := f.last[name]
	if seen && token <= last || token == 0 {
		r := Rejection{Name: name, Token: token, Last: last}
		f.rejected = append(f.rejected, r)
		return fmt.Errorf("%w: %s", ErrStaleToken, r)
	}
	f.last[name] = token
	f.accepted++
	return nil
}

// Accepted returns how many writes were accepted.
func (f *FencedResource) Accepted() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.accepted
}

// Rejections returns how many writes were refused.
func (f *FencedResource) Rejections() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.rejected)
}

// Rejected returns a copy of the refused writes, in order.
func (f *FencedResource) Rejected() []Rejection {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Rejection(nil), f.rejected...)
}

// Check returns the refused writes as a verdict, for tests in which every
// write happens while its lock is certainly held, so that none may be
// refused. Under faults that let a session expire while its client still
// writes (a paused client), refusals are the fence doing its job: report
// Rejections instead.
func (f *FencedResource) Check() Check {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := Check{Checker: "fenced-resource", Ops: int(f.accepted) + len(f.rejected)}
	for _, r := range f.rejected {
		c.Violations = append(c.Violations, Violation{Name: r.Name, Message: r.String()})
	}
	return c
}
