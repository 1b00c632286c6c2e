package wire_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/elock/elock/node/wire"
)

// event is one thing a connection learns from the framer: a complete line
// (copied out of the read buffer) or an over-long line.
type event struct {
	fr   wire.Frame
	line string
}

func (e event) String() string {
	switch e.fr {
	case wire.Line:
		return fmt.Sprintf("Line(%q)", e.line)
	case wire.TooLong:
		return "TooLong"
	}
	return fmt.Sprintf("Frame(%d)", e.fr)
}

func lineEv(s string) event { return event{fr: wire.Line, line: s} }

var tooLong = event{fr: wire.TooLong}

// feeder consumes a byte stream the way the server's connection does: it
// keeps the unconsumed bytes, appends each new chunk, and calls Next until
// it returns NeedMore with n == 0.
type feeder struct {
	f      wire.Framer
	buf    []byte
	events []event
}

func newFeeder(maxLine int) *feeder { return &feeder{f: wire.Framer{MaxLine: maxLine}} }

func (d *feeder) feed(tb testing.TB, chunk []byte) {
	tb.Helper()
	d.buf = append(d.buf, chunk...)
	// Each call but the last consumes at least one byte.
	for calls, limit := 0, len(d.buf)+1; ; calls++ {
		if calls > limit {
			tb.Fatalf("Next does not make progress on %q", d.buf)
		}
		fr, line, n := d.f.Next(d.buf)
		if n < 0 || n > len(d.buf) {
			tb.Fatalf("Next(%q) consumed %d bytes of %d", d.buf, n, len(d.buf))
		}
		switch fr {
		case wire.NeedMore:
			if line != nil {
				tb.Fatalf("NeedMore with line %q", line)
			}
		case wire.Line:
			d.events = append(d.events, lineEv(string(line)))
		case wire.TooLong:
			if line != nil {
				tb.Fatalf("TooLong with line %q", line)
			}
			d.events = append(d.events, tooLong)
		default:
			tb.Fatalf("Next returned unknown frame %d", fr)
		}
		// A fresh slice each time, so that appending the next chunk can
		// never write over bytes a returned line still points at.
		d.buf = append([]byte(nil), d.buf[n:]...)
		if fr == wire.NeedMore && n == 0 {
			return
		}
	}
}

// frameChunks runs chunks through a fresh framer and returns the events,
// the bytes still buffered at the end and whether the framer is skipping.
func frameChunks(tb testing.TB, maxLine int, chunks ...[]byte) (evs []event, rest string, skipping bool) {
	tb.Helper()
	d := newFeeder(maxLine)
	for _, c := range chunks {
		d.feed(tb, c)
	}
	return d.events, string(d.buf), d.f.Skipping()
}

func sameEvents(a, b []event) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// step is one call of Next: what it must return.
type step struct {
	fr   wire.Frame
	line string
	n    int
}

