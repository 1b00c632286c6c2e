package peer

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/elock/elock/node/failure"
)

// FuzzReadFrame: any bytes on a peer connection end in frames no longer
// than what arrived, or an error; never a panic, and never a buffer
// sized by a declared length that did not arrive.
func FuzzReadFrame(f *testing.F) {
	f.Add(append(header(3, byte(MinMethod), 1), "abc"...))
	f.Add(append(append(header(0, kindReply, 2), header(2, kindFailure, 3)...), 1, 2))
	f.Add(header(MaxFrame, byte(MinMethod), 4))
	f.Add(header(MaxFrame+1, byte(MinMethod), 5))
	f.Add([]byte{0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReader(bytes.NewReader(in))
		var hdr [headerLen]byte
		var buf []byte
		for range len(in) + 1 {
			_, _, p, nbuf, err := readFrame(r, buf, &hdr)
			buf = nbuf
			if cap(buf) > len(in)+2*readChunk {
				t.Fatalf("%d bytes in made a %d-byte buffer", len(in), cap(buf))
			}
			if err != nil {
				return
			}
			if len(p) > len(in) {
				t.Fatalf("a %d-byte payload out of %d bytes", len(p), len(in))
			}
		}
	})
}

// FuzzDecodeFailure: a failure frame decodes to a failure of a known
// class, or to ErrMalformed; never a panic.
func FuzzDecodeFailure(f *testing.F) {
	f.Add(encodeFailure(failure.Retry(failure.LockDelay, "lock-delay")))
	f.Add(encodeFailure(failure.Unknown(failure.Unavailable, "outcome unknown")))
	f.Add([]byte{9, 9, 200})
	f.Fuzz(func(t *testing.T, b []byte) {
		err := decodeFailure(b)
		if fe, ok := failure.As(err); ok {
			if fe.Class < failure.Definite || fe.Class > failure.Indeterminate {
				t.Fatalf("a failure of class %d", fe.Class)
			}
		}
	})
}

// FuzzDec: any reads of any bytes end in values or ErrMalformed, and a
// count never exceeds what the bytes left can hold.
func FuzzDec(f *testing.F) {
	var e Enc
	e.Uint(3)
	e.Str("name")
	e.Int(-7)
	e.Bool(true)
	f.Add(e.B)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		d := Dec{B: b}
		for d.Err() == nil && len(d.B) > 0 {
			left := len(d.B)
			switch left % 5 {
			case 0:
				if n := d.Count(3); n > left/3 {
					t.Fatalf("a count of %d elements of 3 bytes in %d bytes", n, left)
				}
			case 1:
				if s := d.Str(); len(s) > left {
					t.Fatalf("a %d-byte string out of %d bytes", len(s), left)
				}
			case 2:
				d.Int()
			case 3:
				d.Bool()
			default:
				d.Uint()
			}
		}
		_ = d.End()
	})
}
