package locktable

import (
	"encoding/binary"
	"slices"
	"strings"
)

// Snapshot encodes the table's whole state canonically: locks by name,
// each with its grants in token order and its waiters in queue order,
// then session records by id. Times are stored relative to now, so two
// tables that took the same calls produce the same bytes, and so a
// snapshot can move to a node with another clock. The reused effects buffer is not state and is left out.
func (t *Table) Snapshot(now Time) []byte {
	b := make([]byte, 0, 64+48*len(t.locks)+48*len(t.records))
	b = binary.AppendUvarint(b, t.epoch)
	b = binary.AppendUvarint(b, t.count)
	b = binary.AppendUvarint(b, t.attaches)

	names := make([]string, 0, len(t.locks))
	for n := range t.locks {
		names = append(names, n)
	}
	slices.Sort(names)
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, n := range names {
		l := t.locks[n]
		b = appendString(b, l.name)
		b = binary.AppendUvarint(b, uint64(l.limit)) // 0: a lock
		gs := l.grants()
		b = binary.AppendUvarint(b, uint64(len(gs)))
		for _, g := range gs {
			b = appendString(b, g.owner.id)
			b = binary.AppendUvarint(b, g.token)
			b = binary.AppendVarint(b, now-g.since)
			b = binary.AppendUvarint(b, g.epoch)
			b = binary.AppendUvarint(b, uint64(g.mode))
			var v string
			if g.mode == Exclusive {
				v = t.values[n]
			}
			b = appendString(b, v)
		}
		b = binary.AppendUvarint(b, uint64(l.qlen))
		for w := l.qhead; w != nil; w = w.next {
			b = binary.AppendUvarint(b, uint64(w.id))
			b = appendString(b, w.h.id)
			b = binary.AppendVarint(b, w.deadline-now)
			b = binary.AppendUvarint(b, w.epoch)
			b = binary.AppendUvarint(b, uint64(w.mode))
		}
	}

	ids := make([]*Session, 0, len(t.records))
	for _, s := range t.records {
		ids = append(ids, s)
	}
	slices.SortFunc(ids, func(a, b *Session) int { return strings.Compare(a.ID, b.ID) })
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, s := range ids {
		b = appendString(b, s.ID)
		b = binary.AppendVarint(b, int64(s.Timeout))
		b = binary.AppendUvarint(b, uint64(b2u(s.Attached)))
		b = binary.AppendUvarint(b, s.Epoch)
		b = binary.AppendUvarint(b, s.Born)
		b = appendString(b, s.Home)
		if s.Attached {
			b = binary.AppendVarint(b, 0)
		} else {
			b = binary.AppendVarint(b, s.Expires-now)
		}
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func b2u(v bool) uint8 {
	if v {
		return 1
	}
	return 0
}
