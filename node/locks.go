package node

import (
	"context"
	"strconv"
	"time"

	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/wire"
)

// The introspection commands: "label TEXT" names this session for
// others, and "locks [PREFIX [LIMIT [ORDER]]]" lists the held locks of the
// whole lock service with their holders' labels.

// LockOrder is the order of a lock listing, which also decides which
// locks a limit keeps.
type LockOrder uint8

const (
	ByName    LockOrder = iota // by name, bytewise
	ByHeld                     // longest held first
	ByWaiters                  // longest queue first
)

// LockQuery asks for the held locks whose names start with Prefix: the
// first Limit of them in Order.
type LockQuery struct {
	Prefix []byte
	Limit  int
	Order  LockOrder
}

// LockEntry is one held lock. Label is the holder's label, empty when it
// set none; the holder's session id is never shown.
type LockEntry struct {
	Name    string
	Token   uint64
	HeldFor time.Duration
	Waiters int
	Label   string
}

// LockList is the answer to a LockQuery. Truncated says that more locks
// matched than Locks holds.
type LockList struct {
	Locks     []LockEntry
	Truncated bool
}

// Lister is implemented by backends that can list the held locks of the
// whole lock service: the locks command, and the status page.
//
// Contract: every lock of the answer is reported by the current owner of
// its partition, each partition read once; if some partition cannot be
// read in time, Locks fails (a *failure.Error, as Backend's methods do)
// rather than answer with part of the list. The answer holds at most
// q.Limit locks, the first in q.Order.
type Lister interface {
	Locks(ctx context.Context, q LockQuery) (LockList, error)
}

// The bounds of the locks command.
const (
	DefaultLockLimit = 1000
	MaxLockLimit     = 10000
	// MaxLabel bounds a session's label.
	MaxLabel = 128
)

// ListOrder is the lock table's order for o.
func (o LockOrder) ListOrder() locktable.ListOrder {
	switch o {
	case ByHeld:
		return locktable.ListByHeld
	case ByWaiters:
		return locktable.ListByWaiters
	}
	return locktable.ListByName
}

// Locks lists the held locks of this node's partitions, which are all
// of them.
func (l *Local) Locks(_ context.Context, q LockQuery) (LockList, error) {
	ls, truncated, _ := l.Set.List(nil, q.Prefix, q.Limit, q.Order.ListOrder())
	return Entries(ls, truncated, l.Clients.Labels(Holders(ls))), nil
}

var _ Lister = (*Local)(nil)

// Holders returns the distinct holders' session ids of ls, for Labels.
func Holders(ls []locktable.Listed) []string {
	seen := make(map[string]bool, len(ls))
	var ids []string
	for _, x := range ls {
		if !seen[x.Session] {
			seen[x.Session] = true
			ids = append(ids, x.Session)
		}
	}
	return ids
}

// Entries turns a lock table listing into a LockList, each holder's
// session id replaced by its label in labels (absent: none).
func Entries(ls []locktable.Listed, truncated bool, labels map[string]string) LockList {
	out := LockList{Locks: make([]LockEntry, len(ls)), Truncated: truncated}
	for i, x := range ls {
		out.Locks[i] = LockEntry{Name: x.Name, Token: x.Token, HeldFor: x.HeldFor, Waiters: x.Waiters, Label: labels[x.Session]}
	}
	return out
}

// ValidLabel reports why b cannot be a label, or "" if it can: 1 to
// MaxLabel printable ASCII bytes without spaces. A label is shown to
// every client, on one line among others.
func ValidLabel(b []byte) string {
	if len(b) == 0 || len(b) > MaxLabel {
		return "bad label: want 1 to " + strconv.Itoa(MaxLabel) + " bytes"
	}
	for _, ch := range b {
		if ch <= ' ' || ch > '~' {
			return "bad label: want printable ASCII without spaces (0x21..0x7e)"
		}
	}
	return ""
}

