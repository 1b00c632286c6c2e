// Package wire is the elock text protocol: framing of request lines,
// parsing of requests, and the exact reply lines. The server and the Go
// client both use it, so the two can never disagree about a byte.
//
// Nothing here allocates on the hot path: a parsed Request refers to
// sub-slices of the caller's read buffer and is valid only until that
// buffer is next written.
package wire

import "bytes"

// DefaultMaxLine is the longest request line accepted, in bytes, not
// counting its LF or CRLF terminator.
const DefaultMaxLine = 4096

// Frame is what Framer.Next found at the head of a buffer.
type Frame uint8

const (
	// NeedMore: no complete line yet; read more bytes.
	NeedMore Frame = iota
	// Line: a complete line, terminator stripped.
	Line
	// TooLong: a line exceeded the limit. It is reported once; the bytes
	// up to its terminating LF are skipped, however many reads that takes.
	TooLong
)

// Framer splits a byte stream into request lines. A line ends in LF; one
// CR right before the LF is part of the terminator. A bare CR is an
// ordinary byte. The zero value is not usable: set MaxLine.
type Framer struct {
	MaxLine int
	// skipping is set after an over-long line was reported and before its
	// LF has been seen: everything up to that LF belongs to the bad line.
	skipping bool
}

// Next looks at buf, the unconsumed bytes of the stream, and returns what
// is at its head and how many bytes of buf that accounts for. The caller
// drops n bytes and calls Next again until it returns NeedMore with n == 0.
// line aliases buf.
func (f *Framer) Next(buf []byte) (fr Frame, line []byte, n int) {
	if f.skipping {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			return NeedMore, nil, len(buf)
		}
		f.skipping = false
		n = i + 1
		buf = buf[n:]
	}
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		// MaxLine bytes of content plus a CR still fit a legal line whose
		// LF has not arrived yet; anything longer cannot.
		if len(buf) > f.MaxLine+1 {
			f.skipping = true
			return TooLong, nil, n + len(buf)
		}
		return NeedMore, nil, n
	}
	line = buf[:i]
	if i > 0 && line[i-1] == '\r' {
		line = line[:i-1]
	}
	if len(line) > f.MaxLine {
		return TooLong, nil, n + i + 1
	}
	return Line, line, n + i + 1
}

// Skipping reports whether the framer is inside an over-long line.
func (f *Framer) Skipping() bool { return f.skipping }
