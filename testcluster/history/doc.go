// Package history records what the clients of an elock cluster asked and
// were told, and checks that record against the lock's safety properties.
//
// A fault test drives real elockd processes with many clients. Each client
// wraps every request in Recorder.Invoke and Pending.Return (or
// Pending.Unknown when the connection dropped, a reply timed out, or the
// server answered 504). When the test ends, History returns the record, and
// the checkers decide:
//
//   - CheckLinearizable: porcupine, per lock name, against the sequential
//     model "exclusive holder, shared holders or permit holders + last
//     fencing token" (see Step);
//   - CheckOverlap: an exclusive holder never certainly held a name
//     together with another session; shared holders may hold it together;
//   - CheckPermits: never more than LIMIT sessions certainly held permits
//     of a semaphore at once;
//   - CheckLostGrants: an acknowledged grant (exclusive, shared or a
//     permit) was never handed over, or forgotten, while its session
//     still certainly held it;
//   - CheckTokens: fencing tokens only grow across every grant of a name,
//     whatever its mode, and no token is issued twice.
//
// A name is a lock, taken exclusively (lock) or shared (rlock), or a
// semaphore (acquire NAME LIMIT); a request's Kind says which, and its
// Mode how the grant holds the name.
//
// FencedResource is the protected resource of the design: exclusive
// holders write it, shared holders read it, and it refuses a write not
// above every token it has accepted and a read below the last write. SaveReport writes a
// violation's evidence (history, porcupine's visualisation, a summary) into
// a directory that LoadHistory can later re-check offline.
//
// # Time and uncertainty
//
// Times are offsets from the recorder's start on the monotonic clock. An
// operation took effect at most once, at some instant between its Call and
// its Return, both included. An operation whose outcome is unknown may have
// taken effect at any instant after its Call, or never: its Return is
// Never. A refused operation (503) certainly did nothing, and every checker
// ignores it.
//
// The overlap, permit and lost-grant checkers are conservative: they report only
// what certainly happened. A session certainly holds a name from the reply
// of a grant until the invocation of the first operation that might have
// released it (an unlock, unlock_all or expiry of that session whose
// window reaches past the grant's invocation, indeterminate ones included).
//
// # Sessions
//
// A session is identified by its id, not by its connection: a client that
// reconnects and resumes its session with conn_id keeps the same Session
// in its operations. A lost connection must be recorded with
// Recorder.Detach, which adds an Expire operation: the server may expire
// the session, and release its locks, at any instant from the detach time
// plus the session timeout on. A successful Resume sent after the detach
// time that completed before that instant cancels the expiry.
//
// # Cost
//
// The overlap, lost-grant and token checkers are near-linear; the permit
// checker is linear in the holds times LIMIT. Porcupine's
// search is exponential in the worst case. Each name is its own
// partition, and known tokens prune the orders it tries, so a correct
// history of thousands of operations on a few hot names checks in
// milliseconds. What makes it slow is indeterminate operations on one
// name: each may take effect at any later time, so porcupine may have to
// try it at every point, and proving a history illegal means trying them
// all. Give CheckLinearizable a timeout: it then reports Unknown, per
// name, instead of Illegal, and the other checkers still name any
// violation they see.
package history
