package history

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Kind says what a client asked for.
type Kind uint8

const (
	// Lock is `lock NAME`: take NAME now or get 409.
	Lock Kind = iota + 1
	// LockWait is `lock NAME SECS`: wait up to Op.Wait seconds for NAME.
	LockWait
	// Unlock is `unlock NAME`.
	Unlock
	// UnlockAll is `unlock_all`: release every lock of the session.
	UnlockAll
	// Expire is not a request: the session was detached and the server
	// may expire it, releasing all its locks, from Call on. Recorder.Detach
	// records it.
	Expire
	// Resume is `conn_id ID` on a new connection. It is informational: the
	// checkers use a successful one (OK) only to cancel an Expire.
	Resume
	// Drop is not a request: the server may have released Name for the
	// session at some time in [Call, Return]. It stands for a grant the
	// server could not deliver, because the connection that waited for it
	// was lost: the server releases such a grant, as a waiter that has gone
	// must not keep a lock (protocol rule 4), at the latest before the
	// session is resumed elsewhere. Its status is OK once that window has
	// closed, or Unknown if it never did.
	Drop
	// RLock is `rlock NAME`: take NAME shared now or get 409.
	RLock
	// RLockWait is `rlock NAME SECS`.
	RLockWait
	// Acquire is `acquire NAME LIMIT`: take one of Op.Limit permits of
	// semaphore NAME now or get 409.
	Acquire
	// AcquireWait is `acquire NAME LIMIT SECS`.
	AcquireWait
)

var kindNames = [...]string{
	Lock:        "lock",
	LockWait:    "lock_wait",
	Unlock:      "unlock",
	UnlockAll:   "unlock_all",
	Expire:      "expire",
	Resume:      "resume",
	Drop:        "drop",
	RLock:       "rlock",
	RLockWait:   "rlock_wait",
	Acquire:     "acquire",
	AcquireWait: "acquire_wait",
}

// Takes reports whether k asks for a name: lock, rlock or acquire,
// waiting or not.
func (k Kind) Takes() bool { return k.Mode() != 0 }

// Waits reports whether k is the waiting form of its request.
func (k Kind) Waits() bool { return k == LockWait || k == RLockWait || k == AcquireWait }

// Mode is how a request of kind k wants its name; 0 if k takes nothing.
func (k Kind) Mode() Mode {
	switch k {
	case Lock, LockWait:
		return Exclusive
	case RLock, RLockWait:
		return Shared
	case Acquire, AcquireWait:
		return Permit
	}
	return 0
}

// Mode is how a grant holds its name.
type Mode uint8

const (
	// Exclusive: alone (lock).
	Exclusive Mode = iota + 1
	// Shared: together with other shared holders, never with an
	// exclusive one (rlock).
	Shared
	// Permit: one of a semaphore's LIMIT permits (acquire). A name is a
	// semaphore or a lock, never both at once, so permits never meet the
	// other modes.
	Permit
)

var modeNames = [...]string{Exclusive: "exclusive", Shared: "shared", Permit: "permit"}

