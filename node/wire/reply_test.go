package wire_test

import (
	"math"
	"strings"
	"testing"

	"github.com/elock/elock/node/wire"
)

// TestFixedReplies pins the original elock's reply lines byte for byte:
// existing clients match on them.
func TestFixedReplies(t *testing.T) {
	tests := []struct {
		got  []byte
		want string
	}{
		{wire.Acquired, "200 Acquired\r\n"},
		{wire.Unavailable, "409 Unavailable\r\n"},
		{wire.Unlocked, "200 Unlocked\r\n"},
		{wire.NotYours, "403 not_yours\r\n"},
		{wire.NotLocked, "403 not_locked\r\n"},
		{wire.OK, "200 OK\r\n"},
		{wire.ConnIDSet, "200 conn id set\r\n"},
		{wire.CannotSetID, "403 cannot set conn id\r\n"},
		{wire.TimeoutSet, "200 timeout set\r\n"},
		{wire.Goodbye, "200 Hey, it was nice seeing you.\r\n"},
		{wire.StatsHeader, "200 STATS\r\n"},
		{wire.End, "END\r\n"},
	}
	for _, tt := range tests {
		if string(tt.got) != tt.want {
			t.Errorf("reply %q, want %q", tt.got, tt.want)
		}
	}
}

func TestAppendReplies(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"unknown", wire.AppendUnknown(nil, []byte("LOCK")), "400 Unknown command: \"LOCK\"\r\n"},
		{"unknown empty verb", wire.AppendUnknown(nil, nil), "400 Unknown command: \"\"\r\n"},
		// The verb is quoted as sent, whatever its bytes.
		{"unknown raw bytes", wire.AppendUnknown(nil, []byte("a\"b\t\r\xff")), "400 Unknown command: \"a\"b\t\r\xff\"\r\n"},
		{"unknown appends", wire.AppendUnknown([]byte("200 OK\r\n"), []byte("x")), "200 OK\r\n400 Unknown command: \"x\"\r\n"},
		{"error", wire.AppendError(nil, wire.CodeTooLong, "line too long"), "413 line too long\r\n"},
		{"error retry", wire.AppendError(nil, wire.CodeRetry, "moved"), "503 moved\r\n"},
		{"error empty reason", wire.AppendError(nil, 400, ""), "400 \r\n"},
		{"uint zero", wire.AppendUint(nil, 0), "200 0\r\n"},
		{"uint", wire.AppendUint(nil, 4294967297), "200 4294967297\r\n"},
		{"uint max", wire.AppendUint(nil, math.MaxUint64), "200 18446744073709551615\r\n"},
		{"text", wire.AppendText(nil, "0f3a9c"), "200 0f3a9c\r\n"},
		{"text empty", wire.AppendText(nil, ""), "200 \r\n"},
		{"stat", wire.AppendStat(nil, "clients", 3), "STAT clients 3\r\n"},
		{"stat negative", wire.AppendStat(nil, "delta", -12), "STAT delta -12\r\n"},
		{"stat min", wire.AppendStat(nil, "x", math.MinInt64), "STAT x -9223372036854775808\r\n"},
		{"stat text", wire.AppendStatText(nil, "node", "n1:11400"), "STAT node n1:11400\r\n"},
		{"stat text with spaces", wire.AppendStatText(nil, "v", "a b"), "STAT v a b\r\n"},
	}
	for _, tt := range tests {
		if string(tt.got) != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

// TestStatsBlock builds a whole stats reply and reads it back the way a
// client does: header, STAT lines in order, END.
func TestStatsBlock(t *testing.T) {
	out := append([]byte(nil), wire.StatsHeader...)
	out = wire.AppendStat(out, "clients", 2)
	out = wire.AppendStat(out, "locks", 7)
	out = wire.AppendStat(out, "monitoring", 2)
	out = append(out, wire.End...)
	const want = "200 STATS\r\nSTAT clients 2\r\nSTAT locks 7\r\nSTAT monitoring 2\r\nEND\r\n"
	if string(out) != want {
		t.Fatalf("stats block %q, want %q", out, want)
	}

	f := wire.Framer{MaxLine: wire.DefaultMaxLine}
	fr, line, n := f.Next(out)
	if fr != wire.Line {
		t.Fatalf("no header line: %v", fr)
	}
	r, ok := wire.ParseReply(line)
	if !ok || r.Code != 200 || !wire.IsBlockHeader(r.Text) {
		t.Fatalf("header %q parsed as %+v, %v", line, r, ok)
	}
	out = out[n:]
	var keys []string
	for {
		fr, line, n = f.Next(out)
		if fr != wire.Line {
			t.Fatalf("block ended early: %v", fr)
		}
		out = out[n:]
		if string(line) == "END" {
			break
		}
		k, v, ok := wire.ParseStat(line)
		if !ok {
			t.Fatalf("ParseStat(%q) failed", line)
		}
		keys = append(keys, k+"="+v)
	}
	if got := strings.Join(keys, ","); got != "clients=2,locks=7,monitoring=2" || len(out) != 0 {
		t.Errorf("read back %s, %d bytes left", got, len(out))
	}
}

func TestParseReply(t *testing.T) {
	tests := []struct {
		line string
		want wire.Reply
		ok   bool
	}{
		{"200 Acquired", rep(200, "Acquired"), true},
		{"409 Unavailable", rep(409, "Unavailable"), true},
		{"400 Unknown command: \"LOCK\"", rep(400, "Unknown command: \"LOCK\""), true},
		{"200 Hey, it was nice seeing you.", rep(200, "Hey, it was nice seeing you."), true},
		{"200", rep(200, ""), true},
		{"200 ", rep(200, ""), true},
		{"200  two spaces", rep(200, " two spaces"), true},
		{"100 x", rep(100, "x"), true},
		{"999 x", rep(999, "x"), true},

		{"", wire.Reply{}, false},
		{"20", wire.Reply{}, false},
		{"099 x", wire.Reply{}, false},
		{"000", wire.Reply{}, false},
		{"2000 x", wire.Reply{}, false},
		{"200x", wire.Reply{}, false},
		{"200\tx", wire.Reply{}, false},
		{"+20 x", wire.Reply{}, false},
		{"-20 x", wire.Reply{}, false},
		{" 200 x", wire.Reply{}, false},
		{"abc x", wire.Reply{}, false},
		{"END", wire.Reply{}, false},
		{"STAT clients 1", wire.Reply{}, false},
	}
	for _, tt := range tests {
		got, ok := wire.ParseReply([]byte(tt.line))
		if ok != tt.ok || got != tt.want {
			t.Errorf("ParseReply(%q) = %+v, %v; want %+v, %v", tt.line, got, ok, tt.want, tt.ok)
		}
	}
}

// TestReplyRoundTrip writes replies with the Append helpers, frames them as
// a client does and parses them back.
func TestReplyRoundTrip(t *testing.T) {
	tests := []struct {
		line []byte
		want wire.Reply
	}{
		{wire.Acquired, rep(200, "Acquired")},
		{wire.NotYours, rep(403, "not_yours")},
		{wire.Goodbye, rep(200, "Hey, it was nice seeing you.")},
		{wire.AppendUnknown(nil, []byte("x y")), rep(400, "Unknown command: \"x y\"")},
		{wire.AppendError(nil, wire.CodeIndeterminate, "outcome unknown"), rep(504, "outcome unknown")},
		{wire.AppendUint(nil, 1<<40|7), rep(200, "1099511627783")},
		{wire.AppendText(nil, "abc"), rep(200, "abc")},
	}
	for _, tt := range tests {
		f := wire.Framer{MaxLine: wire.DefaultMaxLine}
		fr, line, n := f.Next(tt.line)
		if fr != wire.Line || n != len(tt.line) {
			t.Errorf("framing %q: %v, %d", tt.line, fr, n)
			continue
		}
		got, ok := wire.ParseReply(line)
		if !ok || got != tt.want {
			t.Errorf("ParseReply(%q) = %+v, %v; want %+v", line, got, ok, tt.want)
		}
	}
	for _, v := range []uint64{0, 1, 1<<32 | 1, math.MaxUint64} {
		line := wire.AppendUint(nil, v)
		r, ok := wire.ParseReply(line[:len(line)-2])
		got, vok := wire.ParseUint([]byte(r.Text), math.MaxUint64)
		if !ok || r.Code != wire.CodeOK || !vok || got != v {
			t.Errorf("AppendUint(%d) read back as %+v -> %d", v, r, got)
		}
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		line, key, value string
		ok               bool
	}{
		{"STAT clients 3", "clients", "3", true},
		{"STAT locks 0", "locks", "0", true},
		{"STAT node a b c", "node", "a b c", true},
		{"STAT k ", "k", "", true},
		{"STAT  v", "", "v", true},
		{"STAT clients", "", "", false},
		{"STAT ", "", "", false},
		{"STAT", "", "", false},
		{"stat clients 3", "", "", false},
		{" STAT clients 3", "", "", false},
		{"STATS clients 3", "", "", false},
		{"END", "", "", false},
		{"", "", "", false},
	}
	for _, tt := range tests {
		k, v, ok := wire.ParseStat([]byte(tt.line))
		if k != tt.key || v != tt.value || ok != tt.ok {
			t.Errorf("ParseStat(%q) = %q, %q, %v; want %q, %q, %v", tt.line, k, v, ok, tt.key, tt.value, tt.ok)
		}
	}
	for _, kv := range [][2]string{{"clients", "12"}, {"version", "1.2.3 (mesh)"}} {
		line := wire.AppendStatText(nil, kv[0], kv[1])
		k, v, ok := wire.ParseStat(line[:len(line)-2])
		if !ok || k != kv[0] || v != kv[1] {
			t.Errorf("AppendStatText(%q, %q) read back as %q, %q, %v", kv[0], kv[1], k, v, ok)
		}
	}
}

func TestIsBlockHeader(t *testing.T) {
	for _, h := range [][]byte{wire.StatsHeader, wire.InfoHeader, wire.SessHeader, wire.MembersHead, wire.WhereHeader} {
		r, ok := wire.ParseReply(h[:len(h)-2])
		if !ok || r.Code != wire.CodeOK || !wire.IsBlockHeader(r.Text) {
			t.Errorf("%q is not read as a block header: %+v, %v", h, r, ok)
		}
	}
	for _, s := range []string{"", "Acquired", "OK", "stats", "STATS ", "END"} {
		if wire.IsBlockHeader(s) {
			t.Errorf("IsBlockHeader(%q) = true", s)
		}
	}
}

func rep(code int, text string) wire.Reply { return wire.Reply{Code: code, Text: text} }
