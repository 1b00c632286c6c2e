package history

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestRecorderConcurrent(t *testing.T) {
	r := NewRecorder()
	const clients, each = 8, 200
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			session := fmt.Sprintf("s%d", c)
			for i := range each {
				p := r.Invoke(Op{Client: c, Session: session, Kind: Lock, Name: "a"})
				switch i % 3 {
				case 0:
					p.Return(Result{Status: Acquired, Token: uint64(i + 1)})
				case 1:
					p.Return(Result{Status: Unavailable})
				case 2:
					p.Unknown()
				}
			}
		})
	}
	wg.Wait()
	h := r.History()
	if len(h) != clients*each {
		t.Fatalf("%d operations, want %d", len(h), clients*each)
	}
	for i, o := range h {
		switch o.Status {
		case Unknown:
			if o.Return != Never {
				t.Errorf("#%d: unknown returns at %v", i, o.Return)
			}
		case Acquired, Unavailable:
			if o.Return < o.Call || o.Return == Never {
				t.Errorf("#%d: call %v, return %v", i, o.Call, o.Return)
			}
		default:
			t.Errorf("#%d: status %v", i, o.Status)
		}
	}
	if err := Validate(h); err != nil {
		t.Fatal(err)
	}
}

func TestRecorderPendingAndCopy(t *testing.T) {
	r := NewRecorder()
	p := r.Invoke(Op{Client: 0, Session: "s", Kind: Unlock, Name: "a"})
	h := r.History()
	if h[0].Status != Unknown || h[0].Return != Never {
		t.Fatalf("pending operation: %v", h[0])
	}
	p.Return(Result{Status: Unlocked})
	if h[0].Status != Unknown {
		t.Fatal("History shares its slice with the recorder")
	}
	if got := r.History()[0]; got.Status != Unlocked || got.Return == Never {
		t.Fatalf("after Return: %v", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("a second outcome did not panic")
		}
	}()
	p.Unknown()
}

func TestRecorderDetach(t *testing.T) {
	r := NewRecorder()
	const timeout = time.Hour
	p := r.Detach(2, "s", 5*time.Millisecond, timeout)
	if p.Call() != 5*time.Millisecond+timeout {
		t.Fatalf("expiry invoked at %v", p.Call())
	}
	o := r.History()[0]
	if o.Kind != Expire || o.Client != 2 || o.Session != "s" || o.Detached != 5*time.Millisecond || o.Status != Unknown {
		t.Fatalf("%+v", o)
	}
	// The test learns the session expired before the expiry could have
	// happened by its own reckoning: the return is clamped to the call.
	p.Return(Result{Status: OK})
	if o := r.History()[0]; o.Return != o.Call || o.Status != OK {
		t.Fatalf("%+v", o)
	}
}

func TestRecorderUsage(t *testing.T) {
	// How a fault test uses the recorder: sessions, a lost connection, a
	// resume, a new session, and the checkers.
	r := NewRecorder()
	lastOK := r.Now()
	p := r.Invoke(Op{Client: 0, Session: "A", Kind: Lock, Name: "a"})
	p.Return(Result{Status: Acquired, Token: 7})
	lastOK = p.Call()
	r.Invoke(Op{Client: 0, Session: "A", Kind: Unlock, Name: "a"}).Unknown() // connection lost
	r.Detach(0, "A", lastOK, time.Hour)
	r.Invoke(Op{Client: 0, Session: "A", Kind: Resume}).Return(Result{Status: OK})
	r.Invoke(Op{Client: 1, Session: "B", Kind: Lock, Name: "a"}).Return(Result{Status: Unavailable})
	r.Invoke(Op{Client: 0, Session: "A", Kind: Unlock, Name: "a"}).Return(Result{Status: NotLocked})
	r.Invoke(Op{Client: 1, Session: "B", Kind: Lock, Name: "a"}).Return(Result{Status: Acquired, Token: 9})
	vs, err := CheckAll(r.History(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !AllOK(vs) {
		for _, v := range vs {
			t.Error(v)
		}
	}
}
