package partition

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elock/elock/node/locktable"
)

// BenchmarkSetParallel: lock+unlock of distinct names from parallel
// goroutines, with one partition (one mutex for everything) and with the
// default count. On a machine with few cores the mutex is not the
// bottleneck; this shows what it costs as cores grow.
//
//	go test -run '^$' -bench SetParallel -cpu 1,2,4 ./node/partition/
func BenchmarkSetParallel(b *testing.B) {
	for _, parts := range []int{1, DefaultPartitions} {
		b.Run(fmt.Sprint("partitions=", parts), func(b *testing.B) {
			s, err := New(Config{Partitions: parts, Limits: locktable.Limits{MaxWaiters: 10, DefaultTimeout: time.Minute}, Epoch: 1, AutoEpoch: true})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			var n atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				id := fmt.Sprint("s", n.Add(1))
				s.Attach(id, "h")
				names := make([][]byte, 64)
				for i := range names {
					names[i] = []byte(fmt.Sprint(id, "-", i))
				}
				i := 0
				for pb.Next() {
					name := names[i%len(names)]
					i++
					if r, _ := s.Lock(context.Background(), id, name, 0); r.Status != locktable.Granted {
						b.Fatal("not granted")
					}
					s.Unlock(id, name)
				}
			})
		})
	}
}

// BenchmarkLockOfASessionHoldingMany: lock+unlock by a mesh session (one
// that names its birth epoch, so every write first releases what an
// earlier session under its id left) that already holds held locks in the
// one partition. The cost stays flat as held grows: the holder's lower
// bound of its epochs answers without a walk.
//
//	go test -run '^$' -bench LockOfASessionHoldingMany ./node/partition/
func BenchmarkLockOfASessionHoldingMany(b *testing.B) {
	for _, held := range []int{1, 1000, 10000} {
		b.Run(fmt.Sprint("held=", held), func(b *testing.B) {
			s, err := New(Config{Partitions: 1, Limits: locktable.Limits{MaxWaiters: 10, DefaultTimeout: time.Minute}, Epoch: 1, AutoEpoch: true})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			a := Asker{Session: "s", Epoch: 5, Born: 5}
			lock := func(name []byte) {
				s.LockThen(a, name, locktable.Want{}, 0, nil, func(r locktable.Result, _ *Wait, err error) {
					if err != nil || r.Status != locktable.Granted {
						b.Fatal("not granted")
					}
				})
			}
			for i := range held {
				lock([]byte(fmt.Sprint("held-", i)))
			}
			name := []byte("x")
			b.ReportAllocs()
			for b.Loop() {
				lock(name)
				s.UnlockThen(a, name, nil, func(locktable.Result, error) {})
			}
		})
	}
}
