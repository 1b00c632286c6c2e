package history

import (
	"time"
)

// Test histories are written in milliseconds; U as a return time means
// the outcome is unknown.
const U = -1

func at(ms int) time.Duration {
	if ms == U {
		return Never
	}
	return time.Duration(ms) * time.Millisecond
}

func mk(kind Kind, client int, session, name string, wait, call, ret int, st Status, tok uint64) Operation {
	if ret == U {
		st = Unknown
	}
	return Operation{
		Op:     Op{Client: client, Session: session, Kind: kind, Name: name, Wait: wait},
		Result: Result{Status: st, Token: tok},
		Call:   at(call), Return: at(ret),
	}
}

// lk is `lock name`; an Acquired result carries tok.
func lk(client int, session, name string, call, ret int, st Status, tok uint64) Operation {
	return mk(Lock, client, session, name, 0, call, ret, st, tok)
}

// lw is `lock name wait`.
func lw(client int, session, name string, wait, call, ret int, st Status, tok uint64) Operation {
	return mk(LockWait, client, session, name, wait, call, ret, st, tok)
}

// rl is `rlock name`.
func rl(client int, session, name string, call, ret int, st Status, tok uint64) Operation {
	return mk(RLock, client, session, name, 0, call, ret, st, tok)
}

// rw is `rlock name wait`.
func rw(client int, session, name string, wait, call, ret int, st Status, tok uint64) Operation {
	return mk(RLockWait, client, session, name, wait, call, ret, st, tok)
}

// aq is `acquire name limit`.
func aq(client int, session, name string, limit, call, ret int, st Status, tok uint64) Operation {
	o := mk(Acquire, client, session, name, 0, call, ret, st, tok)
	o.Limit = limit
	return o
}

// aw is `acquire name limit wait`.
func aw(client int, session, name string, limit, wait, call, ret int, st Status, tok uint64) Operation {
	o := mk(AcquireWait, client, session, name, wait, call, ret, st, tok)
	o.Limit = limit
	return o
}

// ul is `unlock name`.
func ul(client int, session, name string, call, ret int, st Status) Operation {
	return mk(Unlock, client, session, name, 0, call, ret, st, 0)
}

// ua is `unlock_all`.
func ua(client int, session string, call, ret int, st Status) Operation {
	return mk(UnlockAll, client, session, "", 0, call, ret, st, 0)
}

// ex is the expiry of a session detached at detached, invoked at call.
func ex(client int, session string, detached, call int) Operation {
	o := mk(Expire, client, session, "", 0, call, U, Unknown, 0)
	o.Detached = at(detached)
	return o
}

// dr is a Drop of name for session during [call, ret] (ret U: unknown).
func dr(client int, session, name string, call, ret int) Operation {
	if ret == U {
		return mk(Drop, client, session, name, 0, call, U, Unknown, 0)
	}
	return mk(Drop, client, session, name, 0, call, ret, OK, 0)
}

// rs is `conn_id session` on a new connection.
func rs(client int, session string, call, ret int, st Status) Operation {
	return mk(Resume, client, session, "", 0, call, ret, st, 0)
}

// checkerNames are the short names of checkers' verdicts, in order.
var checkerNames = []string{"tokens", "overlap", "permits", "lost", "lin"}

// checkers runs every checker on h and returns which failed, by name (see
// checkerNames), and the verdicts, linearizability last. It fails if it
// is not Ok, whether Illegal or timed out.
func checkers(h []Operation, timeout time.Duration) (failed map[string]bool, verdicts []Verdict, err error) {
	lin, err := CheckLinearizable(h, timeout)
	if err != nil {
		return nil, nil, err
	}
	verdicts = []Verdict{CheckTokens(h), CheckOverlap(h), CheckPermits(h), CheckLostGrants(h), lin}
	failed = map[string]bool{}
	for i, name := range checkerNames {
		if !verdicts[i].OK() {
			failed[name] = true
		}
	}
	return failed, verdicts, nil
}
