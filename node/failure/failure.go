// Package failure is the vocabulary in which the layers under the
// client-facing server say why a request got no definite answer: a small
// set of classes and reasons, carried as values (and over the peer codec
// as codes), so that no decision ever rests on an error's text.
//
// Three classes, never mixed:
//   - Definite: a definite refusal; asking again gives the same answer
//     until something changes (the session is attached elsewhere).
//   - Retryable: nothing happened; the request may be sent again, here or
//     to another node (the partition moved, has no synced replica, is in
//     its lock-delay).
//   - Indeterminate: the request may or may not have taken effect (its
//     replica never confirmed it, its reply was lost).
//
// Only the client-facing layer (package node) turns a failure into a reply
// line: 503 for Retryable, 504 for Indeterminate. Text is that line's
// message, for people.
//
// It imports only the standard library, and every package of the server
// may import it.
package failure

import (
	"errors"
	"strconv"
)

// Class says what a client should do about a failure.
type Class uint8

const (
	// Definite: refused for good; retrying the same request gives the same
	// answer until something changes.
	Definite Class = 1 + iota
	// Retryable: nothing happened; try again, here or elsewhere.
	Retryable
	// Indeterminate: the outcome is unknown.
	Indeterminate
)

var classNames = [...]string{"", "definite", "retryable", "indeterminate"}

func (c Class) String() string {
	if int(c) < len(classNames) && c > 0 {
		return classNames[c]
	}
	return "class(" + strconv.Itoa(int(c)) + ")"
}

// Reason says why, in a word a program can act on.
type Reason uint8

// Reasons. The comment names the class each comes with.
const (
	// Unspecified is the reason of a failure that did not say.
	Unspecified Reason = iota
	// Moved: the partition is not served by this node, or is moving to
	// another; ask its owner in a newer table (retryable).
	Moved
	// NoLease: the owner holds no lease from the control plane (retryable).
	NoLease
	// NoReplica: the owner has no synced replica to confirm a change
	// (retryable).
	NoReplica
	// LockDelay: the partition lost both copies and refuses grants until
	// its lock-delay has passed, for minutes (retryable).
	LockDelay
	// Unconfirmed: the answer rested on a change whose confirmation failed
	// (retryable), or a change of the request's own was applied but not
	// confirmed by the replica (indeterminate).
	Unconfirmed
	// Unavailable: no owner of the partition answered in time (retryable),
	// or one may have carried the request out before it went silent
	// (indeterminate).
	Unavailable
	// SessionMoved: the session was resumed on another connection, which
	// fences this one off (retryable).
	SessionMoved
	// Busy: the session is changing hands (retryable).
	Busy
	// Exhausted: the partition's token space for this epoch is used up
	// (retryable).
	Exhausted
	// ShuttingDown: this node is going away (retryable), or went away
	// while the request may still have been queued (indeterminate).
	ShuttingDown
	// Partial: a request that spans partitions took effect in some and
	// not in others (indeterminate).
	Partial
	// Attached: the session is attached to a live connection (definite).
	Attached
	// Internal: a failure the code did not expect, such as a malformed
	// peer message (retryable: nothing was done).
	Internal
	// Full: the node holds as many locks or sessions as it may
	// (retryable, once some are released).
	Full
	// Limit: the request is beyond a limit of the client's own, such as
	// the locks one session may hold (definite; the client port answers
	// it 429, as its own check of the limit does).
	Limit
)

var reasonNames = [...]string{
	"unspecified", "moved", "no-lease", "no-replica", "lock-delay", "unconfirmed", "unavailable",
	"session-moved", "busy", "exhausted", "shutting-down", "partial", "attached", "internal", "full", "limit",
}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// Error is a failure: its class, its reason, and the text of its reply
// line.
type Error struct {
	Class  Class
	Reason Reason
	Text   string
}

func (e *Error) Error() string { return e.Text }

// Retry returns a retryable failure: nothing happened.
func Retry(r Reason, text string) *Error { return &Error{Class: Retryable, Reason: r, Text: text} }

// Unknown returns an indeterminate failure: the outcome is unknown.
func Unknown(r Reason, text string) *Error {
	return &Error{Class: Indeterminate, Reason: r, Text: text}
}

// Refuse returns a definite failure.
func Refuse(r Reason, text string) *Error { return &Error{Class: Definite, Reason: r, Text: text} }

// As returns the failure in err's chain, if there is one.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// Is reports whether err is a failure with reason r.
func Is(err error, r Reason) bool {
	e, ok := As(err)
	return ok && e.Reason == r
}

// ClassOf returns the class of the failure in err's chain; 0 when err
// carries none.
func ClassOf(err error) Class {
	if e, ok := As(err); ok {
		return e.Class
	}
	return 0
}

// Text returns the message of a failure, or err's own text for any other
// error: the part of a reply line that quotes what went wrong.
func Text(err error) string {
	if err == nil {
		return "unknown"
	}
	if e, ok := As(err); ok {
		return e.Text
	}
	return err.Error()
}

// Partition returns the text "partition N", with which most messages
// about a partition begin.
func Partition(p int) string { return "partition " + strconv.Itoa(p) }
