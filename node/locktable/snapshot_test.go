package locktable_test

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/elock/elock/node/locktable"
)

// snap is a decoded Snapshot. Times are as encoded, relative to the now
// the snapshot was taken at.
type snap struct {
	epoch, count, attaches uint64
	locks                  []snapLock
	sessions               []snapSession
}

type snapLock struct {
	name    string
	limit   uint64 // a semaphore's permits; 0 for a lock
	grants  []snapGrant
	waiters []snapWaiter
}

type snapGrant struct {
	owner   string
	token   uint64
	heldFor int64 // now - since
	epoch   uint64
	mode    uint64
	value   string
}

type snapWaiter struct {
	id      uint64
	session string
	left    int64 // deadline - now
	epoch   uint64
	mode    uint64
}

type snapSession struct {
	id       string
	timeout  int64
	attached uint64
	epoch    uint64
	born     uint64
	home     string
	left     int64 // expires - now; 0 while attached
}

type snapReader struct {
	b   []byte
	err error
}

func (r *snapReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errors.New("bad uvarint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *snapReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errors.New("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *snapReader) str() string {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.err = errors.New("string past the end")
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// decodeSnapshot reads the layout Snapshot documents: epoch, count,
// attaches, locks by name with their grants by token and their queues,
// sessions by id.
func decodeSnapshot(b []byte) (snap, error) {
	r := &snapReader{b: b}
	var s snap
	s.epoch, s.count, s.attaches = r.uvarint(), r.uvarint(), r.uvarint()
	for n := r.uvarint(); n > 0 && r.err == nil; n-- {
		l := snapLock{name: r.str(), limit: r.uvarint()}
		for g := r.uvarint(); g > 0 && r.err == nil; g-- {
			l.grants = append(l.grants, snapGrant{owner: r.str(), token: r.uvarint(), heldFor: r.varint(), epoch: r.uvarint(), mode: r.uvarint(), value: r.str()})
		}
		for q := r.uvarint(); q > 0 && r.err == nil; q-- {
			l.waiters = append(l.waiters, snapWaiter{id: r.uvarint(), session: r.str(), left: r.varint(), epoch: r.uvarint(), mode: r.uvarint()})
		}
		s.locks = append(s.locks, l)
	}
	for n := r.uvarint(); n > 0 && r.err == nil; n-- {
		s.sessions = append(s.sessions, snapSession{
			id: r.str(), timeout: r.varint(), attached: r.uvarint(), epoch: r.uvarint(), born: r.uvarint(), home: r.str(), left: r.varint(),
		})
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d bytes after the snapshot", len(r.b))
	}
	return s, r.err
}

// shifted is s as a snapshot taken d later would say it.
func (s snap) shifted(d int64) snap {
	c := s
	c.locks = nil
	for _, l := range s.locks {
		gs := slices.Clone(l.grants)
		for i := range gs {
			gs[i].heldFor += d
		}
		l.grants = gs
		ws := slices.Clone(l.waiters)
		for i := range ws {
			ws[i].left -= d
		}
		l.waiters = ws
		c.locks = append(c.locks, l)
	}
	c.sessions = nil
	for _, x := range s.sessions {
		if x.attached == 0 {
			x.left -= d
		}
		c.sessions = append(c.sessions, x)
	}
	return c
}

// snapshotAgrees checks a decoded snapshot against the table's own
// answers: the snapshot must hold the state the table shows.
func snapshotAgrees(tb *locktable.Table, s snap, now locktable.Time) string {
	c := tb.Counts()
	waiters := 0
	if !slices.IsSortedFunc(s.locks, func(a, b snapLock) int { return strings.Compare(a.name, b.name) }) {
		return "locks not sorted by name"
	}
	grants := 0
	for _, l := range s.locks {
		waiters += len(l.waiters)
		grants += len(l.grants)
		if len(l.grants) == 0 || !slices.IsSortedFunc(l.grants, func(a, b snapGrant) int { return cmp.Compare(a.token, b.token) }) {
			return fmt.Sprintf("lock %q: grants %+v empty or not by token", l.name, l.grants)
		}
		for _, g := range l.grants {
			in := tb.Info(now, g.owner, []byte(l.name))
			mode := locktable.Mode(g.mode)
			if mode == locktable.Permit {
				mode = locktable.Shared // how info shows a semaphore
			}
			if !in.Held || !in.Mine || in.Token != g.token || int64(in.HeldFor) != g.heldFor || in.Waiters != len(l.waiters) ||
				in.Holders != len(l.grants) || uint64(in.Limit) != l.limit || in.Mode != mode {
				return fmt.Sprintf("lock %q: snapshot %+v, Info %+v", l.name, l, in)
			}
		}
	}
	if grants != c.Locks || waiters != c.Waiters || len(s.sessions) != c.Sessions {
		return fmt.Sprintf("snapshot sizes %d/%d/%d, Counts %+v", grants, waiters, len(s.sessions), c)
	}
	if s.epoch != tb.Epoch() || 1<<32-1-s.count != tb.TokensLeft() {
		return fmt.Sprintf("snapshot epoch %d count %d; table epoch %d, %d left", s.epoch, s.count, tb.Epoch(), tb.TokensLeft())
	}
	for i, x := range s.sessions {
		if i > 0 && s.sessions[i-1].id >= x.id {
			return "sessions not sorted by id"
		}
		r, ok := tb.Session(x.id)
		left := int64(0)
		if !r.Attached {
			left = r.Expires - now
		}
		if !ok || int64(r.Timeout) != x.timeout || (x.attached == 1) != r.Attached || r.Epoch != x.epoch || r.Born != x.born || r.Home != x.home || left != x.left {
			return fmt.Sprintf("session %q: snapshot %+v, Session %+v", x.id, x, r)
		}
	}
	return ""
}

// TestDeterminism feeds the same random operations to three tables, one
// of them not recording changes, and wants byte-identical snapshots and
// identical answers at every step. A snapshot taken at another time must
// differ only by the shift of its relative times.
func TestDeterminism(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		limits := locktable.Limits{
			MaxWaiters:     rapid.IntRange(0, 3).Draw(rt, "maxWaiters"),
			DefaultTimeout: time.Duration(rapid.IntRange(0, 60).Draw(rt, "defaultTimeout")),
		}
		a := locktable.New(1, limits, true)
		b := locktable.New(1, limits, true)
		c := locktable.New(1, limits, false)
		now := origin
		var gen opGen
		steps := rapid.IntRange(1, 150).Draw(rt, "steps")
		for i := range steps {
			o := gen.draw(rt)
			now += o.dt
			oa, ob := applyTable(a, now, o), applyTable(b, now, o)
			applyTable(c, now, o)
			if oa.head != ob.head || !sameFx(oa.fx, ob.fx) {
				rt.Fatalf("step %d, %v: %v vs %v", i, o, oa, ob)
			}
			if err := a.CheckInvariants(); err != nil {
				rt.Fatalf("step %d, %v: %v", i, o, err)
			}
			sa, sb, sc := a.Snapshot(now), b.Snapshot(now), c.Snapshot(now)
			if !bytes.Equal(sa, sb) || !bytes.Equal(sa, sc) {
				rt.Fatalf("step %d, %v: snapshots differ:\n%x\n%x\n%x", i, o, sa, sb, sc)
			}
			dec, err := decodeSnapshot(sa)
			if err != nil {
				rt.Fatalf("step %d: decoding %x: %v", i, sa, err)
			}
			if d := snapshotAgrees(a, dec, now); d != "" {
				rt.Fatalf("step %d, %v: %s", i, o, d)
			}
			shift := int64(rapid.IntRange(-50, 50).Draw(rt, "shift"))
			later, err := decodeSnapshot(a.Snapshot(now + shift))
			if err != nil {
				rt.Fatal(err)
			}
			if want := dec.shifted(shift); !reflect.DeepEqual(later, want) {
				rt.Fatalf("step %d: snapshot at now%+d = %+v, want %+v", i, shift, later, want)
			}
		}
	})
}

