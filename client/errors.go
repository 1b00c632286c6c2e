package client

import (
	"errors"
	"math"
	"strconv"
	"strings"

	"github.com/elock/elock/node/wire"
)

// Sentinel errors, compared with errors.Is. Definite answers of the server
// (ErrUnavailable, ErrNotYours, ErrNotLocked) are returned as they are, so
// that callers can also compare them with ==.
var (
	// ErrUnavailable: the lock is held by another session (409).
	ErrUnavailable = errors.New("client: lock unavailable")
	// ErrNotYours: the lock is held by another session (403 not_yours).
	ErrNotYours = errors.New("client: lock held by another session")
	// ErrNotLocked: nobody holds the lock (403 not_locked).
	ErrNotLocked = errors.New("client: lock not held")
	// ErrCannotSetID: the server refused to attach the session to the
	// connection (403 cannot set conn id), usually because it still sees
	// the session's previous connection as live. It comes wrapped in
	// ErrSessionLost when a resume kept being refused.
	ErrCannotSetID = errors.New("client: cannot set conn id")
	// ErrClosed: the Client has been closed.
	ErrClosed = errors.New("client: closed")
	// ErrSessionLost: the session could not be resumed, because it
	// expired on the server or the resume failed, and the locks it held
	// are gone. They have been reported to the lost-lock handler. The
	// client goes on with a new session, so the call may be retried.
	ErrSessionLost = errors.New("client: session lost")
	// ErrLockLost: one lock was found no longer held by the session, or
	// held with another fencing token, after a resume. It is the Err of a
	// LostLock, never returned by a call.
	ErrLockLost = errors.New("client: lock lost")
	// ErrInvalidName: a lock name is empty or contains a space, CR or LF,
	// which the protocol cannot carry.
	ErrInvalidName = errors.New("client: invalid lock name")
	// ErrInvalidValue: a value for Campaign or Proclaim is empty, is "-",
	// or contains a space, CR or LF. The protocol cannot carry those, and
	// the server answers "-" for a leader that published no value, so a
	// published "-" could not be told from none. Returned as it is,
	// without asking the server; a value longer than the server's limit
	// is its *ServerError 413.
	ErrInvalidValue = errors.New("client: invalid election value")
	// ErrNoLeader: nobody holds the name exclusively (Leader's "409 no
	// leader"). A name held only shared, or as a semaphore, has no leader.
	ErrNoLeader = errors.New("client: no leader")

	// The refusals below come inside a *ServerError with Code 400, which
	// unwraps to them: test them with errors.Is, never by the text. Each
	// is a definite no that changed nothing; the connection is kept.

	// ErrKindMismatch: the name is held or awaited as the other kind: a
	// semaphore asked for with Lock or RLock ("400 kind mismatch: NAME is
	// a semaphore"), or a lock asked for with Acquire ("... is a lock").
	ErrKindMismatch = errors.New("client: kind mismatch")
	// ErrLimitMismatch: Acquire gave another LIMIT than the one the
	// semaphore has while it has holders or waiters ("400 limit
	// mismatch: NAME has N permits"); Info tells its Limit.
	ErrLimitMismatch = errors.New("client: limit mismatch")
	// ErrNoUpgrade: Lock or TryLock of a name the session holds shared
	// ("400 no upgrade"). A shared hold is never turned into an exclusive
	// one in place, since two sessions upgrading at once would deadlock;
	// Unlock it first.
	ErrNoUpgrade = errors.New("client: no upgrade of a shared lock")
	// ErrInvalidLimit: a semaphore's LIMIT is out of range. Acquire and
	// TryAcquire return it as it is, without sending anything, for a limit
	// outside 1..MaxPermits; inside a *ServerError 400 it is the refusal
	// of a server whose -max-permits is lower ("400 bad limit: ...").
	ErrInvalidLimit = errors.New("client: invalid semaphore limit")
)

// MaxPermits is the largest semaphore LIMIT the client sends: the most
// the protocol carries. A server refuses a LIMIT above its own
// -max-permits (65535 by default) with 400 bad limit, which unwraps to
// ErrInvalidLimit.
const MaxPermits = math.MaxUint32

