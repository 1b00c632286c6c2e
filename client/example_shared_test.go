package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/elock/elock/client"
)

func ExampleClient_RLock() {
	srv, err := newServer()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reader, err := client.Dial(ctx, []string{srv.addr})
	if err != nil {
		log.Fatal(err)
	}
	defer reader.Close()
	writer, err := client.Dial(ctx, []string{srv.addr})
	if err != nil {
		log.Fatal(err)
	}
	defer writer.Close()

	// Readers share the name; a writer needs it to itself.
	if _, err := reader.RLock(ctx, "config"); err != nil {
		log.Fatal(err)
	}
	if _, err := writer.TryLock(ctx, "config"); errors.Is(err, client.ErrUnavailable) {
		fmt.Println("the writer waits for the readers")
	}
	if err := reader.Unlock(ctx, "config"); err != nil {
		log.Fatal(err)
	}
	if _, err := writer.TryLock(ctx, "config"); err == nil {
		fmt.Println("the writer has it")
	}
	// Output:
	// the writer waits for the readers
	// the writer has it
}

func ExampleClient_Acquire() {
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

	// At most 3 sessions at a time hold a permit of "db/conns". Every
	// user of the name gives the same limit.
	if _, err := c.Acquire(ctx, "db/conns", 3); err != nil {
		log.Fatal(err)
	}
	in, err := c.Info(ctx, "db/conns")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %d of %d permits held\n", in.Kind, in.Holders, in.Limit)
	if _, err := c.Acquire(ctx, "db/conns", 5); errors.Is(err, client.ErrLimitMismatch) {
		fmt.Println("another limit is refused")
	}
	if err := c.Unlock(ctx, "db/conns"); err != nil {
		log.Fatal(err)
	}
	// Output:
	// semaphore: 1 of 3 permits held
	// another limit is refused
}
