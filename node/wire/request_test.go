package wire_test

import (
	"math"
	"strings"
	"testing"

	"github.com/elock/elock/node/wire"
)

// parsed is what a test expects of Parse: the flags and the request as
// strings.
type parsed struct {
	blank, ok bool
	cmd       wire.Command
	verb      string
	args      []string
}

func parseOf(line string) parsed {
	var r wire.Request
	blank, ok := wire.Parse([]byte(line), &r)
	p := parsed{blank: blank, ok: ok, cmd: r.Cmd, verb: string(r.Verb)}
	if r.Verb == nil {
		p.verb = "<nil>"
	}
	for i := 0; i < r.NArgs; i++ {
		p.args = append(p.args, string(r.Args[i]))
	}
	return p
}

func (p parsed) equal(q parsed) bool {
	if p.blank != q.blank || p.ok != q.ok || p.cmd != q.cmd || p.verb != q.verb || len(p.args) != len(q.args) {
		return false
	}
	for i := range p.args {
		if p.args[i] != q.args[i] {
			return false
		}
	}
	return true
}

func good(cmd wire.Command, verb string, args ...string) parsed {
	return parsed{ok: true, cmd: cmd, verb: verb, args: args}
}

// bad is a non-blank line that must be answered `400 Unknown command`.
func bad(cmd wire.Command, verb string, args ...string) parsed {
	return parsed{cmd: cmd, verb: verb, args: args}
}

var blankLine = parsed{blank: true, verb: "<nil>"}

func TestParse(t *testing.T) {
	long := strings.Repeat("n", 300)
	tests := []struct {
		line string
		want parsed
	}{
		// Every verb with its legal argument counts...
		{"lock a", good(wire.Lock, "lock", "a")},
		{"lock a 5", good(wire.Lock, "lock", "a", "5")},
		{"rlock a", good(wire.RLock, "rlock", "a")},
		{"rlock a 5", good(wire.RLock, "rlock", "a", "5")},
		{"acquire s 3", good(wire.Acquire, "acquire", "s", "3")},
		{"acquire s 3 5", good(wire.Acquire, "acquire", "s", "3", "5")},
		{"acquire s", bad(wire.Acquire, "acquire", "s")},
		{"acquire s 3 5 x", bad(wire.Acquire, "acquire", "s", "3", "5")},
		{"rlock", bad(wire.RLock, "rlock")},
		{"unlock a", good(wire.Unlock, "unlock", "a")},
		{"unlock_all", good(wire.UnlockAll, "unlock_all")},
		{"conn_id", good(wire.ConnID, "conn_id")},
		{"conn_id 0123abc", good(wire.ConnID, "conn_id", "0123abc")},
		{"set_timeout 30000", good(wire.SetTimeout, "set_timeout", "30000")},
		{"quit", good(wire.Quit, "quit")},
		{"stats", good(wire.Stats, "stats")},
		{"token a", good(wire.Token, "token", "a")},
		{"info a", good(wire.Info, "info", "a")},
		{"session", good(wire.Session, "session")},
		{"members", good(wire.Members, "members")},
		{"where a", good(wire.Where, "where", "a")},

		// ...and with one too few or too many. The verb is quoted as sent.
		{"lock", bad(wire.Lock, "lock")},
		{"lock a 5 x", bad(wire.Lock, "lock", "a", "5", "x")},
		{"lock a 5 x y z", bad(wire.Lock, "lock", "a", "5", "x")},
		{"unlock", bad(wire.Unlock, "unlock")},
		{"unlock a b", bad(wire.Unlock, "unlock", "a", "b")},
		{"unlock_all a", bad(wire.UnlockAll, "unlock_all", "a")},
		{"conn_id a b", bad(wire.ConnID, "conn_id", "a", "b")},
		{"set_timeout", bad(wire.SetTimeout, "set_timeout")},
		{"set_timeout 1 2", bad(wire.SetTimeout, "set_timeout", "1", "2")},
		{"quit now", bad(wire.Quit, "quit", "now")},
		{"stats items", bad(wire.Stats, "stats", "items")},
		{"token", bad(wire.Token, "token")},
		{"token a b", bad(wire.Token, "token", "a", "b")},
		{"info", bad(wire.Info, "info")},
		{"info a b c", bad(wire.Info, "info", "a", "b", "c")},
		{"session x", bad(wire.Session, "session", "x")},
		{"members x", bad(wire.Members, "members", "x")},
		{"where", bad(wire.Where, "where")},

		// Verbs are case-sensitive and compared whole.
		{"LOCK a", bad(wire.Unknown, "LOCK", "a")},
		{"Lock a", bad(wire.Unknown, "Lock", "a")},
		{"STATS", bad(wire.Unknown, "STATS")},
		{"lockz a", bad(wire.Unknown, "lockz", "a")},
		{"loc a", bad(wire.Unknown, "loc", "a")},
		{"unlock-all", bad(wire.Unknown, "unlock-all")},
		{"frobnicate", bad(wire.Unknown, "frobnicate")},
		{"frobnicate a b c d", bad(wire.Unknown, "frobnicate", "a", "b", "c")},

		// Spaces: runs of them separate, leading and trailing ones vanish.
		{"lock  a   5", good(wire.Lock, "lock", "a", "5")},
		{"   lock a", good(wire.Lock, "lock", "a")},
		{"lock a   ", good(wire.Lock, "lock", "a")},
		{"  unlock_all  ", good(wire.UnlockAll, "unlock_all")},
		{" lock a 5 ", good(wire.Lock, "lock", "a", "5")},

		// A tab, a CR or any other byte is part of a token.
		{"lock\ta", bad(wire.Unknown, "lock\ta")},
		{"lock a\t5", good(wire.Lock, "lock", "a\t5")},
		{"\tstats", bad(wire.Unknown, "\tstats")},
		{"stats\t", bad(wire.Unknown, "stats\t")},
		{"stats\r", bad(wire.Unknown, "stats\r")},
		{"lock a\rb", good(wire.Lock, "lock", "a\rb")},
		{"lock \xff\xfe\x00 1", good(wire.Lock, "lock", "\xff\xfe\x00", "1")},
		{"lock " + long, good(wire.Lock, "lock", long)},
		{"\t", bad(wire.Unknown, "\t")},

		// Blank lines.
		{"", blankLine},
		{" ", blankLine},
		{"        ", blankLine},
	}
	for _, tt := range tests {
		if got := parseOf(tt.line); !got.equal(tt.want) {
			t.Errorf("Parse(%q) = %+v, want %+v", tt.line, got, tt.want)
		}
	}
}

