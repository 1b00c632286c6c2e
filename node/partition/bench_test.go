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
