// Reads of a name: token and info, and the confirmation an answer a
// client acts on waits for.

package partition

import (
	"cmp"

	"github.com/elock/elock/node/locktable"
)

// Token returns session's fencing token for name.
func (s *Set) Token(session string, name []byte) (uint64, locktable.Status, error) {
	return s.TokenAs(Asker{Session: session}, name)
}

// TokenAs is Token from a (see tokenOf).
func (s *Set) TokenAs(a Asker, name []byte) (uint64, locktable.Status, error) {
	var (
		tok     uint64
		st      locktable.Status
		refused error
	)
	err := s.readConfirmed(s.partOf(name), func(t *locktable.Table, _ locktable.Time) {
		tok, st, refused = tokenOf(t, a, name)
	})
	return tok, st, cmp.Or(refused, err)
}

// TokenThen is Token for a caller that cannot block (see LockThen), from
// a.
func (s *Set) TokenThen(a Asker, name []byte, then func(uint64, locktable.Status, error)) {
	var (
		tok     uint64
		st      locktable.Status
		refused error
	)
	s.readConfirmedThen(s.partOf(name), func(t *locktable.Table, _ locktable.Time) {
		tok, st, refused = tokenOf(t, a, name)
	}, func(err error) { then(tok, st, cmp.Or(refused, err)) })
}

// tokenOf is a's token of name. A lock a later attachment of the session
// was told of is refused (ErrLaterAttachment): a home the session has
// left must neither claim it as told nor take it for another's, which
// would turn a late outcome into a wrong definite one; its client hears
// that the session moved.
func tokenOf(t *locktable.Table, a Asker, name []byte) (uint64, locktable.Status, error) {
	if err := a.fenced(t, name); err != nil {
		return 0, 0, err
	}
	tok, st := t.Token(seenBy(t, a, name), name)
	return tok, st, nil
}

// seenBy is the session as whom a read from a sees name: itself, or
// nobody where name is an earlier session's leftover under the same id
// (locktable.Leftover), which it must not be told it holds (the sweep
// releases that grant, and a write of a's session releases it first:
// dropLeftovers).
func seenBy(t *locktable.Table, a Asker, name []byte) string {
	if t.Leftover(a.Session, a.Born, name) {
		return ""
	}
	return a.Session
}

// Info reports on name as session sees it.
func (s *Set) Info(session string, name []byte) (locktable.Info, error) {
	return s.InfoAs(Asker{Session: session}, name)
}

// InfoAs is Info from a (see infoOf).
func (s *Set) InfoAs(a Asker, name []byte) (locktable.Info, error) {
	var (
		in      locktable.Info
		refused error
	)
	err := s.readConfirmed(s.partOf(name), func(t *locktable.Table, now locktable.Time) {
		in, refused = infoOf(t, now, a, name)
	})
	return in, cmp.Or(refused, err)
}

// InfoThen is Info for a caller that cannot block (see LockThen), from
// a.
func (s *Set) InfoThen(a Asker, name []byte, then func(locktable.Info, error)) {
	var (
		in      locktable.Info
		refused error
	)
	s.readConfirmedThen(s.partOf(name), func(t *locktable.Table, now locktable.Time) {
		in, refused = infoOf(t, now, a, name)
	}, func(err error) { then(in, cmp.Or(refused, err)) })
}

// infoOf is name as a sees it, refused as tokenOf is.
func infoOf(t *locktable.Table, now locktable.Time, a Asker, name []byte) (locktable.Info, error) {
	if err := a.fenced(t, name); err != nil {
		return locktable.Info{}, err
	}
	return t.Info(now, seenBy(t, a, name), name), nil
}

// readConfirmed is read for an answer a client acts on (token after a
// 504 says whether the lock is held): it returns once the changes the
// answer rests on are acknowledged, or refuses it as retryable.
func (s *Set) readConfirmed(p *part, f func(t *locktable.Table, now locktable.Time)) error {
	var pos uint64
	err := s.read(p, func(t *locktable.Table, now locktable.Time) {
		f(t, now)
		if s.rep != nil {
			pos = s.rep.Record(p.id, nil)
		}
	})
	if err != nil {
		return err
	}
	if s.await(p, pos) != nil {
		return unconfirmed(p)
	}
	return nil
}

// readConfirmedThen is readConfirmed for a caller that cannot block.
func (s *Set) readConfirmedThen(p *part, f func(t *locktable.Table, now locktable.Time), then func(error)) {
	var pos uint64
	err := s.read(p, func(t *locktable.Table, now locktable.Time) {
		f(t, now)
		if s.rep != nil {
			pos = s.rep.Record(p.id, nil)
		}
	})
	if err != nil || pos == 0 {
		then(err)
		return
	}
	s.rep.Confirm(p.id, pos, func(err error) {
		if err != nil {
			err = unconfirmed(p)
		}
		then(err)
	})
}

// Leader reports who leads name: the token and value of its exclusive
// grant, or ok false if nobody holds it exclusively. The answer waits for
// what it rests on to be confirmed, as Token's does.
func (s *Set) Leader(name []byte) (token uint64, value string, ok bool, err error) {
	err = s.readConfirmed(s.partOf(name), func(t *locktable.Table, _ locktable.Time) {
		token, value, ok = t.Leader(name)
	})
	return token, value, ok, err
}

// LeaderThen is Leader for a caller that cannot block (see LockThen).
func (s *Set) LeaderThen(name []byte, then func(token uint64, value string, ok bool, err error)) {
	var (
		token uint64
		value string
		ok    bool
	)
	s.readConfirmedThen(s.partOf(name), func(t *locktable.Table, _ locktable.Time) {
		token, value, ok = t.Leader(name)
	}, func(err error) { then(token, value, ok, err) })
}
