package main

import (
	"context"
	"testing"

	"github.com/elock/elock/node"
)

type fixedList struct{ list node.LockList }

func (f fixedList) Locks(context.Context, node.LockQuery) (node.LockList, error) {
	return f.list, nil
}

// The status page's longest queues name each queue once, though a name
// held shared, or a semaphore, is listed once per holder; held longest
// shows every holder.
func TestBusiestQueuesOncePerName(t *testing.T) {
	l := fixedList{node.LockList{Locks: []node.LockEntry{
		{Name: "doc", Waiters: 3, Label: "r1"},
		{Name: "doc", Waiters: 3, Label: "r2"},
		{Name: "pool", Waiters: 1, Label: "p1"},
		{Name: "free", Waiters: 0},
	}}}
	q, err := busiestOf(context.Background(), l, true, 10)
	if err != nil || len(q) != 2 || q[0].Name != "doc" || q[0].Label != "r1" || q[1].Name != "pool" {
		t.Fatalf("longest queues %+v, %v; want doc then pool, once each", q, err)
	}
	h, err := busiestOf(context.Background(), l, false, 10)
	if err != nil || len(h) != 4 {
		t.Fatalf("held longest %+v, %v; want every holder", h, err)
	}
}
