package node

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
)

// failingBackend answers every unlock with the next error of errs.
type failingBackend struct {
	*Local
	errs chan error
}

func (b failingBackend) Unlock(context.Context, SessionRef, []byte) (locktable.Result, error) {
	return locktable.Result{}, <-b.errs
}

// Only the client-facing layer turns a failure into a reply line: its
// class picks the code (503 nothing happened, 504 outcome unknown) and its
// text is the message, byte for byte. An error that is no failure is a
// retryable internal error, and the connection stays usable after each.
func TestFailureReplies(t *testing.T) {
	set, err := partition.New(partition.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	b := failingBackend{Local: &Local{Set: set, Home: "t"}, errs: make(chan error, 8)}
	cfg := DefaultConfig()
	srv, err := NewServer(cfg, b)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-served
	}()
	ts := &testServer{srv: srv, addr: l.Addr().String()}
	c := ts.dial(t)
	tests := []struct {
		err  error
		want string
	}{
		{failure.Retry(failure.NoReplica, "partition 3 has no synced replica; retry"), "503 partition 3 has no synced replica; retry"},
		{failure.Unknown(failure.Unconfirmed, "partition 3 replica did not confirm in time; outcome unknown"), "504 partition 3 replica did not confirm in time; outcome unknown"},
		{errors.Join(errors.New("context"), failure.Retry(failure.LockDelay, "partition 1 lost both copies")), "503 partition 1 lost both copies"},
		{errors.New("something unexpected"), "503 internal error; retry"},
		// A limit of the client's own, checked by an owner, is answered as
		// the client port's own check answers it.
		{failure.Refuse(failure.Limit, "too many locks held by this session (max 2)"), "429 too many locks held by this session (max 2)"},
		{failure.Refuse(failure.Attached, "attached to a live connection"), "403 attached to a live connection"},
	}
	for _, tt := range tests {
		b.errs <- tt.err
		if got := c.do("unlock x"); got != tt.want {
			t.Errorf("unlock failing with %v: %q, want %q", tt.err, got, tt.want)
		}
	}
	if got := c.do("lock x"); got != "200 Acquired" {
		t.Errorf("the connection after the failures: %q", got)
	}
}