// TestFramerNext pins the exact result of every Next call on one buffer:
// the caller drops n bytes and calls again until NeedMore with n == 0.
func TestFramerNext(t *testing.T) {
	const max = 8
	tests := []struct {
		name  string
		in    string
		steps []step
	}{
		{"LF", "lock a\n", []step{{wire.Line, "lock a", 7}}},
		{"CRLF", "lock a\r\n", []step{{wire.Line, "lock a", 8}}},
		{"no terminator yet", "lock a", nil},
		{"bare CR is not a terminator", "lock a\r", nil},
		{"bare CR inside a line", "a\rb\n", []step{{wire.Line, "a\rb", 4}}},
		{"CR at line start", "\ra\n", []step{{wire.Line, "\ra", 3}}},
		{"only the CR right before LF is stripped", "a\r\r\n", []step{{wire.Line, "a\r", 4}}},
		{"CR after LF starts the next line", "a\n\rb\n", []step{{wire.Line, "a", 2}, {wire.Line, "\rb", 3}}},
		{"empty LF line", "\n", []step{{wire.Line, "", 1}}},
		{"empty CRLF line", "\r\n", []step{{wire.Line, "", 2}}},
		{"empty lines in a row", "\n\r\n\n", []step{{wire.Line, "", 1}, {wire.Line, "", 2}, {wire.Line, "", 1}}},
		{"several lines", "lock a\r\nunlock a\nstats\r\nqu", []step{
			{wire.Line, "lock a", 8}, {wire.Line, "unlock a", 9}, {wire.Line, "stats", 7},
		}},
		{"exactly MaxLine LF", "12345678\n", []step{{wire.Line, "12345678", 9}}},
		{"exactly MaxLine CRLF", "12345678\r\n", []step{{wire.Line, "12345678", 10}}},
		{"MaxLine with a CR as its last content byte", "1234567\r\r\n", []step{{wire.Line, "1234567\r", 10}}},
		{"MaxLine+1 LF", "123456789\n", []step{{wire.TooLong, "", 10}}},
		{"MaxLine+1 CRLF", "123456789\r\n", []step{{wire.TooLong, "", 11}}},
		{"MaxLine+1 ending in CR", "12345678\r\r\n", []step{{wire.TooLong, "", 11}}},
		{"over-long complete line then a good one", "123456789abc\nok\n", []step{
			{wire.TooLong, "", 13}, {wire.Line, "ok", 3},
		}},
		{"MaxLine without terminator waits", "12345678", nil},
		{"MaxLine plus CR without LF waits", "12345678\r", nil},
		// MaxLine+1 content bytes cannot become a legal line, but the
		// framer only decides once a byte more than MaxLine+CR is in.
		{"MaxLine+1 without terminator waits", "123456789", nil},
		{"MaxLine+2 without terminator is too long at once", "1234567890", []step{{wire.TooLong, "", 10}}},
		{"good line then an unterminated long one", "ok\n1234567890", []step{
			{wire.Line, "ok", 3}, {wire.TooLong, "", 10},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := wire.Framer{MaxLine: max}
			buf := []byte(tt.in)
			for i, want := range append(tt.steps, step{wire.NeedMore, "", 0}) {
				fr, line, n := f.Next(buf)
				got := step{fr, string(line), n}
				if got != want {
					t.Fatalf("call %d on %q: got %+v, want %+v", i, buf, got, want)
				}
				if fr == wire.Line && len(line) > 0 && &line[0] != &buf[0] {
					t.Errorf("call %d: line does not alias the buffer", i)
				}
				buf = buf[n:]
			}
		})
	}
}

