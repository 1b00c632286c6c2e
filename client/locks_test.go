package client_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/elock/elock/client"
)

func TestLabelAndLocks(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	a := dial(t, []string{srv.addr}, client.WithKeepalive(-1))
	b := dial(t, []string{srv.addr})
	if err := a.Label(ctx, "host:1"); err != nil {
		t.Fatal(err)
	}
	tok, err := a.Lock(ctx, "job/a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Lock(ctx, "job/b"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Lock(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	l, err := b.Locks(ctx, "job/", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Locks) != 2 || l.Truncated || l.Locks[0].Name != "job/a" || l.Locks[0].Token != tok || l.Locks[0].Label != "host:1" ||
		l.Locks[1].Name != "job/b" || l.Locks[1].Label != "" {
		t.Fatalf("Locks = %+v", l)
	}
	if l, err = b.Locks(ctx, "", 1); err != nil || len(l.Locks) != 1 || !l.Truncated {
		t.Fatalf("Locks limit 1 = %+v, %v", l, err)
	}
	if l, err = b.LocksBy(ctx, "", 1, client.ByHeld); err != nil || len(l.Locks) != 1 || l.Locks[0].Name != "job/a" {
		t.Fatalf("LocksBy held = %+v, %v", l, err)
	}
	// A prefix that ends in '*' means that '*' itself.
	if l, err = b.Locks(ctx, "job/*", 0); err != nil || len(l.Locks) != 0 {
		t.Fatalf("Locks job/* = %+v, %v", l, err)
	}
	for _, bad := range []string{"two words", strings.Repeat("x", 129), "-", "é"} {
		if err := a.Label(ctx, bad); !errors.Is(err, client.ErrInvalidLabel) {
			t.Fatalf("Label(%q) = %v", bad, err)
		}
	}
	// The label is set again after the connection breaks and the session
	// resumes.
	srv.ln.killAll()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := a.Token(ctx, "job/a"); err != nil {
			t.Fatal(err)
		}
		l, err = b.Locks(ctx, "job/a", 0)
		if err == nil && len(l.Locks) == 1 && l.Locks[0].Label == "host:1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("label after resume: %+v, %v", l, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Cleared, it stays cleared.
	if err := a.Label(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if l, err = b.Locks(ctx, "job/a", 0); err != nil || l.Locks[0].Label != "" {
		t.Fatalf("cleared label: %+v, %v", l, err)
	}
}
