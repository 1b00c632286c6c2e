package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/elock/elock/client"
)

// runWatch prints the states of the NAMEs, "TIME NAME held TOKEN VALUE",
// "TIME NAME shared HOLDERS TOKEN" or "TIME NAME free TOKEN", one a line,
// until SIGINT or SIGTERM, then exits 0. The client re-establishes a
// broken connection itself, and the current states are told again.
func runWatch(args, addrs []string, acc access, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: elock watch NAME [NAME...]")
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var opts []client.Option
	if acc.tls != nil {
		opts = append(opts, client.WithTLS(acc.tls))
	}
	if acc.token != "" {
		opts = append(opts, client.WithToken(acc.token))
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	c, err := client.Dial(dctx, addrs, opts...)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return exitOK // interrupted before it began
		}
		fmt.Fprintln(stderr, "elock watch:", err)
		return exitUnavailable
	}
	defer c.Close()

	// One goroutine per watch forwards to evs, so that the printing is
	// in one place; all end with ctx, and are joined before returning.
	evs := make(chan client.Event)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, name := range args {
		ch, err := c.Watch(ctx, name)
		if err != nil {
			if ctx.Err() != nil {
				return exitOK
			}
			fmt.Fprintf(stderr, "elock watch %s: %v\n", name, err)
			var se *client.ServerError
			switch {
			case errors.Is(err, client.ErrInvalidName):
				return exitUsage
			case errors.As(err, &se):
				return exitSoftware
			}
			return exitUnavailable
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ev := range ch {
				select {
				case evs <- ev:
				case <-ctx.Done():
				}
			}
		}()
	}
	for {
		select {
		case ev := <-evs:
			fmt.Fprintf(stdout, "%s %s\n", time.Now().UTC().Format(time.RFC3339), ev)
		case <-ctx.Done():
			return exitOK
		}
	}
}
