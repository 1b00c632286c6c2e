package node

import (
	"bufio"
	"fmt"
	"net"
	"testing"
	"time"
)

// BenchmarkEventsCost: lock and unlock of a name of its own, over TCP,
// by a connection without session events and by one with "events on"
// (each grant then watches its name until the unlock), alternated in
// one run.
//
//	go test -run '^$' -bench EventsCost -benchtime 20000x -count 4 ./node/
func BenchmarkEventsCost(b *testing.B) {
	ts := startServer(b, nil)
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprint("events=", on), func(b *testing.B) {
			nc, err := net.DialTimeout("tcp", ts.addr, 5*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			r := bufio.NewReader(nc)
			do := func(line, want string) {
				if _, err := nc.Write([]byte(line + "\r\n")); err != nil {
					b.Fatal(err)
				}
				got, err := r.ReadString('\n')
				if err != nil || got != want+"\r\n" {
					b.Fatalf("%q -> %q %v", line, got, err)
				}
			}
			do("set_timeout 30000", "200 timeout set") // the session, before the loop
			if on {
				do("events on", "200 events on")
			}
			b.ResetTimer()
			for range b.N {
				do("lock own", "200 Acquired")
				do("unlock own", "200 Unlocked")
			}
		})
	}
}
