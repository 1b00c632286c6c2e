package node

import (
	"context"
	"errors"
	"testing"

	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/wire"
)

// unlockRecorder is a Backend whose Unlock fails with unlockErr and whose
// Drop records what it was asked to take back.
type unlockRecorder struct {
	Backend
	unlockErr error
	dropped   []uint64
}

func (b *unlockRecorder) Unlock(context.Context, SessionRef, []byte) (locktable.Result, error) {
	if b.unlockErr != nil {
		return locktable.Result{}, b.unlockErr
	}
	return locktable.Result{Status: locktable.Unlocked}, nil
}

func (b *unlockRecorder) Drop(_ context.Context, _ SessionRef, _ []byte, token uint64) (locktable.Result, error) {
	b.dropped = append(b.dropped, token)
	return locktable.Result{Status: locktable.Unlocked}, nil
}

// A grant nobody will hear of is released by unlock while this home holds
// the session, and taken back by its token once the session moved to
// another home (whose unlock this home may no longer send).
func TestReleaseUnwanted(t *testing.T) {
	tests := []struct {
		name      string
		unlockErr error
		token     uint64
		dropped   []uint64
		wantErr   bool
	}{
		{"home holds the session", nil, 7, nil, false},
		{"session moved, told here", errSessionMoved, 7, []uint64{7}, false},
		{"session moved, told by the owner", &wire.Error{Code: errSessionMoved.Code, Reason: errSessionMoved.Reason}, 7, []uint64{7}, false},
		{"another failure", wire.Retry("partition 3 unavailable"), 7, nil, true},
		{"no token", errSessionMoved, 0, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &unlockRecorder{unlockErr: tt.unlockErr}
			err := releaseUnwanted(context.Background(), b, SessionRef{ID: "s"}, []byte("x"), tt.token)
			if (err != nil) != tt.wantErr || len(b.dropped) != len(tt.dropped) || len(b.dropped) > 0 && b.dropped[0] != tt.dropped[0] {
				t.Fatalf("err %v, dropped %v; want error %v, dropped %v", err, b.dropped, tt.wantErr, tt.dropped)
			}
			if tt.wantErr && !errors.Is(err, tt.unlockErr) {
				t.Fatalf("err %v; want the unlock's error", err)
			}
		})
	}
}
