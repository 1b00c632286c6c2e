package history

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// rec is an operation of a prepared history, with its index in the
// history it came from, which messages cite as #ID.
type rec struct {
	Operation
	id int
}

func (r rec) String() string { return fmt.Sprintf("#%d %s", r.id, r.Operation) }

// releases reports whether r may release name for its session: an unlock
// of name that did or may have worked, an unlock_all, or an expiry.
func (r rec) releases(name string) bool {
	switch r.Kind {
	case Unlock:
		return r.Name == name && (r.Status == Unlocked || r.Status == Unknown)
	case UnlockAll, Expire:
		return true
	case Drop:
		return r.Name == name
	}
	return false
}

// grant reports whether r is an acknowledged grant, of any mode.
func (r rec) grant() bool {
	return r.Kind.Takes() && r.Status == Acquired
}

// Validate reports every malformed operation of h (up to a few), or nil.
func Validate(h []Operation) error {
	var errs []error
	for i, o := range h {
		if err := o.validate(); err != nil {
			errs = append(errs, fmt.Errorf("#%d %s: %w", i, o.describe(), err))
			if len(errs) == 10 {
				errs = append(errs, errors.New("(more not shown)"))
				break
			}
		}
	}
	if errs != nil {
		return fmt.Errorf("history: malformed: %w", errors.Join(errs...))
	}
	return nil
}

// prepare validates h and returns what the checkers look at, ordered by
// Call: refused operations are dropped (they certainly did nothing), an
// unknown outcome returns Never, Expires cancelled by a Resume are
// dropped, and Resumes are dropped (they are informational).
func prepare(h []Operation) ([]rec, error) {
	if err := Validate(h); err != nil {
		return nil, err
	}
	var resumes []rec
	for i, o := range h {
		if o.Kind == Resume && o.Status == OK {
			resumes = append(resumes, rec{o, i})
		}
	}
	out := make([]rec, 0, len(h))
	for i, o := range h {
		if o.Status == Refused || o.Kind == Resume {
			continue
		}
		if o.Status == Unknown {
			o.Return = Never
		}
		if o.Kind == Expire && cancelled(o, resumes) {
			continue
		}
		out = append(out, rec{o, i})
	}
	slices.SortStableFunc(out, func(a, b rec) int { return cmpTime(a.Call, b.Call) })
	return out, nil
}

// cancelled reports whether a successful resume of e's session was sent
// after it was detached and completed before it could expire. The resume
// that attached the lost connection was sent at e.Detached at the latest,
// so it does not count.
func cancelled(e Operation, resumes []rec) bool {
	if e.Detached == 0 {
		return false
	}
	for _, r := range resumes {
		if r.Session == e.Session && r.Call > e.Detached && r.Return < e.Call {
			return true
		}
	}
	return false
}

func cmpTime(a, b time.Duration) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// names returns the lock names that ops mention, sorted.
func names(ops []rec) []string {
	seen := map[string]bool{}
	var ns []string
	for _, o := range ops {
		if o.Name != "" && !seen[o.Name] {
			seen[o.Name] = true
			ns = append(ns, o.Name)
		}
	}
	slices.Sort(ns)
	return ns
}

// byName returns, for each name, the operations on it (those that take
// it, unlocks and drops), in Call order.
func byName(ops []rec) map[string][]rec {
	m := map[string][]rec{}
	for _, o := range ops {
		if o.Name != "" {
			m[o.Name] = append(m[o.Name], o)
		}
	}
	return m
}

// bySession returns, for each session, the operations that may release
// its locks (unlock with a maybe-releasing outcome, unlock_all, expiry),
// in Call order.
func releasesBySession(ops []rec) map[string][]rec {
	m := map[string][]rec{}
	for _, o := range ops {
		if o.releases(o.Name) {
			m[o.Session] = append(m[o.Session], o)
		}
	}
	return m
}

