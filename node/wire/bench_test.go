package wire_test

import (
	"testing"

	"github.com/elock/elock/node/wire"
)

// hotLines are the requests a busy lock client sends over and over.
var hotLines = []byte("lock some-name 5\r\nunlock some-name\r\n")

// frameAndParse runs the hot path of a connection over buf: frame every
// line and parse it. It returns how many requests were well formed.
func frameAndParse(f *wire.Framer, r *wire.Request, buf []byte) int {
	good := 0
	for {
		fr, line, n := f.Next(buf)
		buf = buf[n:]
		switch fr {
		case wire.NeedMore:
			if n == 0 {
				return good
			}
		case wire.Line:
			if _, ok := wire.Parse(line, r); ok {
				good++
			}
		}
	}
}

// TestHotPathAllocs: framing and parsing a request allocates nothing; the
// request refers into the read buffer.
func TestHotPathAllocs(t *testing.T) {
	f := wire.Framer{MaxLine: wire.DefaultMaxLine}
	var r wire.Request
	if got := frameAndParse(&f, &r, hotLines); got != 2 {
		t.Fatalf("parsed %d good requests, want 2", got)
	}
	if r.Cmd != wire.Unlock || string(r.Arg(0)) != "some-name" {
		t.Fatalf("last request %+v", r)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		frameAndParse(&f, &r, hotLines)
	})
	if allocs != 0 {
		t.Errorf("framing and parsing allocates %v times per run, want 0", allocs)
	}
	// ParseUint on the wait is on the same path.
	allocs = testing.AllocsPerRun(1000, func() {
		if v, ok := wire.ParseUint(nil, 10); ok || v != 0 {
			t.Fatal("ParseUint of nothing succeeded")
		}
		if v, ok := wire.ParseUint(hotLines[15:16], 10); !ok || v != 5 {
			t.Fatalf("ParseUint(%q) = %d, %v", hotLines[15:16], v, ok)
		}
	})
	if allocs != 0 {
		t.Errorf("ParseUint allocates %v times per run, want 0", allocs)
	}
}

// TestReplyAllocs: building replies into a buffer with room allocates
// nothing.
func TestReplyAllocs(t *testing.T) {
	out := make([]byte, 0, 1024)
	verb := []byte("LOCK")
	allocs := testing.AllocsPerRun(1000, func() {
		out = appendReplies(out[:0], verb)
	})
	if allocs != 0 {
		t.Errorf("building replies allocates %v times per run, want 0", allocs)
	}
}

func appendReplies(out, verb []byte) []byte {
	out = append(out, wire.Acquired...)
	out = append(out, wire.Unlocked...)
	out = wire.AppendUnknown(out, verb)
	out = wire.AppendUint(out, 1<<32|42)
	out = wire.AppendError(out, wire.CodeTooLong, "line too long")
	out = append(out, wire.StatsHeader...)
	out = wire.AppendStat(out, "clients", 12)
	out = wire.AppendStat(out, "locks", 3400)
	out = wire.AppendStat(out, "monitoring", 12)
	return append(out, wire.End...)
}

// BenchmarkParse frames and parses "lock some-name 5" and "unlock
// some-name": two requests per op.
func BenchmarkParse(b *testing.B) {
	f := wire.Framer{MaxLine: wire.DefaultMaxLine}
	var r wire.Request
	b.ReportAllocs()
	b.SetBytes(int64(len(hotLines)))
	for b.Loop() {
		if frameAndParse(&f, &r, hotLines) != 2 {
			b.Fatal("bad parse")
		}
	}
}

// BenchmarkParseBytewise is the worst case of reads: every byte arrives
// alone, and the connection re-scans what it keeps.
func BenchmarkParseBytewise(b *testing.B) {
	f := wire.Framer{MaxLine: wire.DefaultMaxLine}
	var r wire.Request
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	b.SetBytes(int64(len(hotLines)))
	for b.Loop() {
		buf = buf[:0]
		for i := range hotLines {
			buf = append(buf, hotLines[i])
			for {
				fr, line, n := f.Next(buf)
				if fr == wire.Line {
					wire.Parse(line, &r)
				}
				buf = buf[:copy(buf, buf[n:])]
				if fr == wire.NeedMore && n == 0 {
					break
				}
			}
		}
	}
}

// BenchmarkReplies builds the replies of a typical pipelined batch, one
// stats block included, into a reused buffer.
func BenchmarkReplies(b *testing.B) {
	out := make([]byte, 0, 1024)
	verb := []byte("LOCK")
	b.ReportAllocs()
	for b.Loop() {
		out = appendReplies(out[:0], verb)
	}
	b.SetBytes(int64(len(out)))
}
