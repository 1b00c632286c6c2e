package mesh

import (
	"testing"
	"time"
)

func TestRenewals(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name   string
		epoch  uint64
		ok     bool
		at     time.Time
		forget time.Time // if set, forget renewals before it first
	}{
		{name: "s1", epoch: 7, ok: true, at: t0},
		// The record's partition changed hands since: the renewal says
		// nothing of the record's home now.
		{name: "s1", epoch: 8, ok: false},
		{name: "s2", epoch: 7, ok: false},
		{name: "s1", epoch: 7, ok: false, forget: t0.Add(time.Second)},
	}
	for _, tt := range tests {
		r := renewals{m: map[string]renewal{}}
		r.note("s1", 7, t0)
		if !tt.forget.IsZero() {
			r.forget(tt.forget)
		}
		at, ok := r.last(tt.name, tt.epoch)
		if ok != tt.ok || !at.Equal(tt.at) {
			t.Errorf("last(%s, %d) = %v, %v; want %v, %v", tt.name, tt.epoch, at, ok, tt.at, tt.ok)
		}
	}
}
