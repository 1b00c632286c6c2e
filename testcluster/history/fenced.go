package history

import (
	"errors"
	"fmt"
	"sync"
)

// ErrStaleToken is returned by FencedResource.Write and Read for a token
// the fence must refuse.
var ErrStaleToken = errors.New("history: stale fencing token")

// FencedResource is the resource a lock protects, reduced to its fence,
// as the README's "How to use the tokens of shared grants" describes it.
// Exclusive holders write it and shared holders read it:
//
//   - a write is accepted only with a token strictly above every token
//     the fence has accepted for the name, written or read: a writer
//     comes after every earlier writer and reader. (The README allows
//     equal, a holder writing again; here each grant writes once, so
//     equal is a token granted twice.)
//   - a read is accepted only with a token not below the last accepted
//     write's: a reader comes after every earlier writer, and readers
//     may come in any order among themselves. (Equal is the writer's own
//     grant, taken shared re-entrantly.)
//
// Semaphore permits do not exclude each other, so nothing a fence could
// check protects what they guard; their holders use no fence. It is safe
// for concurrent use.
//
// Call Write (or Read) once per new grant, with its token, while holding
// the lock. A re-entrant grant carries the same token and its write would
// be refused.
type FencedResource struct {
	mu       sync.Mutex
	written  map[string]uint64 // guarded by mu: highest accepted write per name
	seen     map[string]uint64 // guarded by mu: highest accepted token per name
	accepted uint64            // guarded by mu
	rejected []Rejection       // guarded by mu
}

// Rejection is a refused write or read.
type Rejection struct {
	Name string
	// Read says the refused access was a read.
	Read bool
	// Token is the refused token; Last the accepted token it is not
	// above: the highest accepted (a write) or the last write (a read).
	Token, Last uint64
}

func (r Rejection) String() string {
	what, last := "write", "accepted"
	if r.Read {
		what, last = "read", "written"
	}
	if r.Token == 0 {
		return fmt.Sprintf("lock %q: %s without a token refused", r.Name, what)
	}
	return fmt.Sprintf("lock %q: %s with token %d refused, token %d was already %s", r.Name, what, r.Token, r.Last, last)
}

// NewFencedResource returns a resource that has accepted nothing.
func NewFencedResource() *FencedResource {
	return &FencedResource{written: map[string]uint64{}, seen: map[string]uint64{}}
}

// Write accepts a write to name with token, or returns an error wrapping
// ErrStaleToken.
func (f *FencedResource) Write(name string, token uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	last, seen := f.seen[name]
	if seen && token <= last || token == 0 {
		return f.reject(Rejection{Name: name, Token: token, Last: last})
	}
	f.written[name], f.seen[name] = token, token
	f.accepted++
	return nil
}

// Read accepts a read of name with token, or returns an error wrapping
// ErrStaleToken.
func (f *FencedResource) Read(name string, token uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	last := f.written[name]
	if token < last || token == 0 {
		return f.reject(Rejection{Name: name, Read: true, Token: token, Last: last})
	}
	f.seen[name] = max(f.seen[name], token)
	f.accepted++
	return nil
}

// reject records r. f.mu must be held.
func (f *FencedResource) reject(r Rejection) error {
	f.rejected = append(f.rejected, r)
	return fmt.Errorf("%w: %s", ErrStaleToken, r)
}

// Accepted returns how many writes and reads were accepted.
func (f *FencedResource) Accepted() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.accepted
}

// Rejections returns how many writes and reads were refused.
func (f *FencedResource) Rejections() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.rejected)
}

// Rejected returns a copy of the refused writes and reads, in order.
func (f *FencedResource) Rejected() []Rejection {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Rejection(nil), f.rejected...)
}

// Check returns the refused writes and reads as a verdict, for tests in
// which every access happens while its lock is certainly held, so that
// none may be refused. Under faults that let a session expire while its
// client still writes (a paused client), refusals are the fence doing its
// job: report Rejections instead.
func (f *FencedResource) Check() Check {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := Check{Checker: "fenced-resource", Ops: int(f.accepted) + len(f.rejected)}
	for _, r := range f.rejected {
		c.Violations = append(c.Violations, Violation{Name: r.Name, Message: r.String()})
	}
	return c
}