// TestParseResets checks that Parse clears what an earlier request left in
// the reused Request.
func TestParseResets(t *testing.T) {
	var r wire.Request
	wire.Parse([]byte("lock a 5"), &r)
	if blank, ok := wire.Parse([]byte("stats"), &r); blank || !ok {
		t.Fatalf("Parse(stats) = %v, %v", blank, ok)
	}
	if r.NArgs != 0 || r.Args[0] != nil || r.Args[1] != nil || r.Arg(0) != nil {
		t.Errorf("stale arguments after Parse(stats): %+v", r)
	}
	wire.Parse([]byte("lock a 5"), &r)
	if blank, _ := wire.Parse([]byte("   "), &r); !blank || r.Verb != nil || r.Cmd != wire.Unknown || r.NArgs != 0 {
		t.Errorf("stale request after a blank line: %+v", r)
	}
}

func TestRequestArg(t *testing.T) {
	var r wire.Request
	wire.Parse([]byte("lock a 5"), &r)
	for i, want := range []string{"a", "5", "", ""} {
		got := r.Arg(i)
		if string(got) != want || (want == "") != (got == nil) {
			t.Errorf("Arg(%d) = %q, want %q", i, got, want)
		}
	}
}

func TestCommandString(t *testing.T) {
	want := map[wire.Command]string{
		wire.Unknown: "unknown", wire.Lock: "lock", wire.Unlock: "unlock",
		wire.UnlockAll: "unlock_all", wire.ConnID: "conn_id", wire.SetTimeout: "set_timeout",
		wire.Quit: "quit", wire.Stats: "stats", wire.Token: "token", wire.Info: "info",
		wire.Session: "session", wire.Members: "members", wire.Where: "where",
		wire.Auth: "auth", wire.Label: "label", wire.Locks: "locks", wire.RLock: "rlock", wire.Acquire: "acquire", wire.Campaign: "campaign", wire.Proclaim: "proclaim", wire.Leader: "leader", wire.Watch: "watch", wire.Unwatch: "unwatch", wire.Events: "events",
		wire.Events + 1:   "unknown", // the first past the names
		wire.Command(200): "unknown",
	}
	for c, s := range want {
		if c.String() != s {
			t.Errorf("Command(%d).String() = %q, want %q", c, c.String(), s)
		}
		// Every known verb parses back to its command.
		if c != wire.Unknown && s != "unknown" {
			var r wire.Request
			wire.Parse([]byte(s), &r)
			if r.Cmd != c {
				t.Errorf("Parse(%q).Cmd = %v, want %v", s, r.Cmd, c)
			}
		}
	}
}

