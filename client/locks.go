package client

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrInvalidLabel: a label is not 1 to 128 printable ASCII bytes without
// spaces. Nothing was sent.
var ErrInvalidLabel = fmt.Errorf("client: invalid label (want 1 to %d printable ASCII bytes without spaces)", maxLabel)

const maxLabel = 128

// Label sets the label others see next to this session's locks ("locks",
// "elock locks"), for example host:pid; "" clears it. The server keeps a
// label with the connection that set it, so the client sets it again
// after every reconnect.
func (c *Client) Label(ctx context.Context, label string) error {
	if label != "" && !validLabel(label) {
		return ErrInvalidLabel
	}
	arg := label
	if arg == "" {
		arg = "-"
	}
	return c.setting(ctx, "label", "label "+arg, func() { c.label = label })
}

func validLabel(s string) bool {
	if len(s) > maxLabel || s == "-" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// HeldLock is one grant of a listing: an exclusive lock, or one holder
// of a name held shared or of a semaphore's permits, each with its own
// token, so that such a name may be listed several times. Label is its
// holder's label, empty when it set none; which session holds it is
// never shown.
type HeldLock struct {
	Name    string
	Token   uint64
	HeldFor time.Duration
	Waiters int
	Label   string
}

// LockList is a listing of held locks. Truncated says more matched than
// it holds.
type LockList struct {
	Locks     []HeldLock
	Truncated bool
}

// LockOrder is the order of a listing, which decides which locks a limit
// keeps.
type LockOrder string

const (
	ByName    LockOrder = "name"    // by name, bytewise
	ByHeld    LockOrder = "held"    // longest held first
	ByWaiters LockOrder = "waiters" // longest queue first
)

// Locks lists the held locks of the whole lock service whose names start
// with prefix ("" for all), by name, at most limit of them (0: the
// server's default, 1000).
func (c *Client) Locks(ctx context.Context, prefix string, limit int) (LockList, error) {
	return c.LocksBy(ctx, prefix, limit, ByName)
}

// LocksBy is Locks in the given order: the first limit locks in it.
func (c *Client) LocksBy(ctx context.Context, prefix string, limit int, order LockOrder) (LockList, error) {
	if strings.ContainsAny(prefix, " \r\n") {
		return LockList{}, ErrInvalidName
	}
	if limit < 0 {
		return LockList{}, fmt.Errorf("client: locks: negative limit %d", limit)
	}
	if limit == 0 {
		limit = 1000
	}
	// A prefix ending in '*' would lose it as the wildcard: send one more.
	arg := prefix + "*"
	line := "locks " + arg + " " + strconv.Itoa(limit) + " " + string(order)
	var out LockList
	err := c.block(ctx, "locks", line, "LOCKS", func(r resp) (err error) {
		out, err = parseLocks(r)
		return err
	})
	return out, err
}

func parseLocks(r resp) (LockList, error) {
	out := LockList{Locks: make([]HeldLock, 0, len(r.locks))}
	for _, l := range r.locks {
		f := strings.Split(l, " ")
		if len(f) != 5 {
			return LockList{}, fmt.Errorf("%w: bad LOCK line %q", errProtocol, l)
		}
		tok, e1 := strconv.ParseUint(f[1], 10, 64)
		ms, e2 := strconv.ParseInt(f[2], 10, 64)
		w, e3 := strconv.Atoi(f[3])
		if e1 != nil || e2 != nil || e3 != nil {
			return LockList{}, fmt.Errorf("%w: bad LOCK line %q", errProtocol, l)
		}
		label := f[4]
		if label == "-" {
			label = ""
		}
		out.Locks = append(out.Locks, HeldLock{Name: f[0], Token: tok, HeldFor: time.Duration(ms) * time.Millisecond, Waiters: w, Label: label})
	}
	if v, ok := r.stat("truncated"); ok && v == "1" {
		out.Truncated = true
	}
	return out, nil
}