// TestFramerSkipping pins Next on a framer that is inside an over-long
// line: it swallows bytes up to the LF, and NeedMore may then carry n > 0.
func TestFramerSkipping(t *testing.T) {
	const max = 8
	tests := []struct {
		name  string
		in    string
		steps []step
		skip  bool // Skipping() after the last call
	}{
		{"no LF: everything is consumed", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", []step{{wire.NeedMore, "", 31}}, true},
		{"CR alone is not the end", "\r", []step{{wire.NeedMore, "", 1}}, true},
		{"LF ends it", "xx\n", []step{{wire.NeedMore, "", 3}}, false},
		{"CRLF ends it", "x\r\n", []step{{wire.NeedMore, "", 3}}, false},
		{"LF then a line, in one call", "xx\nok\n", []step{{wire.Line, "ok", 6}}, false},
		{"LF then a partial line", "xx\nok", []step{{wire.NeedMore, "", 3}}, false},
		{"LF then an over-long complete line", "x\n123456789\n", []step{{wire.TooLong, "", 12}}, false},
		{"LF then an over-long partial line", "x\n1234567890", []step{{wire.TooLong, "", 12}}, true},
		{"LF then an empty line", "x\n\r\n", []step{{wire.Line, "", 4}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := wire.Framer{MaxLine: max}
			if fr, _, n := f.Next([]byte("1234567890")); fr != wire.TooLong || n != 10 || !f.Skipping() {
				t.Fatalf("setup: got %v, %d, skipping=%v", fr, n, f.Skipping())
			}
			buf := []byte(tt.in)
			for i, want := range tt.steps {
				fr, line, n := f.Next(buf)
				if got := (step{fr, string(line), n}); got != want {
					t.Fatalf("call %d on %q: got %+v, want %+v", i, buf, got, want)
				}
				buf = buf[n:]
			}
			if f.Skipping() != tt.skip {
				t.Errorf("Skipping() = %v, want %v", f.Skipping(), tt.skip)
			}
			if fr, _, n := f.Next(buf); fr != wire.NeedMore || n != 0 {
				t.Errorf("final call on %q: got %v, %d; want NeedMore, 0", buf, fr, n)
			}
		})
	}
}

// TestFramerChunks feeds streams in given pieces, as separate reads.
func TestFramerChunks(t *testing.T) {
	const max = 8
	long := strings.Repeat("x", 100)
	tests := []struct {
		name   string
		chunks []string
		want   []event
		rest   string
	}{
		{"line split before LF", []string{"lock a", "\n"}, []event{lineEv("lock a")}, ""},
		{"CRLF split between CR and LF", []string{"lock a\r", "\n"}, []event{lineEv("lock a")}, ""},
		{"bare CR then more", []string{"a\r", "b\r\n"}, []event{lineEv("a\rb")}, ""},
		{"MaxLine CRLF split after CR", []string{"12345678\r", "\n"}, []event{lineEv("12345678")}, ""},
		{"MaxLine+1 split before LF", []string{"123456789", "\n"}, []event{tooLong}, ""},
		{"MaxLine+1 CRLF split after CR", []string{"123456789\r", "\n"}, []event{tooLong}, ""},
		{
			"long line over many chunks is reported once",
			[]string{"lock ", long[:3], long[3:40], long[40:], "\r", "\n", "stats\r\n"},
			[]event{tooLong, lineEv("stats")},
			"",
		},
		{
			"long line resynchronises at the next LF only",
			[]string{long, "\r", "still the long line ", "\r\n", "ok\r\n"},
			[]event{tooLong, lineEv("ok")},
			"",
		},
		{
			"the LF ending a long line arrives with the next line",
			[]string{long, long, "x\nlock a\r\nunl"},
			[]event{tooLong, lineEv("lock a")},
			"unl",
		},
		{
			"two long lines in a row are reported twice",
			[]string{long + "\n", long, "\n"},
			[]event{tooLong, tooLong},
			"",
		},
		{"empty chunks change nothing", []string{"", "a", "", "\n", ""}, []event{lineEv("a")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var chunks [][]byte
			for _, c := range tt.chunks {
				chunks = append(chunks, []byte(c))
			}
			got, rest, _ := frameChunks(t, max, chunks...)
			if !sameEvents(got, tt.want) {
				t.Errorf("events = %v, want %v", got, tt.want)
			}
			if rest != tt.rest {
				t.Errorf("left buffered %q, want %q", rest, tt.rest)
			}
		})
	}
}

// session is a realistic pipelined client session, with a few lines that
// test the edges: bare CR, blank lines, lines at and over the limit.
func session(maxLine int) []byte {
	var b bytes.Buffer
	b.WriteString("conn_id\r\n")
	b.WriteString("lock jobs/nightly\r\n")
	b.WriteString("lock jobs/hourly 5\n")
	b.WriteString("\r\n")
	b.WriteString("   \r\n")
	b.WriteString("LOCK upper\r\n")
	b.WriteString("lock a\rb 3\r\n")
	b.WriteString("set_timeout 60000\r\n")
	b.WriteString(strings.Repeat("n", maxLine) + "\r\n")
	b.WriteString(strings.Repeat("m", maxLine+1) + "\r\n")
	b.WriteString(strings.Repeat("o", maxLine-1) + "\r\r\n")
	b.WriteString(strings.Repeat("p", 3*maxLine) + "\n")
	b.WriteString("unlock jobs/nightly\r\n")
	b.WriteString("token  jobs/hourly \r\n")
	b.WriteString("stats\r\n")
	b.WriteString("unlock_all\r\n")
	b.WriteString("quit\r\n")
	b.WriteString("trailing without end")
	return b.Bytes()
}

// TestFramerSplitEverywhere feeds the session split at every byte, in one
// byte reads and in three pieces, and wants what the unsplit stream gives.
func TestFramerSplitEverywhere(t *testing.T) {
	const max = 24
	in := session(max)
	want, wantRest, wantSkip := frameChunks(t, max, in)
	if len(want) != 17 {
		t.Fatalf("unsplit session gave %d events: %v", len(want), want)
	}
	check := func(t *testing.T, what string, chunks ...[]byte) {
		t.Helper()
		got, rest, skip := frameChunks(t, max, chunks...)
		if !sameEvents(got, want) || rest != wantRest || skip != wantSkip {
			t.Fatalf("%s: got %v (rest %q, skipping %v), want %v (rest %q, skipping %v)",
				what, got, rest, skip, want, wantRest, wantSkip)
		}
	}
	t.Run("two pieces", func(t *testing.T) {
		for i := 0; i <= len(in); i++ {
			check(t, fmt.Sprintf("split at %d", i), in[:i], in[i:])
		}
	})
	t.Run("one byte at a time", func(t *testing.T) {
		chunks := make([][]byte, len(in))
		for i := range in {
			chunks[i] = in[i : i+1]
		}
		check(t, "bytewise", chunks...)
	})
	t.Run("three pieces", func(t *testing.T) {
		for i := 0; i <= len(in); i++ {
			for j := i; j <= len(in); j++ {
				check(t, fmt.Sprintf("split at %d and %d", i, j), in[:i], in[i:j], in[j:])
			}
		}
	})
}
