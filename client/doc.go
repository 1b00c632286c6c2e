// Package client is the Go client of elock, a lock server that speaks the
// line protocol of the original Erlang elock (see elock-protocol.md).
//
// # Sessions
//
// A Client is one session of the server, carried by one TCP connection at
// a time. Locks belong to the session. When the connection breaks, the
// server keeps the session's locks for the session timeout
// (WithSessionTimeout, set_timeout), and the client reconnects, to any
// address of its list, and takes the session back with "conn_id ID". It
// then checks each lock it believes it holds with "token NAME". A lock
// found gone or re-granted, or all of them when the session expired or
// could not be resumed in time, is reported to the WithOnLost handler and
// forgotten; a call that ran into the loss returns ErrSessionLost.
//
// A background goroutine probes the connection when it has been idle for
// the keepalive interval, so that a dead connection is repaired, or its
// locks reported lost, while the application is idle.
//
// # Shared locks and semaphores
//
// Besides exclusive locks (Lock, TryLock), a name can be held shared
// (RLock, TryRLock): by any number of sessions at once, and by none while
// one holds it exclusively. One FIFO queue serves both modes, so a
// waiting Lock holds back the RLocks behind it. A name can instead be a
// semaphore of LIMIT permits (Acquire, TryAcquire), of which a session
// holds at most one. A name is one kind at a time; asking for it as the
// other kind returns ErrKindMismatch. Unlock releases whatever the
// session holds of a name, and everything below about sessions, resumes
// and lost locks holds for shared grants and permits as for exclusive
// locks.
//
// # Elections
//
// Campaign takes a name exclusively, waiting as Lock does, and publishes
// a value with it (an address, say) while the session leads; Proclaim
// changes the value, Leader tells any session the leader's term and
// value (ErrNoLeader if nobody holds the name exclusively), and Resign,
// which is Unlock, steps down. Leadership is an exclusive lock in every
// other way: its term is the fencing token, it survives a resume with its
// value, which the server keeps with the grant, and it is reported lost
// as a lock is, after which the session must stop acting as leader.
//
// # Fencing tokens
//
// Lock, RLock and Acquire return the grant's fencing token, a number
// that grows with every grant of a name, whatever its mode: each shared
// grant and each permit has its own. A lock can be lost without its
// holder knowing in time (a long pause, a partition), so a resource
// guarded by a lock should remember the highest token it has seen and
// refuse requests that carry a lower one.
//
// # Concurrency
//
// A Client is safe for concurrent use, but the protocol runs one command
// at a time per session, so calls are serialised, and a Lock waiting on
// the server holds back every other call of the same Client. Every call
// takes a context: it bounds the wait for the connection and for the
// server, including waits behind other calls.
//
// # Failures
//
// Definite answers are sentinel errors (ErrUnavailable, ErrNotYours,
// ErrNotLocked, ErrNoLeader); other answers are a *ServerError. The refusals of shared
// locks and semaphores (ErrKindMismatch, ErrLimitMismatch, ErrNoUpgrade)
// are a *ServerError 400 that errors.Is tells apart. A "503" means
// nothing happened and is retried with backoff until the context ends; a
// "504" means the outcome is unknown, and the calls that take or release
// a lock ask the server for its state before deciding. A refusal keeps
// the connection; a broken connection is replaced and the call carried
// on in the resumed session.
package client
