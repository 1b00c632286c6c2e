package wire

import "math"

// Command identifies a request verb. Verbs are case-sensitive: "LOCK" is
// an unknown command, as in the original elock.
type Command uint8

const (
	Unknown    Command = iota
	Lock               // lock NAME [SECS]
	Unlock             // unlock NAME
	UnlockAll          // unlock_all
	ConnID             // conn_id [ID]
	SetTimeout         // set_timeout MS
	Quit               // quit
	Stats              // stats
	Token              // token NAME          (extension)
	Info               // info NAME           (extension)
	Session            // session             (extension)
	Members            // members             (mesh extension)
	Where              // where NAME          (mesh extension)
	Auth               // auth TOKEN          (extension: -acl)
	Label              // label TEXT          (extension)
	Locks              // locks [PREFIX [LIMIT [ORDER]]] (extension)
	RLock              // rlock NAME [SECS]   (extension: shared)
	Acquire            // acquire NAME LIMIT [SECS] (extension: semaphore)
	Campaign           // campaign NAME VALUE [SECS] (extension: election)
	Proclaim           // proclaim NAME VALUE (extension: election)
	Leader             // leader NAME         (extension: election)
	Watch              // watch NAME          (extension: events)
	Unwatch            // unwatch NAME        (extension: events)
	Events             // events on           (extension: session events)
)

var commandNames = [...]string{
	Unknown:    "",
	Lock:       "lock",
	Unlock:     "unlock",
	UnlockAll:  "unlock_all",
	ConnID:     "conn_id",
	SetTimeout: "set_timeout",
	Quit:       "quit",
	Stats:      "stats",
	Token:      "token",
	Info:       "info",
	Session:    "session",
	Members:    "members",
	Where:      "where",
	Auth:       "auth",
	Label:      "label",
	Locks:      "locks",
	RLock:      "rlock",
	Acquire:    "acquire",
	Campaign:   "campaign",
	Proclaim:   "proclaim",
	Leader:     "leader",
	Watch:      "watch",
	Unwatch:    "unwatch",
	Events:     "events",
}

// arity gives the fewest and most arguments each verb takes.
var arity = [...][2]int{
	Lock:       {1, 2},
	Unlock:     {1, 1},
	UnlockAll:  {0, 0},
	ConnID:     {0, 1},
	SetTimeout: {1, 1},
	Quit:       {0, 0},
	Stats:      {0, 0},
	Token:      {1, 1},
	Info:       {1, 1},
	Session:    {0, 0},
	Members:    {0, 0},
	Where:      {1, 1},
	Auth:       {1, 1},
	Label:      {1, 1},
	Locks:      {0, 3},
	RLock:      {1, 2},
	Acquire:    {2, 3},
	Campaign:   {2, 3},
	Proclaim:   {2, 2},
	Leader:     {1, 1},
	Watch:      {1, 1},
	Unwatch:    {1, 1},
	Events:     {1, 1},
}

func (c Command) String() string {
	if int(c) < len(commandNames) && c != Unknown {
		return commandNames[c]
	}
	return "unknown"
}

// NumCommands is one more than the highest Command: every command,
// Unknown included, is below it, so a table indexed by Command (metrics'
// counters by verb) can be sized from it and picks up a new verb by
// itself.
func NumCommands() int { return len(commandNames) }

// maxArgs is the most arguments any verb takes.
const maxArgs = 3

// Request is one parsed request line. Its byte slices alias the line.
type Request struct {
	Cmd Command
	// Verb is the first token as sent; the reply to an unknown command or a
	// wrong argument count quotes it.
	Verb []byte
	// Args holds the arguments after the verb; NArgs says how many are set.
	Args  [maxArgs][]byte
	NArgs int
}

// Arg returns argument i, or nil.
func (r *Request) Arg(i int) []byte {
	if i < r.NArgs {
		return r.Args[i]
	}
	return nil
}

// Parse tokenises line (terminator already stripped) into r. Tokens are
// separated by runs of ' ' only; a tab is an ordinary byte. It reports
// blank == true for an empty or all-space line, which callers ignore.
// ok == false means the verb is unknown or has the wrong number of
// arguments: the reply is UnknownCommand(r.Verb).
func Parse(line []byte, r *Request) (blank, ok bool) {
	*r = Request{}
	i := skipSpaces(line, 0)
	if i == len(line) {
		return true, false
	}
	j := tokenEnd(line, i)
	r.Verb = line[i:j]
	r.Cmd = lookup(r.Verb)
	extra := 0
	for i = skipSpaces(line, j); i < len(line); i = skipSpaces(line, j) {
		j = tokenEnd(line, i)
		if r.NArgs < maxArgs {
			r.Args[r.NArgs] = line[i:j]
			r.NArgs++
		} else {
			extra++
		}
	}
	if r.Cmd == Unknown {
		return false, false
	}
	a := arity[r.Cmd]
	n := r.NArgs + extra
	return false, n >= a[0] && n <= a[1]
}

func skipSpaces(b []byte, i int) int {
	for i < len(b) && b[i] == ' ' {
		i++
	}
	return i
}

func tokenEnd(b []byte, i int) int {
	for i < len(b) && b[i] != ' ' {
		i++
	}
	return i
}

// lookup maps a verb to its Command without allocating: switching on
// string(b) compiles to comparisons, not a conversion.
func lookup(verb []byte) Command {
	switch string(verb) {
	case "lock":
		return Lock
	case "unlock":
		return Unlock
	case "unlock_all":
		return UnlockAll
	case "conn_id":
		return ConnID
	case "set_timeout":
		return SetTimeout
	case "quit":
		return Quit
	case "stats":
		return Stats
	case "token":
		return Token
	case "info":
		return Info
	case "session":
		return Session
	case "members":
		return Members
	case "where":
		return Where
	case "auth":
		return Auth
	case "label":
		return Label
	case "locks":
		return Locks
	case "rlock":
		return RLock
	case "acquire":
		return Acquire
	case "campaign":
		return Campaign
	case "proclaim":
		return Proclaim
	case "leader":
		return Leader
	case "watch":
		return Watch
	case "unwatch":
		return Unwatch
	case "events":
		return Events
	}
	return Unknown
}

// ParseUint parses a whole decimal number with no sign, spaces or
// fraction, and reports ok == false for anything else or for a value above
// max. Leading zeros are allowed ("007" is 7), as the original accepted.
func ParseUint(b []byte, max uint64) (v uint64, ok bool) {
	if len(b) == 0 {
		return 0, false
	}
	for len(b) > 1 && b[0] == '0' {
		b = b[1:]
	}
	if len(b) > 20 {
		return 0, false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, v <= max
}

// IsDigits reports whether b is a non-empty run of ASCII digits, so that a
// caller can tell "not a number" from "a number out of range".
func IsDigits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
