package locktable_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/elock/elock/node/locktable"
)

// state lists a table's locks and sessions as Changes, the form a
// replica learns them in.
func state(t *locktable.Table, now locktable.Time, names, sessions []string) []locktable.Change {
	var out []locktable.Change
	for _, n := range names {
		out = append(out, t.HeldChange(now, n))
	}
	for _, s := range sessions {
		out = append(out, t.SessionChange(now, s))
	}
	return out
}

// A replica fed the owner's changes, and a table restored from the
// owner's snapshot, both describe the owner's state exactly (waiters
// aside, which are not replicated).
func TestReplicaFollowsOwner(t *testing.T) {
	names := []string{"a", "b", "c", "d"}
	sessions := []string{"s1", "s2", "s3"}
	limits := locktable.Limits{MaxWaiters: 4, DefaultTimeout: 10 * time.Second}
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 7))
		owner := locktable.New(3, limits, true)
		replica := locktable.New(0, limits, false)
		now := locktable.Time(0)
		epochs := map[string]uint64{}
		for step := range 300 {
			now += int64(rng.IntN(3)) * int64(time.Second)
			s := sessions[rng.IntN(len(sessions))]
			n := []byte(names[rng.IntN(len(names))])
			var fx []locktable.Effect
			touchedSession := ""
			switch rng.IntN(7) {
			case 0, 1:
				_, fx, _ = owner.Lock(now, s, n, 0, 0)
			case 2:
				_, fx = owner.Unlock(now, s, n)
			case 3:
				_, fx = owner.ReleaseSession(now, s)
			case 4:
				a, afx, err := owner.Attach(now, s, "h")
				if err == nil {
					epochs[s] = a.Epoch
				}
				fx, touchedSession = afx, s
			case 5:
				fx, touchedSession = owner.Detach(now, s, epochs[s]), s
			case 6:
				fx = owner.Tick(now)
			}
			for _, e := range fx {
				switch e.Kind {
				case locktable.LockHeld, locktable.LockFreed:
					replica.Apply(now, owner.HeldChange(now, e.Name))
				case locktable.SessionExpired:
					replica.Apply(now, owner.SessionChange(now, e.Session))
				}
			}
			if touchedSession != "" {
				replica.Apply(now, owner.SessionChange(now, touchedSession))
			}
			want := state(owner, now, names, sessions)
			if got := state(replica, now, names, sessions); !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d step %d: replica %v\nowner %v", seed, step, got, want)
			}
			later := now + int64(time.Second)
			restored, err := locktable.Restore(later, owner.Snapshot(now), limits, false)
			if err != nil {
				t.Fatal(err)
			}
			if got := state(restored, later, names, sessions); !reflect.DeepEqual(got, state(owner, now, names, sessions)) {
				// Ages and remaining times moved by the same second.
				shifted := state(owner, now, names, sessions)
				for i := range shifted {
					if shifted[i].Kind == locktable.ChangeHeld {
						shifted[i].Age += time.Second
					}
				}
				if !reflect.DeepEqual(got, shifted) {
					t.Fatalf("seed %d step %d: restored %v\nowner %v", seed, step, got, shifted)
				}
			}
		}
	}
}

func TestRestoreRejectsCorruptSnapshots(t *testing.T) {
	tb := locktable.New(2, locktable.Limits{DefaultTimeout: time.Second}, false)
	tb.Attach(0, "s", "h")
	tb.Lock(0, "s", []byte("x"), 0, 0)
	snap := tb.Snapshot(0)
	for i := range len(snap) {
		if _, err := locktable.Restore(0, snap[:i], locktable.Limits{}, false); err == nil {
			t.Fatalf("a snapshot cut at %d of %d bytes restored", i, len(snap))
		}
	}
	if _, err := locktable.Restore(0, append(snap, 1), locktable.Limits{}, false); err == nil {
		t.Fatal("trailing bytes accepted")
	}
	r, err := locktable.Restore(0, snap, locktable.Limits{}, false)
	if err != nil {
		t.Fatal(err)
	}
	if tok, st := r.Token("s", []byte("x")); st != locktable.Granted || tok != 2<<32|1 {
		t.Fatalf("restored token %d %v", tok, st)
	}
	if got := fmt.Sprint(r.HeldNames("s")); got != "[x]" {
		t.Fatalf("HeldNames = %s", got)
	}
}