func (m Mode) String() string {
	if int(m) < len(modeNames) && modeNames[m] != "" {
		return modeNames[m]
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// MarshalText encodes k by name.
func (k Kind) MarshalText() ([]byte, error) {
	if int(k) >= len(kindNames) || kindNames[k] == "" {
		return nil, fmt.Errorf("history: invalid kind %d", k)
	}
	return []byte(kindNames[k]), nil
}

// UnmarshalText decodes a name written by MarshalText.
func (k *Kind) UnmarshalText(b []byte) error {
	for i, n := range kindNames {
		if n != "" && n == string(b) {
			*k = Kind(i)
			return nil
		}
	}
	return fmt.Errorf("history: unknown kind %q", b)
}

// Status is what the server answered.
type Status uint8

const (
	// Acquired is `200 Acquired` to a lock, rlock or acquire;
	// Result.Token is the fencing token, or 0 if the client does not know
	// it.
	Acquired Status = iota + 1
	// Unavailable is `409 Unavailable`: held by another session in a mode
	// that excludes the request, or waited for by one ahead of it (for
	// the waiting kinds, all the wait long).
	Unavailable
	// Unlocked is `200 Unlocked`.
	Unlocked
	// NotYours is `403 not_yours`; for Resume, `403 cannot set conn id`.
	NotYours
	// NotLocked is `403 not_locked`.
	NotLocked
	// OK is `200 OK` to unlock_all; for Resume, the session was resumed
	// with its locks; for Expire, the session certainly expired by Return.
	OK
	// Refused is 503: certainly nothing happened. Checkers drop the
	// operation.
	Refused
	// Unknown is an indeterminate outcome: connection lost, reply timed
	// out, or 504. The operation may take effect at any time after its
	// Call, or never.
	Unknown
	// NoUpgrade is `400 no upgrade` to a lock: the session held the name
	// shared, and nothing happened.
	NoUpgrade
)

var statusNames = [...]string{
	Acquired:    "acquired",
	Unavailable: "unavailable",
	Unlocked:    "unlocked",
	NotYours:    "not_yours",
	NotLocked:   "not_locked",
	OK:          "ok",
	Refused:     "refused",
	Unknown:     "unknown",
	NoUpgrade:   "no_upgrade",
}

func (s Status) String() string {
	if int(s) < len(statusNames) && statusNames[s] != "" {
		return statusNames[s]
	}
	return "status(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText encodes s by name.
func (s Status) MarshalText() ([]byte, error) {
	if int(s) >= len(statusNames) || statusNames[s] == "" {
		return nil, fmt.Errorf("history: invalid status %d", s)
	}
	return []byte(statusNames[s]), nil
}

// UnmarshalText decodes a name written by MarshalText.
func (s *Status) UnmarshalText(b []byte) error {
	for i, n := range statusNames {
		if n != "" && n == string(b) {
			*s = Status(i)
			return nil
		}
	}
	return fmt.Errorf("history: unknown status %q", b)
}

// Op is a request: who asked what.
type Op struct {
	// Client identifies the client (a goroutine of the test). It is
	// porcupine's client id, so keep it small and non-negative.
	Client int
	// Session is the session id the request ran in. A client that resumes
	// its session keeps it; one that gets a new session changes it.
	Session string
	Kind    Kind
	// Name is the lock name of every kind but UnlockAll, Expire and
	// Resume.
	Name string
	// Wait is the SECS of LockWait, RLockWait and AcquireWait.
	Wait int
	// Limit is the LIMIT of Acquire and AcquireWait.
	Limit int
}

// Result is the server's answer.
type Result struct {
	Status Status
	// Token is the fencing token of an Acquired grant; 0 means the client
	// does not know it.
	Token uint64
}

// Never is the Return of an operation whose outcome is unknown: it may take
// effect at any time after its Call.
const Never = time.Duration(math.MaxInt64)

// Operation is one element of a history: a request, its answer, and when
// each happened, as offsets from the recorder's start.
type Operation struct {
	Op
	Result
	// Call is when the request was sent; Return when the answer arrived,
	// Never if it is Unknown.
	Call, Return time.Duration
	// Detached is, for Expire, the earliest time the server may have
	// detached the session; Call is Detached plus the session timeout.
	// Zero means not known, and then no Resume cancels the Expire.
	Detached time.Duration
}

// Indeterminate reports whether the outcome is unknown.
func (o Operation) Indeterminate() bool { return o.Status == Unknown }

// String describes o in one line, e.g.
// `lock "a" -> acquired 7 (client 3, session S, 1.200000s..1.300000s)`.
func (o Operation) String() string {
	return fmt.Sprintf("%s (client %d, session %s, %s..%s)", o.describe(), o.Client, o.Session, stamp(o.Call), stamp(o.Return))
}

// describe is the request and answer without who and when.
func (o Operation) describe() string {
	var req string
	switch o.Kind {
	case Lock, RLock, Unlock:
		req = fmt.Sprintf("%s %q", o.Kind, o.Name)
	case LockWait:
		req = fmt.Sprintf("lock %q %d", o.Name, o.Wait)
	case RLockWait:
		req = fmt.Sprintf("rlock %q %d", o.Name, o.Wait)
	case Acquire:
		req = fmt.Sprintf("acquire %q %d", o.Name, o.Limit)
	case AcquireWait:
		req = fmt.Sprintf("acquire %q %d %d", o.Name, o.Limit, o.Wait)
	case Expire:
		req = "expire"
	default:
		req = o.Kind.String()
	}
	return req + " -> " + o.Result.String()
}

func (r Result) String() string {
	if r.Status == Acquired {
		if r.Token == 0 {
			return "acquired ?"
		}
		return "acquired " + strconv.FormatUint(r.Token, 10)
	}
	if r.Status == Unknown {
		return "?"
	}
	return r.Status.String()
}

// stamp formats a time offset for messages.
func stamp(d time.Duration) string {
	if d == Never {
		return "never"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 6, 64) + "s"
}

// allowed lists the statuses each kind may carry.
var allowed = map[Kind][]Status{
	Lock:        {Acquired, Unavailable, NoUpgrade, Refused, Unknown},
	LockWait:    {Acquired, Unavailable, NoUpgrade, Refused, Unknown},
	RLock:       {Acquired, Unavailable, Refused, Unknown},
	RLockWait:   {Acquired, Unavailable, Refused, Unknown},
	Acquire:     {Acquired, Unavailable, Refused, Unknown},
	AcquireWait: {Acquired, Unavailable, Refused, Unknown},
	Unlock:      {Unlocked, NotYours, NotLocked, Refused, Unknown},
	UnlockAll:   {OK, Refused, Unknown},
	Expire:      {OK, Unknown},
	Resume:      {OK, NotYours, NotLocked, Refused, Unknown},
	Drop:        {OK, Unknown},
}

// validate says what is wrong with o, if anything.
func (o Operation) validate() error {
	statuses, ok := allowed[o.Kind]
	if !ok {
		return fmt.Errorf("invalid kind %d", o.Kind)
	}
	okStatus := false
	for _, s := range statuses {
		okStatus = okStatus || s == o.Status
	}
	if !okStatus {
		return fmt.Errorf("%s cannot answer %s", o.Status, o.Kind)
	}
	switch {
	case o.Session == "":
		return fmt.Errorf("no session")
	case o.Client < 0:
		return fmt.Errorf("negative client %d", o.Client)
	case (o.Kind.Takes() || o.Kind == Unlock || o.Kind == Drop) && o.Name == "":
		return fmt.Errorf("%s without a name", o.Kind)
	case o.Kind.Mode() == Permit && o.Limit < 1:
		return fmt.Errorf("%s with limit %d", o.Kind, o.Limit)
	case strings.ContainsAny(o.Session, "\x00\x01"):
		// The model's sets of sessions use them as separators.
		return fmt.Errorf("session %q contains a byte 0 or 1", o.Session)
	case o.Call < 0:
		return fmt.Errorf("negative call time %v", o.Call)
	case o.Status != Unknown && o.Return < o.Call:
		return fmt.Errorf("returned at %v before its call at %v", o.Return, o.Call)
	case o.Status != Unknown && o.Return == Never:
		return fmt.Errorf("%s answer never returned", o.Status)
	}
	return nil
}
