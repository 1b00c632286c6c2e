package locktable_test

import (
	"testing"

	"pgregory.net/rapid"

	"github.com/elock/elock/node/locktable"
)

// grantKey names one session's grant of one name.
type grantKey struct{ name, session string }

// TestChangeEffects: with recordChanges, LockHeld and LockFreed describe
// exactly how the set of grants changed, so a replica that only replays
// them holds what the table holds. Without it, they never appear.
func TestChangeEffects(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		changes := rapid.Bool().Draw(rt, "recordChanges")
		tb := locktable.New(1, locktable.Limits{
			MaxWaiters:     rapid.IntRange(0, 3).Draw(rt, "maxWaiters"),
			DefaultTimeout: 20,
		}, changes)
		replica := map[grantKey]uint64{}
		newest := map[string]uint64{} // the highest token each name was granted with
		now := origin
		var gen opGen
		steps := rapid.IntRange(1, 150).Draw(rt, "steps")
		for i := range steps {
			o := gen.draw(rt)
			now += o.dt
			out := applyTable(tb, now, o)
			for _, e := range out.fx {
				switch e.Kind {
				case locktable.LockHeld, locktable.LockFreed:
					if !changes {
						rt.Fatalf("step %d, %v: change effect %s without recordChanges", i, o, fmtEffect(e))
					}
				}
				k := grantKey{e.Name, e.Session}
				switch e.Kind {
				case locktable.LockHeld:
					// A new grant has a new, higher token; a known one is
					// only raised to a later epoch, with its token.
					if prev, ok := replica[k]; ok && prev != e.Token || !ok && newest[e.Name] >= e.Token {
						rt.Fatalf("step %d, %v: %s after token %s", i, o, fmtEffect(e), tok(newest[e.Name]))
					}
					replica[k] = e.Token
					newest[e.Name] = max(newest[e.Name], e.Token)
				case locktable.LockFreed:
					if _, ok := replica[k]; !ok {
						rt.Fatalf("step %d, %v: %s of a grant not held", i, o, fmtEffect(e))
					}
					delete(replica, k)
				case locktable.WaiterGranted:
					// A grant to a waiter follows the LockHeld of its hand-over.
					if v, ok := replica[k]; changes && (!ok || v != e.Token) {
						rt.Fatalf("step %d, %v: %s but the replica has %v", i, o, fmtEffect(e), v)
					}
				}
			}
			if !changes {
				continue
			}
			if c := tb.Counts(); c.Locks != len(replica) {
				rt.Fatalf("step %d, %v: table holds %d grants, replica %d", i, o, c.Locks, len(replica))
			}
			for _, n := range opNames {
				anyHeld := false
				for _, s := range opSessions {
					_, ok := replica[grantKey{n, s}]
					anyHeld = anyHeld || ok
				}
				for _, s := range opSessions {
					v, st := tb.Token(s, []byte(n))
					h, ok := replica[grantKey{n, s}]
					want := locktable.NotLocked
					switch {
					case ok:
						want = locktable.Granted
					case anyHeld:
						want = locktable.NotYours
					}
					if st != want || (st == locktable.Granted && v != h) {
						rt.Fatalf("step %d, %v: Token(%s, %s) = %s %v; replica %s", i, o, s, n, tok(v), st, tok(h))
					}
				}
			}
		}
	})
}

// TestEffectsBufferReuse documents that a call's effects are valid only
// until the next call: the caller must copy what it keeps.
func TestEffectsBufferReuse(t *testing.T) {
	tb := locktable.New(1, defaultLimits, true)
	_, fx, _ := tb.Lock(0, "s1", []byte("a"), 0, 0)
	if len(fx) != 1 || fx[0].Kind != locktable.LockHeld || fx[0].Name != "a" {
		t.Fatalf("effects %v", fx)
	}
	kept := fx[0]
	tb.Lock(0, "s1", []byte("b"), 0, 0)
	if kept.Name != "a" {
		t.Error("a copied effect changed")
	}
	// Calls that report nothing must not hand back a stale effect.
	if _, fx, _ := tb.Lock(0, "s1", []byte("a"), 0, 0); len(fx) != 0 {
		t.Errorf("re-entrant lock reported %v", fx)
	}
	if _, fx := tb.Unlock(0, "s2", []byte("a")); len(fx) != 0 {
		t.Errorf("refused unlock reported %v", fx)
	}
	if fx := tb.Tick(0); len(fx) != 0 {
		t.Errorf("empty tick reported %v", fx)
	}
	if _, fx, _ := tb.Attach(0, "s9", "h"); len(fx) != 0 {
		t.Errorf("attach reported %v", fx)
	}
	if fx := tb.Detach(0, "s9", 7); len(fx) != 0 {
		t.Errorf("stale detach reported %v", fx)
	}
	if _, fx := tb.ReleaseSession(0, "nobody"); len(fx) != 0 {
		t.Errorf("release of nobody reported %v", fx)
	}
}