func TestParseUint(t *testing.T) {
	const maxU = math.MaxUint64
	tests := []struct {
		in   string
		max  uint64
		want uint64
		ok   bool
	}{
		{"0", 10, 0, true},
		{"5", 10, 5, true},
		{"10", 10, 10, true},
		{"11", 10, 11, false},
		{"007", 10, 7, true},
		{"0000", 10, 0, true},
		{"00000000000000000010", 10, 10, true}, // 20 characters

		{"", 10, 0, false},
		{"+5", 10, 0, false},
		{"-5", 10, 0, false},
		{"-0", 10, 0, false},
		{"1.5", 10, 0, false},
		{"1.", 10, 0, false},
		{".5", 10, 0, false},
		{"1e3", 10000, 0, false},
		{"0x10", 100, 0, false},
		{" 5", 10, 0, false},
		{"5 ", 10, 0, false},
		{"5\t", 10, 0, false},
		{"5\r", 10, 0, false},
		{"abc", 10, 0, false},
		{"٣", 10, 0, false}, // a non-ASCII digit
		// Bytes below '0', where the maximum is far above what one
		// such byte would add if taken for a digit ("-1" as 253*10+1).
		{"-1", maxU, 0, false},
		{"1-", maxU, 0, false},
		{"/", maxU, 0, false},
		{"1 2", maxU, 0, false},
		{"\x00", maxU, 0, false},
		{"1:", maxU, 0, false}, // ':' is the byte after '9'

		// max smaller than one digit.
		{"0", 0, 0, true},
		{"1", 0, 1, false},
		{"9", 5, 9, false},

		// The uint64 boundary.
		{"18446744073709551615", maxU, maxU, true},
		{"18446744073709551615", maxU - 1, maxU, false},
		{"18446744073709551614", maxU - 1, maxU - 1, true},
		{"18446744073709551616", maxU, 0, false},
		{"18446744073709551619", maxU, 0, false},
		{"18446744073709551620", maxU, 0, false},
		{"99999999999999999999", maxU, 0, false},
		{"100000000000000000000", maxU, 0, false},
		{"123456789012345678901234567890", maxU, 0, false},
		// Values just above a typical max.
		{"86401", 86400, 86401, false},
		{"4294967296", math.MaxUint32, 4294967296, false},
		{"4294967295", math.MaxUint32, math.MaxUint32, true},
	}
	for _, tt := range tests {
		v, ok := wire.ParseUint([]byte(tt.in), tt.max)
		if ok != tt.ok || (ok && v != tt.want) {
			t.Errorf("ParseUint(%q, %d) = %d, %v; want %d, %v", tt.in, tt.max, v, ok, tt.want, tt.ok)
		}
		if ok && !wire.IsDigits([]byte(tt.in)) {
			t.Errorf("ParseUint(%q) accepted what IsDigits rejects", tt.in)
		}
	}
}

// TestParseUintLongZeroPadded: the contract is "a whole decimal number,
// leading zeros allowed, ok == false only for anything else or a value
// above max". A zero-padded small value longer than 20 characters is such a
// number, and the original elock (Erlang list_to_integer) accepts it; the
// server answers "lock a 000000000000000000001" with a 4xx instead.
func TestParseUintLongZeroPadded(t *testing.T) {
	for _, in := range []string{
		"000000000000000000001",                             // 21 characters, value 1
		"0000000000000000000000000000000000000000000000030", // value 30
		"000000000000000000018446744073709551615",           // MaxUint64 padded
	} {
		v, ok := wire.ParseUint([]byte(in), math.MaxUint64)
		want, _ := wire.ParseUint([]byte(strings.TrimLeft(in, "0")), math.MaxUint64)
		if !ok || v != want {
			t.Errorf("ParseUint(%q) = %d, %v; want %d, true", in, v, ok, want)
		}
	}
}

func TestIsDigits(t *testing.T) {
	tests := map[string]bool{
		"0": true, "0123456789": true, "99999999999999999999999999": true,
		"": false, " 1": false, "1 ": false, "-1": false, "+1": false, "1.0": false, "a": false, "1a": false,
	}
	for in, want := range tests {
		if got := wire.IsDigits([]byte(in)); got != want {
			t.Errorf("IsDigits(%q) = %v, want %v", in, got, want)
		}
	}
}