// A hold is an interval during which a session certainly held a name in
// one mode: from the reply of its first grant to the invocation of the
// first operation that may have released it, exclusive. Grants of the
// same session and mode whose intervals touch are merged into one hold,
// so re-entrant grants extend it. (An rlock by an exclusive holder is
// re-entrant too, and makes a shared hold inside the exclusive one.)
type hold struct {
	name, session string
	client        int
	mode          Mode
	grants        []rec         // the grants it merges, by reply time
	from, until   time.Duration // held during [from, until); until may be Never
	end           *rec          // the operation that may end it; nil: nothing did
}

// limit is the largest LIMIT the grants of a permit hold named.
func (h hold) limit() int {
	l := 0
	for _, g := range h.grants {
		l = max(l, g.Limit)
	}
	return l
}

func (h hold) String() string {
	g := h.grants[0]
	how := "held it"
	switch h.mode {
	case Shared:
		how = "held it shared"
	case Permit:
		how = "held a permit"
	}
	s := fmt.Sprintf("session %s (client %d) %s with token %s from %s (reply to #%d %s, invoked at %s",
		h.session, g.Client, how, tokenString(holdToken(h)), stamp(h.from), g.id, g.describe(), stamp(g.Call))
	if len(h.grants) > 1 {
		s += fmt.Sprintf(", re-entered %d times", len(h.grants)-1)
	}
	s += ") "
	if h.end == nil {
		return s + "to the end of the history"
	}
	verb := "until the invocation of"
	if h.end.Kind == Expire {
		verb = "until its earliest expiry,"
	}
	return s + fmt.Sprintf("%s %s at %s (#%d %s)", verb, h.end.Kind, stamp(h.until), h.end.id, h.end.describe())
}

// holds computes the certain holds of name from its operations and each
// session's releases. A grant G holds from its Return until the earliest
// Call of a release that may come after G took effect, that is, whose
// Return is not before G's Call. A grant with no such interval (a release
// was already possibly under way) holds for no certain time.
func holds(name string, ops []rec, releases map[string][]rec) []hold {
	var single []hold
	for _, g := range ops {
		if !g.grant() {
			continue
		}
		until := Never
		var end *rec
		for i, x := range releases[g.Session] {
			if x.releases(name) && x.Return >= g.Call && x.Call < until {
				until, end = x.Call, &releases[g.Session][i]
			}
		}
		if until <= g.Return {
			continue
		}
		single = append(single, hold{name: name, session: g.Session, client: g.Client, mode: g.Kind.Mode(),
			grants: []rec{g}, from: g.Return, until: until, end: end})
	}
	slices.SortStableFunc(single, func(a, b hold) int {
		if c := strings.Compare(a.session, b.session); c != 0 {
			return c
		}
		if c := int(a.mode) - int(b.mode); c != 0 {
			return c
		}
		return cmpTime(a.from, b.from)
	})
	var merged []hold
	for _, h := range single {
		if n := len(merged); n > 0 && merged[n-1].session == h.session && merged[n-1].mode == h.mode && h.from < merged[n-1].until {
			last := &merged[n-1]
			last.grants = append(last.grants, h.grants...)
			if h.until > last.until {
				last.until, last.end = h.until, h.end
			}
			continue
		}
		merged = append(merged, h)
	}
	slices.SortStableFunc(merged, func(a, b hold) int { return cmpTime(a.from, b.from) })
	return merged
}

// byHolds is what the checkers of holds (overlap, permits, lost-grants)
// start from: h prepared, its operations by name, and each session's
// releases. A malformed history comes back as checker's verdict, ok
// false.
func byHolds(checker string, h []Operation) (c Check, ops []rec, perName, releases map[string][]rec, ok bool) {
	ops, err := prepare(h)
	if err != nil {
		return malformed(checker, len(h), err), nil, nil, nil, false
	}
	return Check{Checker: checker, Ops: len(ops)}, ops, byName(ops), releasesBySession(ops), true
}
