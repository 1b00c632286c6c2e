// The listing of held locks across partitions, for the locks command.

package partition

import (
	"slices"

	"github.com/elock/elock/node/locktable"
)

// List returns the first limit held locks under prefix in order o among
// partitions parts (nil: all of them) that this node serves, whether
// more matched, and the partitions of parts it does not serve now
// (refused by the Replicator: another node owns them, or this one has
// no lease), which the caller asks their owners about.
//
// Each partition is read under its own mutex, as it stands, without
// waiting for its replica: a listing acts on nothing. What it holds at
// once is bounded by twice limit plus one partition's answer.
func (s *Set) List(parts []int, prefix []byte, limit int, o locktable.ListOrder) (out []locktable.Listed, truncated bool, missed []int) {
	if parts == nil {
		parts = s.all()
	}
	cut := func() {
		slices.SortFunc(out, o.Compare)
		if len(out) > limit {
			out, truncated = slices.Clip(out[:max(limit, 0)]), true
		}
	}
	for _, i := range parts {
		if i < 0 || i >= len(s.parts) {
			missed = append(missed, i)
			continue
		}
		err := s.read(s.parts[i], func(t *locktable.Table, now locktable.Time) {
			ls, more := t.List(now, prefix, limit, o)
			out = append(out, ls...)
			truncated = truncated || more
		})
		if err != nil {
			missed = append(missed, i)
		}
		if len(out) > 2*limit {
			cut()
		}
	}
	cut()
	return out, truncated, missed
}
