package peer

import (
	"encoding/binary"
	"errors"
	"math"
)

// Enc builds a message: varints and length-prefixed strings, appended to
// one buffer. The zero value is ready to use.
type Enc struct{ B []byte }

func (e *Enc) Uint(v uint64)  { e.B = binary.AppendUvarint(e.B, v) }
func (e *Enc) Int(v int64)    { e.B = binary.AppendVarint(e.B, v) }
func (e *Enc) Str(s string)   { e.Uint(uint64(len(s))); e.B = append(e.B, s...) }
func (e *Enc) Bytes(b []byte) { e.Uint(uint64(len(b))); e.B = append(e.B, b...) }
func (e *Enc) Bool(v bool) {
	if v {
		e.B = append(e.B, 1)
	} else {
		e.B = append(e.B, 0)
	}
}

// ErrMalformed: a message did not decode.
var ErrMalformed = errors.New("peer: malformed message")

// Dec reads a message built by Enc. Errors stick: after the first, every
// read returns a zero value, and Err reports it.
type Dec struct {
	B   []byte
	err error
}

// Err reports the first decoding error.
func (d *Dec) Err() error { return d.err }

// Fail marks the message malformed: a field decoded, but to a value
// the message may not carry.
func (d *Dec) Fail() {
	if d.err == nil {
		d.err = ErrMalformed
	}
}

// End reports the first decoding error, or ErrMalformed if bytes are left
// over after the last field.
func (d *Dec) End() error {
	if d.err == nil && len(d.B) != 0 {
		return ErrMalformed
	}
	return d.err
}

func (d *Dec) Uint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.B)
	if n <= 0 {
		d.err = ErrMalformed
		return 0
	}
	d.B = d.B[n:]
	return v
}

func (d *Dec) Int() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.B)
	if n <= 0 {
		d.err = ErrMalformed
		return 0
	}
	d.B = d.B[n:]
	return v
}

// Len reads a count of bytes, or of elements at least a byte long each,
// and bounds it by what is left (see Count).
func (d *Dec) Len() int { return d.Count(1) }

// Count reads a count of elements that take at least size bytes each
// once encoded, and bounds it by what the bytes left can hold: a corrupt
// or hostile count cannot make a caller allocate more than the message's
// own length allows, whatever an element costs in memory.
func (d *Dec) Count(size int) int {
	n := d.Uint()
	if d.err != nil {
		return 0
	}
	if size < 1 {
		size = 1
	}
	if n > uint64(len(d.B)/size) || n > math.MaxInt32 {
		d.err = ErrMalformed
		return 0
	}
	return int(n)
}

func (d *Dec) Bytes() []byte {
	n := d.Len()
	if d.err != nil {
		return nil
	}
	b := d.B[:n:n]
	d.B = d.B[n:]
	return b
}

func (d *Dec) Str() string { return string(d.Bytes()) }

func (d *Dec) Bool() bool {
	if d.err != nil || len(d.B) == 0 {
		d.err = ErrMalformed
		return false
	}
	v := d.B[0] == 1
	d.B = d.B[1:]
	return v
}
