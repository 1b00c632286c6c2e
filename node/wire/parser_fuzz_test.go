package wire_test

import (
	"bytes"
	"testing"
	"unsafe"

	"github.com/elock/elock/node/wire"
)

// fuzzSeeds are the in-code seed corpus; testdata/fuzz/FuzzFramerParse
// holds more, in the `go test fuzz v1` format. All run in plain go test.
var fuzzSeeds = []struct {
	data    string
	split   uint16
	maxLine uint8
}{
	{"lock a\r\nunlock a\n", 3, 16},
	{"lock a 5\r\n\r\n   \r\nLOCK a\r\nstats\r\n", 9, 250},
	{"conn_id\r\nset_timeout 1000\r\nquit\r\n", 0, 8},
	{"1234567890\n12345678\r\n123456789\r\n", 10, 7},
	{"a\r\r\nb\rc\n\r", 2, 1},
	{"lock \xff\xfe\tname 1 2 3\n", 7, 30},
	{"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r", 15, 4},
	{"\n\n\n", 1, 0},
}

// maxLineOf maps the fuzzer's byte to a line limit: mostly small, so the
// over-long paths run, sometimes the default.
func maxLineOf(b uint8) int {
	if b >= 200 {
		return wire.DefaultMaxLine
	}
	return 1 + int(b)%64
}

// refFrame is a naive framer for a whole stream: split at LF, strip one
// CR, compare with the limit. An unterminated tail is reported TooLong
// once it holds more than MaxLine bytes plus a possible CR.
func refFrame(data []byte, max int) []event {
	var evs []event
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			if len(data) > max+1 {
				evs = append(evs, tooLong)
			}
			return evs
		}
		line := bytes.TrimSuffix(data[:i], []byte{'\r'})
		if len(line) > max {
			evs = append(evs, tooLong)
		} else {
			evs = append(evs, lineEv(string(line)))
		}
		data = data[i+1:]
	}
}

// refArity is the argument counts of the protocol document, written out
// again so that a slip in the parser's table shows.
var refArity = map[string][2]int{
	"lock": {1, 2}, "unlock": {1, 1}, "unlock_all": {0, 0}, "conn_id": {0, 1},
	"set_timeout": {1, 1}, "quit": {0, 0}, "stats": {0, 0}, "token": {1, 1},
	"info": {1, 1}, "session": {0, 0}, "members": {0, 0}, "where": {1, 1},
}

// within reports whether sub lies inside whole's bytes, i.e. whether it is
// a sub-slice rather than a copy.
func within(sub, whole []byte) bool {
	if len(sub) == 0 {
		return true
	}
	s := uintptr(unsafe.Pointer(unsafe.SliceData(sub)))
	w := uintptr(unsafe.Pointer(unsafe.SliceData(whole)))
	return s >= w && s+uintptr(len(sub)) <= w+uintptr(len(whole))
}

// checkParse parses one framed line and checks it against a naive
// tokeniser.
func checkParse(t *testing.T, line []byte) {
	var r wire.Request
	blank, ok := wire.Parse(line, &r)
	var toks [][]byte
	for _, tok := range bytes.Split(line, []byte{' '}) {
		if len(tok) > 0 {
			toks = append(toks, tok)
		}
	}
	if blank != (len(toks) == 0) {
		t.Fatalf("Parse(%q): blank = %v with %d tokens", line, blank, len(toks))
	}
	if blank {
		if ok || r.Verb != nil || r.NArgs != 0 {
			t.Fatalf("Parse(%q): blank line gave ok=%v %+v", line, ok, r)
		}
		return
	}
	if !bytes.Equal(r.Verb, toks[0]) || !within(r.Verb, line) {
		t.Fatalf("Parse(%q): verb %q, want %q aliasing the line", line, r.Verb, toks[0])
	}
	args := toks[1:]
	if want := min(len(args), len(r.Args)); r.NArgs != want {
		t.Fatalf("Parse(%q): NArgs = %d, want %d", line, r.NArgs, want)
	}
	for i := 0; i < r.NArgs; i++ {
		a := r.Args[i]
		if !bytes.Equal(a, args[i]) || len(a) == 0 || bytes.IndexByte(a, ' ') >= 0 || !within(a, line) {
			t.Fatalf("Parse(%q): arg %d = %q, want %q aliasing the line", line, i, a, args[i])
		}
	}
	ar, known := refArity[string(toks[0])]
	if wantOK := known && len(args) >= ar[0] && len(args) <= ar[1]; ok != wantOK {
		t.Fatalf("Parse(%q): ok = %v, want %v", line, ok, wantOK)
	}
	if known != (r.Cmd != wire.Unknown) || (known && r.Cmd.String() != string(toks[0])) {
		t.Fatalf("Parse(%q): Cmd = %v", line, r.Cmd)
	}
}

// framePieces frames data cut into the given pieces, parses every line as
// the server would, and checks each line's invariants.
func framePieces(t *testing.T, max int, pieces ...[]byte) []event {
	d := newFeeder(max)
	for _, p := range pieces {
		before := len(d.events)
		d.feed(t, p)
		for _, e := range d.events[before:] {
			if e.fr != wire.Line {
				continue
			}
			if len(e.line) > max || bytes.IndexByte([]byte(e.line), '\n') >= 0 {
				t.Fatalf("line %q: longer than %d or holds LF", e.line, max)
			}
			checkParse(t, []byte(e.line))
		}
	}
	if d.f.Skipping() {
		// Inside a long line everything buffered has been consumed.
		if len(d.buf) != 0 {
			t.Fatalf("skipping with %d bytes still buffered", len(d.buf))
		}
	} else if len(d.buf) > max+1 || bytes.IndexByte(d.buf, '\n') >= 0 {
		t.Fatalf("left %q buffered", d.buf)
	}
	return d.events
}

func FuzzFramerParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s.data), s.split, s.maxLine)
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint16, maxLine uint8) {
		max := maxLineOf(maxLine)
		want := refFrame(data, max)
		whole := framePieces(t, max, data)
		if !sameEvents(whole, want) {
			t.Fatalf("unsplit: %v, want %v", whole, want)
		}
		// checkParse also runs on lines taken directly from a buffer the
		// framer saw, so that aliasing is checked on the real slices.
		fr := wire.Framer{MaxLine: max}
		for buf := data; ; {
			k, line, n := fr.Next(buf)
			if k == wire.Line {
				checkParse(t, line)
				if !within(line, data) {
					t.Fatalf("line %q does not alias the input", line)
				}
			}
			buf = buf[n:]
			if k == wire.NeedMore && n == 0 {
				break
			}
		}
		at := int(split) % (len(data) + 1)
		if got := framePieces(t, max, data[:at], data[at:]); !sameEvents(got, want) {
			t.Fatalf("split at %d: %v, want %v", at, got, want)
		}
		if len(data) <= 256 {
			pieces := make([][]byte, len(data))
			for i := range data {
				pieces[i] = data[i : i+1]
			}
			if got := framePieces(t, max, pieces...); !sameEvents(got, want) {
				t.Fatalf("bytewise: %v, want %v", got, want)
			}
		}
	})
}
