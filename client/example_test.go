package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/elock/elock/client"
)

func ExampleDial() {
	srv, err := newServer() // an in-process elockd; use your servers' addresses
	if err != nil {
		log.Fatal(err)
	}
	defer srv.close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The client tries the addresses in order and fails over among them.
	c, err := client.Dial(ctx, []string{srv.addr},
		client.WithSessionTimeout(10*time.Second), // locks outlive a broken connection by 10 s
		client.WithOnLost(func(l client.LostLock) {
			log.Printf("lost lock %q (token %d): %v", l.Name, l.Token, l.Err)
		}),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	// Close leaves the session's locks to time out; release them now.
	defer c.UnlockAll(ctx)

	st, err := c.Stats(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("clients:", st.Clients)
	// Output: clients: 1
}

func ExampleClient_Lock() {
	srv, err := newServer()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, []string{srv.addr})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// Wait at most 2 s for the lock. While Lock waits, other calls on c
	// wait too: use one Client per independent waiter.
	lctx, lcancel := context.WithTimeout(ctx, 2*time.Second)
	defer lcancel()
	if _, err := c.Lock(lctx, "reports/daily"); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			fmt.Println("someone else is running the report")
			return
		}
		log.Fatal(err)
	}
	fmt.Println("running the report")
	if err := c.Unlock(ctx, "reports/daily"); err != nil {
		log.Fatal(err)
	}
	// Output: running the report
}

func ExampleClient_TryLock() {
	srv, err := newServer()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := client.Dial(ctx, []string{srv.addr})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	b, err := client.Dial(ctx, []string{srv.addr})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	if _, err := a.TryLock(ctx, "cron/cleanup"); err != nil {
		log.Fatal(err)
	}
	_, err = b.TryLock(ctx, "cron/cleanup")
	switch {
	case errors.Is(err, client.ErrUnavailable):
		fmt.Println("b: busy, skipping this run")
	case err != nil:
		log.Fatal(err)
	}
	// Output: b: busy, skipping this run
}

// store is a resource guarded by a lock. It remembers the highest fencing
// token it has seen and refuses writes that carry a lower one: a holder
// that lost its lock without knowing it (a long GC pause, a partition)
// cannot overwrite the work of the next holder.
type store struct {
	highest uint64
	data    string
}

func (s *store) write(token uint64, data string) error {
	if token < s.highest {
		return fmt.Errorf("stale token %d (seen %d)", token, s.highest)
	}
	s.highest, s.data = token, data
	return nil
}

func ExampleClient_Lock_fencing() {
	srv, err := newServer()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := client.Dial(ctx, []string{srv.addr})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	b, err := client.Dial(ctx, []string{srv.addr})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	var s store
	tokA, err := a.Lock(ctx, "config")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("a writes:", s.write(tokA, "from a"))
	// a stalls and its lock passes to b (simulated here by an unlock).
	if err := a.Unlock(ctx, "config"); err != nil {
		log.Fatal(err)
	}
	tokB, err := b.Lock(ctx, "config")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("b writes:", s.write(tokB, "from b"))
	// a wakes up and tries to finish its write with its old token.
	fmt.Println("a writes late:", s.write(tokA, "stale data") != nil)
	fmt.Println("data:", s.data)
	// Output:
	// a writes: <nil>
	// b writes: <nil>
	// a writes late: true
	// data: from b
}