// TestSnapshotContent pins the snapshot of a small known state.
func TestSnapshotContent(t *testing.T) {
	tb := locktable.New(2, defaultLimits, false)
	tb.Attach(at("0s"), "s1", "h1")
	tb.Attach(at("0s"), "s2", "h2")
	tb.SetTimeout("s2", 7*time.Second)
	tb.Detach(at("1s"), "s2", 2)
	tb.Lock(at("2s"), "s1", []byte("b"), 0, 0)
	tb.Lock(at("3s"), "s1", []byte("a"), 0, 0)
	tb.Lock(at("4s"), "s3", []byte("b"), 9, at("20s"))
	tb.Lock(at("4s"), "s2", []byte("b"), 4, at("30s"))

	got, err := decodeSnapshot(tb.Snapshot(at("10s")))
	if err != nil {
		t.Fatal(err)
	}
	sec := int64(time.Second)
	want := snap{
		epoch: 2, count: 2, attaches: 2,
		locks: []snapLock{
			{name: "a", grants: []snapGrant{{owner: "s1", token: 2<<32 | 2, heldFor: 7 * sec}}},
			{name: "b", grants: []snapGrant{{owner: "s1", token: 2<<32 | 1, heldFor: 8 * sec}}, waiters: []snapWaiter{
				{id: 9, session: "s3", left: 10 * sec},
				{id: 4, session: "s2", left: 20 * sec},
			}},
		},
		sessions: []snapSession{
			{id: "s1", timeout: 30 * sec, attached: 1, epoch: 1, born: 1, home: "h1"},
			{id: "s2", timeout: 7 * sec, epoch: 2, born: 2, left: -2 * sec},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("snapshot\n got %+v\nwant %+v", got, want)
	}
	// Reading the snapshot changes nothing, and an empty table's is tiny.
	if a, b := tb.Snapshot(at("10s")), tb.Snapshot(at("10s")); !bytes.Equal(a, b) {
		t.Error("two snapshots at the same time differ")
	}
	empty := locktable.New(0, defaultLimits, false).Snapshot(12345)
	if !bytes.Equal(empty, []byte{0, 0, 0, 0, 0}) {
		t.Errorf("empty snapshot %x", empty)
	}
}

// TestTickOrderDeterministic: two replicas that take the same calls must
// report the same effects in the same order. ReleaseSession drops a
// session's waiters by ranging over a Go map, whose order is random, and
// the order of removals shapes the waiter heap; a later Tick then reports
// waiters of equal deadline in an order that differs from run to run.
func TestTickOrderDeterministic(t *testing.T) {
	run := func() string {
		tb := locktable.New(1, defaultLimits, false)
		w := locktable.WaiterID(1)
		for i := range 8 {
			name := []byte(fmt.Sprint("n", i))
			tb.Lock(0, "holder", name, 0, 0)
			tb.Lock(0, "x", name, w, 100)
			tb.Lock(0, "y", name, w+1, 100)
			w += 2
		}
		tb.ReleaseSession(0, "x")
		return describe(tb.Tick(100))
	}
	first := run()
	for range 20 {
		if got := run(); got != first {
			t.Fatalf("the same calls gave two tick orders:\n%s\n%s", first, got)
		}
	}
}

// Restore refuses a snapshot that describes a state no table can hold:
// a semaphore with more holders than permits, an exclusive grant beside
// another, one session holding a name twice, a name with no holder. A
// replica must not take such a copy from a peer.
func TestRestoreRefusesImpossibleLocks(t *testing.T) {
	type g struct {
		session string
		mode    locktable.Mode
	}
	snapshot := func(limit uint64, gs ...g) []byte {
		b := binary.AppendUvarint(nil, 1) // epoch
		b = binary.AppendUvarint(b, 10)   // count
		b = binary.AppendUvarint(b, 0)    // attaches
		b = binary.AppendUvarint(b, 1)    // one lock
		b = binary.AppendUvarint(b, 1)
		b = append(b, 'x')
		b = binary.AppendUvarint(b, limit)
		b = binary.AppendUvarint(b, uint64(len(gs)))
		for i, x := range gs {
			b = binary.AppendUvarint(b, uint64(len(x.session)))
			b = append(b, x.session...)
			b = binary.AppendUvarint(b, 1<<32|uint64(i+1)) // token
			b = binary.AppendVarint(b, 0)                  // held for
			b = binary.AppendUvarint(b, 0)                 // epoch
			b = binary.AppendUvarint(b, uint64(x.mode))
			b = binary.AppendUvarint(b, 0) // no value
		}
		b = binary.AppendUvarint(b, 0)    // no waiters
		return binary.AppendUvarint(b, 0) // no sessions
	}
	ok := map[string][]byte{
		"two permits of two":  snapshot(2, g{"a", locktable.Permit}, g{"b", locktable.Permit}),
		"two readers":         snapshot(0, g{"a", locktable.Shared}, g{"b", locktable.Shared}),
		"one exclusive grant": snapshot(0, g{"a", locktable.Exclusive}),
	}
	bad := map[string][]byte{
		"three permits of two":              snapshot(2, g{"a", locktable.Permit}, g{"b", locktable.Permit}, g{"c", locktable.Permit}),
		"an exclusive grant beside another": snapshot(0, g{"a", locktable.Exclusive}, g{"b", locktable.Shared}),
		"one session twice":                 snapshot(0, g{"a", locktable.Shared}, g{"a", locktable.Shared}),
		"a name with no holder":             snapshot(0),
		"a permit of a lock":                snapshot(0, g{"a", locktable.Permit}),
		"a reader of a semaphore":           snapshot(2, g{"a", locktable.Shared}),
		"an unknown mode":                   snapshot(0, g{"a", 9}),
	}
	for what, b := range ok {
		if tb, err := locktable.Restore(0, b, defaultLimits, false); err != nil || tb.CheckInvariants() != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
	for what, b := range bad {
		if _, err := locktable.Restore(0, b, defaultLimits, false); !errors.Is(err, locktable.ErrCorrupt) {
			t.Errorf("%s: restored (%v), want ErrCorrupt", what, err)
		}
	}
}
