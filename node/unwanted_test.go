package node

import (
	"context"
	"errors"
	"testing"

	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
)

// unwantedRecorder is a Backend whose Drop answers drop and whose Unlock
// answers unlockErr, recording what each was asked.
type unwantedRecorder struct {
	Backend
	drop      locktable.Result
	dropErr   error
	unlockErr error
	dropped   []uint64
	unlocked  int
}

func (b *unwantedRecorder) Unlock(context.Context, SessionRef, []byte) (locktable.Result, error) {
	b.unlocked++
	if b.unlockErr != nil {
		return locktable.Result{}, b.unlockErr
	}
	return locktable.Result{Status: locktable.Unlocked}, nil
}

func (b *unwantedRecorder) Drop(_ context.Context, _ SessionRef, _ []byte, token uint64) (locktable.Result, error) {
	b.dropped = append(b.dropped, token)
	return b.drop, b.dropErr
}

// A grant nobody will hear of is taken back by its token, never by a
// plain unlock while the owner can tell: unlock would also take a grant
// that a resumed connection of the session was told of since. Only an
// owner that cannot tell (it took the partition over since) leaves it to
// unlock, which only the session's current home may send.
func TestReleaseUnwanted(t *testing.T) {
	unlocked := locktable.Result{Status: locktable.Unlocked}
	tests := []struct {
		name      string
		token     uint64
		drop      locktable.Result
		dropErr   error
		unlockErr error
		dropped   int
		unlocked  int
		wantErr   bool
	}{
		{"taken back", 7, unlocked, nil, nil, 1, 0, false},
		{"told of it since: kept", 7, locktable.Result{Status: locktable.NotYours}, nil, nil, 1, 0, false},
		{"already released", 7, locktable.Result{Status: locktable.NotLocked}, nil, nil, 1, 0, false},
		{"owner cannot tell: unlock", 7, locktable.Result{Status: locktable.Granted, Token: 7}, nil, nil, 1, 1, false},
		{"owner cannot tell, session moved", 7, locktable.Result{Status: locktable.Granted, Token: 7}, nil, failure.Retry(failure.SessionMoved, "moved"), 1, 1, true},
		{"drop failed", 7, locktable.Result{}, failure.Retry(failure.Unavailable, "partition 3 unavailable"), nil, 1, 0, true},
		{"no token: unlock", 0, locktable.Result{}, nil, nil, 0, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &unwantedRecorder{drop: tt.drop, dropErr: tt.dropErr, unlockErr: tt.unlockErr}
			err := ReleaseUnwanted(context.Background(), b, SessionRef{ID: "s"}, []byte("x"), tt.token)
			if (err != nil) != tt.wantErr || len(b.dropped) != tt.dropped || b.unlocked != tt.unlocked {
				t.Fatalf("err %v, dropped %v, unlocked %d; want error %v, %d drops, %d unlocks", err, b.dropped, b.unlocked, tt.wantErr, tt.dropped, tt.unlocked)
			}
			if tt.dropped > 0 && b.dropped[0] != tt.token {
				t.Fatalf("dropped token %d, want %d", b.dropped[0], tt.token)
			}
			if tt.wantErr && !errors.Is(err, tt.dropErr) && !errors.Is(err, tt.unlockErr) {
				t.Fatalf("err %v; want the failing call's error", err)
			}
		})
	}
}