// ServerError is a reply of the server that is not one of the definite
// answers above: a limit hit (429), a bad request (400, 413), or a
// retryable (503) or indeterminate (504) failure that outlived the call's
// context. A 400 that the client knows (a kind or limit mismatch, no
// upgrade, a bad limit) unwraps to its sentinel.
type ServerError struct {
	Code int
	Text string
	// err is the sentinel that classifies the reply, if any.
	err error
}

func (e *ServerError) Error() string {
	return "server replied " + strconv.Itoa(e.Code) + " " + e.Text
}

// Unwrap returns the sentinel of the refusal (ErrKindMismatch,
// ErrLimitMismatch, ErrNoUpgrade, ErrInvalidLimit), or nil.
func (e *ServerError) Unwrap() error { return e.err }

// Retryable reports a 503: the request certainly did nothing and may be
// sent again.
func (e *ServerError) Retryable() bool { return e.Code == wire.CodeRetry }

// Indeterminate reports a 504: the request may or may not have taken
// effect.
func (e *ServerError) Indeterminate() bool { return e.Code == wire.CodeIndeterminate }

// replyError maps a non-2xx reply to its error.
func replyError(code int, text string) error {
	switch {
	case code == wire.CodeUnavailable:
		return ErrUnavailable
	case code == wire.CodeForbidden && text == "not_yours":
		return ErrNotYours
	case code == wire.CodeForbidden && text == "not_locked":
		return ErrNotLocked
	case code == wire.CodeForbidden && text == "cannot set conn id":
		return ErrCannotSetID
	}
	se := &ServerError{Code: code, Text: text}
	if code == wire.CodeBadRequest {
		// The protocol fixes these texts up to the colon; what follows
		// names the lock, for people.
		switch {
		case strings.HasPrefix(text, "kind mismatch:"):
			se.err = ErrKindMismatch
		case strings.HasPrefix(text, "limit mismatch:"):
			se.err = ErrLimitMismatch
		case strings.HasPrefix(text, "no upgrade:"):
			se.err = ErrNoUpgrade
		case strings.HasPrefix(text, "bad limit:"):
			se.err = ErrInvalidLimit
		}
	}
	return se
}

// retryError asks exec to run the operation again after a backoff, as for
// a 503, for an answer that is transient but not itself a 503.
type retryError struct{ reason string }

func (e *retryError) Error() string { return e.reason }

// retryable reports whether exec should back off and run the operation
// again on the same connection.
func retryable(err error) bool {
	var se *ServerError
	if errors.As(err, &se) {
		return se.Retryable() || se.Indeterminate()
	}
	var re *retryError
	return errors.As(err, &re)
}

// definite reports whether err settles what the session holds: after
// such an error the operation certainly changed nothing that the client
// has to clean up.
func definite(err error) bool {
	switch {
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrNotYours),
		errors.Is(err, ErrNotLocked), errors.Is(err, ErrSessionLost),
		errors.Is(err, ErrInvalidName), errors.Is(err, ErrInvalidLimit),
		errors.Is(err, ErrInvalidValue):
		return true
	}
	var se *ServerError
	return errors.As(err, &se) && se.Code < 500
}

// checkName rejects names the line protocol cannot carry; the server
// checks the length.
func checkName(name string) error {
	if name == "" || strings.ContainsAny(name, " \r\n") {
		return ErrInvalidName
	}
	return nil
}

// checkValue rejects values the line protocol cannot carry, and "-",
// which the server uses for no value; the server checks the length.
func checkValue(v string) error {
	if v == "" || v == "-" || strings.ContainsAny(v, " \r\n") {
		return ErrInvalidValue
	}
	return nil
}

// checkLimit rejects a semaphore LIMIT no server takes.
func checkLimit(limit int) error {
	if limit < 1 || uint64(limit) > MaxPermits {
		return ErrInvalidLimit
	}
	return nil
}
