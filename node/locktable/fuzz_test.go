package locktable_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/elock/elock/node/locktable"
)

// FuzzRestore: a copy of any bytes, as a replica receives from its
// owner, restores or is refused as corrupt; never a panic. One that
// restores snapshots to bytes that restore to the same snapshot.
func FuzzRestore(f *testing.F) {
	limits := locktable.Limits{MaxWaiters: 4, DefaultTimeout: 10 * time.Second}
	tb := locktable.New(3, limits, false)
	tb.Attach(0, "s1", "n1")
	tb.Attach(0, "s2", "n2")
	tb.Lock(0, "s1", []byte("a"), 0, 0)
	tb.Lock(0, "s2", []byte("a"), 1, locktable.Time(time.Second))
	tb.Lock(0, "s2", []byte("b"), 0, 0)
	f.Add(tb.Snapshot(0))
	f.Add(locktable.New(1, limits, false).Snapshot(0))
	f.Add([]byte{1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := locktable.Restore(1000, b, limits, true)
		if err != nil {
			return
		}
		snap := got.Snapshot(1000)
		again, err := locktable.Restore(1000, snap, limits, true)
		if err != nil {
			t.Fatalf("a restored table's own snapshot is corrupt: %v", err)
		}
		if !bytes.Equal(again.Snapshot(1000), snap) {
			t.Fatal("a snapshot did not survive a restore")
		}
	})
}
