package wire

import (
	"bytes"
	"strconv"
)

// The reply lines of the original elock, byte for byte. Existing clients
// match on them, so they never change.
var (
	Acquired     = []byte("200 Acquired\r\n")
	Unavailable  = []byte("409 Unavailable\r\n")
	Unlocked     = []byte("200 Unlocked\r\n")
	NotYours     = []byte("403 not_yours\r\n")
	NotLocked    = []byte("403 not_locked\r\n")
	OK           = []byte("200 OK\r\n")
	ConnIDSet    = []byte("200 conn id set\r\n")
	CannotSetID  = []byte("403 cannot set conn id\r\n")
	TimeoutSet   = []byte("200 timeout set\r\n")
	Goodbye      = []byte("200 Hey, it was nice seeing you.\r\n")
	StatsHeader  = []byte("200 STATS\r\n")
	InfoHeader   = []byte("200 INFO\r\n")
	SessHeader   = []byte("200 SESSION\r\n")
	MembersHead  = []byte("200 MEMBERS\r\n")
	WhereHeader  = []byte("200 WHERE\r\n")
	LabelSet     = []byte("200 label set\r\n")
	LocksHeader  = []byte("200 LOCKS\r\n")
	Elected      = []byte("200 Elected\r\n")
	NoLeader     = []byte("409 no leader\r\n")
	Watching     = []byte("200 watching\r\n")
	End          = []byte("END\r\n")
	unknownStart = []byte("400 Unknown command: \"")
	unknownEnd   = []byte("\"\r\n")
)

// Reply codes. The first digit says which of three classes an answer is
// in, and clients act on the class:
//
//	2xx, 403, 409, 400, 413, 429: a definite answer; retrying the same
//	          request gives the same answer until something changes.
//	503:      retryable; nothing happened, try again (maybe another node).
//	504:      indeterminate; the request may or may not have taken effect.
const (
	CodeOK            = 200
	CodeBadRequest    = 400
	CodeForbidden     = 403
	CodeUnavailable   = 409
	CodeTooLong       = 413
	CodeLimit         = 429
	CodeRetry         = 503
	CodeIndeterminate = 504
)

// AppendUnknown appends `400 Unknown command: "VERB"`, the original's
// answer to an unknown verb and to a wrong number of arguments.
func AppendUnknown(dst, verb []byte) []byte {
	dst = append(dst, unknownStart...)
	dst = append(dst, verb...)
	return append(dst, unknownEnd...)
}

// AppendError appends "CODE reason\r\n".
func AppendError(dst []byte, code int, reason string) []byte {
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, ' ')
	dst = append(dst, reason...)
	return append(dst, '\r', '\n')
}

// AppendUint appends "200 N\r\n", the reply to token.
func AppendUint(dst []byte, v uint64) []byte {
	dst = append(dst, "200 "...)
	dst = strconv.AppendUint(dst, v, 10)
	return append(dst, '\r', '\n')
}

// AppendText appends "200 TEXT\r\n", the reply to conn_id.
func AppendText(dst []byte, text string) []byte {
	dst = append(dst, "200 "...)
	dst = append(dst, text...)
	return append(dst, '\r', '\n')
}

// AppendStat appends one "STAT key value" line of a block reply.
func AppendStat(dst []byte, key string, v int64) []byte {
	dst = append(dst, "STAT "...)
	dst = append(dst, key...)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, v, 10)
	return append(dst, '\r', '\n')
}

// AppendStatText is AppendStat for a value that is not a number.
func AppendStatText(dst []byte, key, v string) []byte {
	dst = append(dst, "STAT "...)
	dst = append(dst, key...)
	dst = append(dst, ' ')
	dst = append(dst, v...)
	return append(dst, '\r', '\n')
}

// Reply is one reply line as a client sees it.
type Reply struct {
	Code int
	Text string // everything after "CODE "
}

// ParseReply splits a reply line (terminator stripped) into code and text.
func ParseReply(line []byte) (Reply, bool) {
	if len(line) < 3 {
		return Reply{}, false
	}
	code, ok := ParseUint(line[:3], 999)
	if !ok || code < 100 {
		return Reply{}, false
	}
	rest := line[3:]
	if len(rest) > 0 {
		if rest[0] != ' ' {
			return Reply{}, false
		}
		rest = rest[1:]
	}
	return Reply{Code: int(code), Text: string(rest)}, true
}

// IsBlockHeader reports whether a 200 reply's text opens a multi-line
// block ended by END: STATS, INFO, SESSION, MEMBERS, WHERE and LOCKS.
func IsBlockHeader(text string) bool {
	switch text {
	case "STATS", "INFO", "SESSION", "MEMBERS", "WHERE", "LOCKS":
		return true
	}
	return false
}

// ParseStat splits a "STAT key value" line. ok is false for any other line.
func ParseStat(line []byte) (key, value string, ok bool) {
	rest, found := bytes.CutPrefix(line, []byte("STAT "))
	if !found {
		return "", "", false
	}
	k, v, found := bytes.Cut(rest, []byte(" "))
	if !found {
		return "", "", false
	}
	return string(k), string(v), true
}

// AppendLeader appends "200 LEADER <token> <value>", value "-" when the
// leader published none.
func AppendLeader(b []byte, token uint64, value []byte) []byte {
	b = append(b, "200 LEADER "...)
	b = strconv.AppendUint(b, token, 10)
	b = append(b, ' ')
	if len(value) == 0 {
		b = append(b, '-')
	} else {
		b = append(b, value...)
	}
	return append(b, "\r\n"...)
}

// AppendEvent appends a watch's EVENT line: "EVENT <name> held <token>
// <value|->", "EVENT <name> shared <holders> <token>" or "EVENT <name>
// free <last token>".
func AppendEvent(b []byte, name, what string, n, token uint64, value string) []byte {
	b = append(b, "EVENT "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, what...)
	b = append(b, ' ')
	switch what {
	case "held":
		b = strconv.AppendUint(b, token, 10)
		b = append(b, ' ')
		if value == "" {
			value = "-"
		}
		b = append(b, value...)
	case "shared":
		b = strconv.AppendUint(b, n, 10)
		b = append(b, ' ')
		b = strconv.AppendUint(b, token, 10)
	default:
		b = strconv.AppendUint(b, token, 10)
	}
	return append(b, "\r\n"...)
}

// AppendSessionEvent appends a session event: "EVENT <kind> <name> <n>"
// ("EVENT lost NAME TOKEN", "EVENT wanted NAME WAITERS").
func AppendSessionEvent(b []byte, kind, name string, n uint64) []byte {
	b = append(b, "EVENT "...)
	b = append(b, kind...)
	b = append(b, ' ')
	b = append(b, name...)
	b = append(b, ' ')
	b = strconv.AppendUint(b, n, 10)
	return append(b, "\r\n"...)
}
