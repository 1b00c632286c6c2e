package node

import (
	"context"
	"time"

	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
)

// SessionRef names a session as one attachment of it: the id plus the
// epoch that attach returned, and the epoch the session was born at.
// Backends use the epoch to fence a home that lost the session to a
// resume elsewhere, and the birth epoch to tell the session's locks from
// those an earlier session under the same id left behind.
type SessionRef struct {
	ID    string
	Epoch uint64
	Born  uint64
}

// Backend carries out the commands of this node's connections, wherever
// the state lives: in this process (Local) or on the owners of a mesh.
//
// Contract: a method returns either a definite answer (a locktable status,
// or nil error) or an error. An error that is a *failure.Error is
// answered with its own line: a retryable failure "503 TEXT" (the request
// did nothing and may be retried), an indeterminate one "504 TEXT" (its
// outcome is unknown). Any other error is answered 503 too, because it
// can only come from a request that did not complete.
type Backend interface {
	// Attach binds id to a connection of this node, creating the session
	// if it is unknown or expired. locktable.ErrAttached means another
	// live connection has it.
	Attach(ctx context.Context, id string) (locktable.Attachment, error)
	// Detach starts the session's timeout: its connection has gone.
	Detach(ctx context.Context, s SessionRef) error
	// SetTimeout sets how long the session outlives its connection.
	SetTimeout(ctx context.Context, s SessionRef, d time.Duration) error
	// Lock takes name for the session in the mode want gives (the zero
	// Want: exclusively). If it cannot be granted now and wait > 0, the
	// request may queue: Lock then returns Queued and a Wait, and done
	// later receives the outcome exactly once, from any goroutine, unless
	// Wait.Cancel withdraws the request first.
	Lock(ctx context.Context, s SessionRef, name []byte, want locktable.Want, wait time.Duration, done partition.Done) (locktable.Result, Wait, error)
	// Unlock releases name if the session holds it.
	Unlock(ctx context.Context, s SessionRef, name []byte) (locktable.Result, error)
	// Drop takes back the session's grant of name made under token, if
	// the session has not been told of it since: a grant nobody heard of.
	// Unlike Unlock it works after the session moved to another home.
	Drop(ctx context.Context, s SessionRef, name []byte, token uint64) (locktable.Result, error)
	// Proclaim changes the value the session publishes as name's
	// exclusive holder: Granted, or NotYours/NotLocked.
	Proclaim(ctx context.Context, s SessionRef, name []byte, value string) (locktable.Result, error)
	// Leader reports the token and value of name's exclusive holder, and
	// false when nobody holds it exclusively.
	Leader(ctx context.Context, name []byte) (token uint64, value string, ok bool, err error)
	// UnlockAll releases every lock of the session.
	UnlockAll(ctx context.Context, s SessionRef) error
	// Token returns the session's fencing token for name.
	Token(ctx context.Context, s SessionRef, name []byte) (uint64, locktable.Status, error)
	// Info describes name as the session sees it.
	Info(ctx context.Context, s SessionRef, name []byte) (locktable.Info, error)
	// HeldBy counts the session's locks.
	HeldBy(ctx context.Context, s SessionRef) (int, error)
	// Stats returns figures for the whole lock service; localClients is
	// this node's count of connections with a session.
	Stats(ctx context.Context, localClients int) (Stats, error)
}

// Wait is a queued lock request.
type Wait interface {
	// Cancel withdraws the request. True means done will never be called;
	// false means the outcome was decided first and done has been or is
	// being called.
	Cancel() bool
}

// Stats are the service-wide figures of the stats command.
type Stats struct {
	Clients  int    // connections with a session
	Locks    int    // held lock names
	Waiters  int    // blocked lock requests
	Sessions int    // live session records, detached ones included
	Grants   uint64 // grants since start
	// Extra lines, after the server's own.
	Extra []StatLine
}

// StatLine is one "STAT key value" line.
type StatLine struct{ Key, Value string }

// Local is the Backend of a single node: every partition lives here and
// has no replica.
type Local struct {
	Set *partition.Set
	// Home is this node's id, recorded in session records.
	Home string
	// Addr is the client address, for the members command.
	Addr string
	// Clients is the registry whose labels the locks command shows. Nil:
	// NewServer sets it to its own.
	Clients *Clients
}

var _ Backend = (*Local)(nil)

func (l *Local) Attach(_ context.Context, id string) (locktable.Attachment, error) {
	return l.Set.Attach(id, l.Home)
}

func (l *Local) Detach(_ context.Context, s SessionRef) error {
	return l.Set.Detach(s.ID, s.Epoch)
}

func (l *Local) SetTimeout(_ context.Context, s SessionRef, d time.Duration) error {
	return l.Set.SetTimeout(s.ID, d)
}

func (l *Local) Lock(_ context.Context, s SessionRef, name []byte, want locktable.Want, wait time.Duration, done partition.Done) (locktable.Result, Wait, error) {
	res, w, err := l.Set.LockAs(asker(s), name, want, wait, done)
	if err == locktable.ErrExhausted {
		return res, nil, errExhausted
	}
	if w == nil {
		return res, nil, err
	}
	return res, localWait{l.Set, w}, nil
}

// asker is the partition set's view of s: its grants carry s's attach
// epoch, so that the release of an ended session, bounded by the epoch
// it ended at, spares a new session under the same id that attached
// while that release was on its way.
func asker(s SessionRef) partition.Asker {
	return partition.Asker{Session: s.ID, Epoch: s.Epoch, Born: s.Born}
}

// errExhausted refuses a grant when the partition's epoch has no tokens
// left; a single node moves to the next epoch by itself.
var errExhausted = failure.Retry(failure.Exhausted, "token space of this epoch exhausted; retry")

type localWait struct {
	set *partition.Set
	w   *partition.Wait
}

func (w localWait) Cancel() bool { return w.set.Cancel(w.w) }

func (l *Local) Unlock(_ context.Context, s SessionRef, name []byte) (locktable.Result, error) {
	return l.Set.UnlockAs(asker(s), name)
}

func (l *Local) Proclaim(_ context.Context, s SessionRef, name []byte, value string) (locktable.Result, error) {
	return l.Set.ProclaimAs(asker(s), name, value)
}

func (l *Local) Leader(_ context.Context, name []byte) (uint64, string, bool, error) {
	return l.Set.Leader(name)
}

func (l *Local) Drop(_ context.Context, s SessionRef, name []byte, token uint64) (locktable.Result, error) {
	return l.Set.DropAs(asker(s), name, token)
}

func (l *Local) UnlockAll(_ context.Context, s SessionRef) error {
	_, err := l.Set.ReleaseSession(s.ID)
	return err
}

func (l *Local) Token(_ context.Context, s SessionRef, name []byte) (uint64, locktable.Status, error) {
	return l.Set.TokenAs(asker(s), name)
}

func (l *Local) Info(_ context.Context, s SessionRef, name []byte) (locktable.Info, error) {
	return l.Set.InfoAs(asker(s), name)
}

func (l *Local) HeldBy(_ context.Context, s SessionRef) (int, error) {
	return l.Set.HeldBy(s.ID), nil
}

func (l *Local) Stats(_ context.Context, localClients int) (Stats, error) {
	c := l.Set.Counts()
	return Stats{Clients: localClients, Locks: c.Locks, Waiters: c.Waiters, Sessions: c.Sessions, Grants: c.Grants}, nil
}
