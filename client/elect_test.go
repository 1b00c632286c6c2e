package client_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/elock/elock/client"
	"github.com/elock/elock/testcluster/wait"
)

// TestElection: one leader at a time, its value published and changed
// while it leads; a waiting candidate takes over with its own value and
// a higher term when the leader resigns.
func TestElection(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	a := dial(t, []string{srv.addr})
	b := dial(t, []string{srv.addr})
	o := dial(t, []string{srv.addr})

	if _, err := o.Leader(ctx, "svc"); err != client.ErrNoLeader {
		t.Fatalf("Leader of a free name = %v, want ErrNoLeader as is", err)
	}
	ta, err := a.Campaign(ctx, "svc", "host-a:8080")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := a.Token(ctx, "svc"); err != nil || got != ta || a.Held()["svc"] != ta {
		t.Fatalf("the term is the token: Token %d, %v, Held %v; want %d", got, err, a.Held(), ta)
	}
	if li, err := o.Leader(ctx, "svc"); err != nil || li != (client.LeaderInfo{Token: ta, Value: "host-a:8080"}) {
		t.Fatalf("Leader = %+v, %v", li, err)
	}
	// Re-entrant: the same term, and the new value published.
	if got, err := a.Campaign(ctx, "svc", "host-a:8081"); err != nil || got != ta {
		t.Fatalf("re-entrant Campaign = %d, %v; want %d", got, err, ta)
	}
	if li, err := o.Leader(ctx, "svc"); err != nil || li.Value != "host-a:8081" {
		t.Fatalf("Leader after a re-entrant Campaign = %+v, %v", li, err)
	}
	if _, err := b.TryCampaign(ctx, "svc", "host-b"); err != client.ErrUnavailable {
		t.Fatalf("TryCampaign against a leader = %v, want ErrUnavailable", err)
	}
	if err := b.Proclaim(ctx, "svc", "host-b"); err != client.ErrNotYours {
		t.Fatalf("Proclaim by a non-leader = %v, want ErrNotYours", err)
	}
	if err := o.Proclaim(ctx, "nobody", "x"); err != client.ErrNotLocked {
		t.Fatalf("Proclaim of a free name = %v, want ErrNotLocked", err)
	}
	if err := a.Proclaim(ctx, "svc", "host-a:9090"); err != nil {
		t.Fatal(err)
	}
	if li, err := o.Leader(ctx, "svc"); err != nil || li != (client.LeaderInfo{Token: ta, Value: "host-a:9090"}) {
		t.Fatalf("Leader after Proclaim = %+v, %v", li, err)
	}

	bc := async(func() (uint64, error) { return b.Campaign(ctx, "svc", "host-b") })
	queued(t, ctx, o, "svc", 1)
	pending(t, bc, "b's Campaign while a leads")
	if err := a.Resign(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	r := <-bc
	if r.err != nil || r.tok <= ta {
		t.Fatalf("b's Campaign = %+v; want a term above %d", r, ta)
	}
	if li, err := o.Leader(ctx, "svc"); err != nil || li != (client.LeaderInfo{Token: r.tok, Value: "host-b"}) {
		t.Fatalf("Leader after the takeover = %+v, %v", li, err)
	}
	if len(a.Held()) != 0 || b.Held()["svc"] != r.tok {
		t.Fatalf("Held: a %v, b %v", a.Held(), b.Held())
	}

	// A plain Lock leads with no value; shared holders lead nothing.
	if err := b.Resign(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	tl, err := a.Lock(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	if li, err := o.Leader(ctx, "svc"); err != nil || li != (client.LeaderInfo{Token: tl}) {
		t.Fatalf("Leader of a plain lock = %+v, %v; want token %d and no value", li, err, tl)
	}
	if err := a.Unlock(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RLock(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Leader(ctx, "svc"); err != client.ErrNoLeader {
		t.Fatalf("Leader of a name held shared = %v, want ErrNoLeader", err)
	}
}

// TestElectionRefusals: values the protocol cannot carry are refused
// before anything is sent; the server's refusals come typed, and change
// nothing.
func TestElectionRefusals(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	c := dial(t, []string{srv.addr})
	for _, v := range []string{"", "-", "a b", "a\rb", "a\nb"} {
		if _, err := c.TryCampaign(ctx, "e", v); err != client.ErrInvalidValue {
			t.Fatalf("TryCampaign with value %q = %v, want ErrInvalidValue", v, err)
		}
		if _, err := c.Campaign(ctx, "e", v); err != client.ErrInvalidValue {
			t.Fatalf("Campaign with value %q = %v, want ErrInvalidValue", v, err)
		}
		if err := c.Proclaim(ctx, "e", v); err != client.ErrInvalidValue {
			t.Fatalf("Proclaim with value %q = %v, want ErrInvalidValue", v, err)
		}
	}
	for _, n := range []string{"", "a b"} {
		if _, err := c.Campaign(ctx, n, "v"); err != client.ErrInvalidName {
			t.Fatalf("Campaign of name %q = %v, want ErrInvalidName", n, err)
		}
		if _, err := c.Leader(ctx, n); err != client.ErrInvalidName {
			t.Fatalf("Leader of name %q = %v, want ErrInvalidName", n, err)
		}
	}
	var se *client.ServerError
	if _, err := c.Campaign(ctx, "e", strings.Repeat("v", 300)); !errors.As(err, &se) || se.Code != 413 {
		t.Fatalf("Campaign with a value over the server's limit = %v, want a ServerError 413", err)
	}
	if _, err := c.Acquire(ctx, "sem", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Campaign(ctx, "sem", "v"); !errors.Is(err, client.ErrKindMismatch) {
		t.Fatalf("Campaign of a semaphore = %v, want ErrKindMismatch", err)
	}
	tok, err := c.RLock(ctx, "shared")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Campaign(ctx, "shared", "v"); !errors.Is(err, client.ErrNoUpgrade) {
		t.Fatalf("Campaign of a name held shared = %v, want ErrNoUpgrade", err)
	}
	if err := c.Proclaim(ctx, "shared", "v"); err != client.ErrNotYours {
		t.Fatalf("Proclaim of a name held shared = %v, want ErrNotYours", err)
	}
	if h := c.Held(); len(h) != 2 || h["shared"] != tok {
		t.Fatalf("Held after the refusals = %v", h)
	}
}

// TestElectionResume: leadership, and the value published with it,
// survive a resume; Proclaim works on the new connection.
func TestElectionResume(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	var lost lostRecorder
	a := dial(t, []string{srv.addr}, client.WithKeepalive(-1), client.WithOnLost(lost.record))
	o := dial(t, []string{srv.addr})
	ta, err := a.Campaign(ctx, "r", "v1")
	if err != nil {
		t.Fatal(err)
	}
	srv.ln.killAll()
	if err := a.Proclaim(ctx, "r", "v2"); err != nil {
		t.Fatalf("Proclaim after the connection broke: %v", err)
	}
	if li, err := o.Leader(ctx, "r"); err != nil || li != (client.LeaderInfo{Token: ta, Value: "v2"}) {
		t.Fatalf("Leader after the resume = %+v, %v; want term %d, v2", li, err, ta)
	}
	srv.ln.killAll()
	// The value needs no Proclaim to survive: it is the grant's.
	if got, err := a.Campaign(ctx, "r", "v3"); err != nil || got != ta {
		t.Fatalf("Campaign after a second resume = %d, %v; want the same term %d", got, err, ta)
	}
	if a.Held()["r"] != ta {
		t.Fatalf("Held = %v", a.Held())
	}
	if evs := lost.get(); len(evs) != 0 {
		t.Fatalf("lost reports after a resume: %+v", evs)
	}
}

// TestElectionLost: a leader whose session expires is reported lost, and
// another candidate is elected.
func TestElectionLost(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	var lost lostRecorder
	a := dial(t, []string{srv.addr}, client.WithKeepalive(-1), client.WithOnLost(lost.record),
		client.WithSessionTimeout(100*time.Millisecond))
	b := dial(t, []string{srv.addr})
	ta, err := a.Campaign(ctx, "x", "a")
	if err != nil {
		t.Fatal(err)
	}
	srv.ln.killAll()
	tb, err := b.Campaign(ctx, "x", "b")
	if err != nil || tb <= ta {
		t.Fatalf("b's Campaign after a's session expired = %d, %v; want a term above %d", tb, err, ta)
	}
	if err := a.Proclaim(ctx, "x", "a2"); err != client.ErrSessionLost {
		t.Fatalf("a's Proclaim after its session expired = %v, want ErrSessionLost", err)
	}
	wait.For(t, 10*time.Second, "the lost report", func() bool { return len(lost.get()) == 1 })
	if got := lost.names(t, client.ErrSessionLost); !got["x"] {
		t.Fatalf("lost %v, want x", got)
	}
	if li, err := b.Leader(ctx, "x"); err != nil || li != (client.LeaderInfo{Token: tb, Value: "b"}) {
		t.Fatalf("Leader = %+v, %v", li, err)
	}
}