// ParseLocks reads the arguments of "locks [PREFIX [LIMIT [ORDER]]]"
// (Args aliases the request line; so does the query's Prefix). A single
// trailing '*' of PREFIX is a wildcard and is dropped, so that "locks *"
// lists everything. It returns the reason for a 400 when they are bad.
func ParseLocks(r *wire.Request) (q LockQuery, reason string) {
	q = LockQuery{Prefix: lockPrefix(r), Limit: DefaultLockLimit}
	if r.NArgs >= 2 {
		n, ok := wire.ParseUint(r.Args[1], MaxLockLimit)
		if !ok || n < 1 {
			return q, "bad limit: want a whole number from 1 to " + strconv.Itoa(MaxLockLimit)
		}
		q.Limit = int(n)
	}
	if r.NArgs >= 3 {
		switch string(r.Args[2]) {
		case "name":
			q.Order = ByName
		case "held":
			q.Order = ByHeld
		case "waiters":
			q.Order = ByWaiters
		default:
			return q, "bad order: want name, held or waiters"
		}
	}
	return q, ""
}

// lockPrefix is the prefix a locks request asks for, its wildcard
// dropped: what the ACL checks.
func lockPrefix(r *wire.Request) []byte {
	p := r.Arg(0)
	if n := len(p); n > 0 && p[n-1] == '*' {
		p = p[:n-1]
	}
	return p
}

func (c *conn) cmdLabel() {
	text := c.req.Args[0]
	if string(text) != "-" {
		if why := ValidLabel(text); why != "" {
			c.out = wire.AppendError(c.out, wire.CodeBadRequest, why)
			return
		}
	}
	sess := c.session()
	if sess == nil {
		return
	}
	label := ""
	if string(text) != "-" {
		label = string(text)
	}
	c.s.clients.setLabel(sess.ref.ID, c, label)
	c.out = append(c.out, wire.LabelSet...)
}

// MaxListings is how many locks commands a node gathers at once; more
// are refused as retryable. Each may hold up to a limit's worth of
// locks, from every owner, in memory until it is answered.
const MaxListings = 4

var errListingsBusy = failure.Retry(failure.Busy, "too many lock listings in progress; retry")

// locksTimeout bounds the gathering of a locks answer: longer than a
// takeover, after which every partition has an owner again.
const locksTimeout = 20 * time.Second

func (c *conn) cmdLocks() {
	lister, ok := c.s.backend.(Lister)
	if !ok {
		c.out = wire.AppendUnknown(c.out, c.req.Verb)
		return
	}
	q, why := ParseLocks(&c.req)
	if why != "" {
		c.out = wire.AppendError(c.out, wire.CodeBadRequest, why)
		return
	}
	if !c.name(q.Prefix) {
		return
	}
	select {
	case c.s.listings <- struct{}{}:
	default:
		c.fail(errListingsBusy)
		return
	}
	ctx, cancel := context.WithTimeout(c.s.ctx, locksTimeout)
	list, err := lister.Locks(ctx, q)
	cancel()
	<-c.s.listings
	if err != nil {
		c.fail(err)
		return
	}
	c.out = append(c.out, wire.LocksHeader...)
	for _, l := range list.Locks {
		c.out = append(c.out, "LOCK "...)
		c.out = append(c.out, l.Name...)
		c.out = append(c.out, ' ')
		c.out = strconv.AppendUint(c.out, l.Token, 10)
		c.out = append(c.out, ' ')
		c.out = strconv.AppendInt(c.out, int64(l.HeldFor/time.Millisecond), 10)
		c.out = append(c.out, ' ')
		c.out = strconv.AppendInt(c.out, int64(l.Waiters), 10)
		c.out = append(c.out, ' ')
		if l.Label == "" {
			c.out = append(c.out, '-')
		} else {
			c.out = append(c.out, l.Label...)
		}
		c.out = append(c.out, '\r', '\n')
	}
	if list.Truncated {
		c.out = wire.AppendStat(c.out, "truncated", 1)
	}
	c.out = append(c.out, wire.End...)
}
