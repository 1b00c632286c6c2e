package mesh

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/node/peer"
	"github.com/elock/elock/replication"
)

// A wait that a client gives up on between requests is withdrawn at once
// only if no request went unanswered: an unanswered one may have been
// granted, so the wait must ask (and give a grant back) before the
// session can be resumed elsewhere.
func TestCancelBetweenRequests(t *testing.T) {
	tests := []struct {
		name      string
		maybe     bool
		withdrawn bool
	}{
		{"every request answered", false, true},
		{"a request went unanswered", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &meshWait{maybe: tt.maybe}
			if got := w.Cancel(); got != tt.withdrawn {
				t.Fatalf("Cancel: %v, want %v", got, tt.withdrawn)
			}
			if !w.canceled || w.finished == !tt.withdrawn {
				t.Fatalf("canceled %v, finished %v", w.canceled, w.finished)
			}
		})
	}
}

// A Cancel whose withdrawal reaches the old owner after the wait has
// already settled (its request was abandoned when the partition moved,
// and the wait then asked the new owner and delivered) reports that it
// did not withdraw: the outcome was delivered, and the connection must
// take it rather than believe nothing happened.
func TestCancelAfterTheWaitSettledReportsNotWithdrawn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n1", "n2", "n1", "n1"}, "n1", "n2", "n3")
		defer mm.close()
		_, _, w, outcome := waitBehindAHolder(t, mm)

		// n2 stops answering; the client goes: Cancel's withdrawal is on
		// its way to n2.
		mm.net.pause("n2")
		canceled := make(chan bool, 1)
		go func() { canceled <- w.Cancel() }()
		synctest.Wait()

		// The partition moves, and n2, paused, has not taken that in: the
		// wait abandons its request, asks the new owner, and settles,
		// while its request is still queued at n2.
		mm.table.change(func(st *replication.State) {
			part := st.Parts[1]
			st.Parts[1] = replication.Part{Epoch: part.Epoch + 1, Owner: "n3", ONonce: "n3-1", Mode: replication.Takeover}
		})
		var o partition.Outcome
		select {
		case o = <-outcome:
		case <-time.After(time.Second):
			t.Fatal("the wait did not settle after its partition moved")
		}
		if o.Granted {
			t.Fatalf("outcome %+v; the lock was not granted", o)
		}
		// n2 wakes and withdraws the request it still had queued.
		mm.net.resume("n2")
		if <-canceled {
			t.Fatal("Cancel reported the wait withdrawn after its outcome was delivered")
		}
	})
}

// A wait given up on after one of its requests went unanswered, when no
// owner can then say whether it was granted, ends with an unknown outcome:
// "not granted" could hide a grant the lost request got.
func TestCancelWithNoOwnerToAskIsUnknown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n1", "n2", "n1", "n1"}, "n1", "n2", "n3")
		defer mm.close()
		_, _, w, outcome := waitBehindAHolder(t, mm)

		// The partition moves to n3, which cannot be reached, before n2
		// has taken that in: the request queued at n2 goes unanswered.
		mm.net.setCut("n3", true)
		mm.table.change(func(st *replication.State) {
			part := st.Parts[1]
			st.Parts[1] = replication.Part{Epoch: part.Epoch + 1, Owner: "n3", ONonce: "n3-1", Mode: replication.Takeover}
		})
		time.Sleep(2 * moveCheck)
		synctest.Wait()
		if w.Cancel() {
			t.Fatal("Cancel withdrew a wait whose lost request may have been granted")
		}
		o := <-outcome
		if o.Granted || failure.ClassOf(o.Err) != failure.Indeterminate {
			t.Fatalf("outcome %+v; want unknown", o)
		}
	})
}

// Blocking peer requests beyond the bound are refused as retryable, not
// given a goroutine each; one that ends makes room.
func TestBlockingPeerRequestsAreBounded(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &workers{ctx: ctx, max: 2}
	release := make(chan struct{})
	h := w.blocking(func(context.Context, []byte) ([]byte, error) {
		<-release
		return nil, nil
	})
	replies := make(chan error, 3)
	for range 3 {
		h(ctx, peer.Attach, nil, func(_ []byte, err error) { replies <- err })
	}
	if err := <-replies; !failure.Is(err, failure.Busy) || failure.ClassOf(err) != failure.Retryable {
		t.Fatalf("the third request at a bound of 2: %v, want a retryable refusal", err)
	}
	release <- struct{}{}
	if err := <-replies; err != nil {
		t.Fatal(err)
	}
	h(ctx, peer.Attach, nil, func(_ []byte, err error) { replies <- err })
	close(release)
	for range 2 {
		if err := <-replies; err != nil {
			t.Fatalf("after one ended: %v", err)
		}
	}
	w.close()
	if n := w.busy.Load(); n != 0 {
		t.Fatalf("%d counted busy after all ended", n)
	}
}
