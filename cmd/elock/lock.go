package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/elock/elock/client"
)

// lockOptions are the flags of "elock lock".
type lockOptions struct {
	wait      time.Duration // < 0: wait as long as it takes
	timeout   time.Duration // session timeout; 0: the server's default
	killAfter time.Duration // SIGTERM to SIGKILL when the lock is lost
	keepalive time.Duration
	label     string
	quiet     bool
}

// runLock runs COMMAND while holding NAME, like flock(1) or "etcdctl lock
// NAME cmd". The child learns its fencing token from ELOCK_TOKEN. If the
// lock is lost while the child runs (the session could not be resumed, or
// came back without the lock), the child gets SIGTERM and, -kill-after
// later, SIGKILL: nothing should go on acting under a lock it no longer
// holds.
func runLock(args, addrs []string, acc access, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "--" {
		fmt.Fprintln(stderr, "elock lock: missing NAME")
		return exitUsage
	}
	name := args[0]
	fs := flag.NewFlagSet("elock lock", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o lockOptions
	fs.DurationVar(&o.wait, "wait", -1, "how long to wait for the lock (default: as long as it takes; 0: do not wait)")
	fs.DurationVar(&o.timeout, "timeout", 0, "session timeout: how long the lock outlives a lost connection (default: the server's, 30s)")
	fs.DurationVar(&o.killAfter, "kill-after", 5*time.Second, "when the lock is lost: time between SIGTERM and SIGKILL of COMMAND")
	fs.DurationVar(&o.keepalive, "keepalive", time.Second, "how often an idle connection is checked, which bounds how late a lost lock is noticed")
	fs.StringVar(&o.label, "label", defaultLabel(), "the label others see next to this lock (elock locks); empty: none")
	fs.BoolVar(&o.quiet, "quiet", false, "do not say on stderr who holds the lock while waiting for it")
	if err := fs.Parse(args[1:]); err != nil {
		return exitUsage
	}
	cmdArgs := fs.Args()
	if len(cmdArgs) == 0 {
		fmt.Fprintln(stderr, "elock lock: missing '-- COMMAND'")
		return exitUsage
	}

	lost := make(chan client.LostLock, 1)
	opts := []client.Option{
		client.WithKeepalive(o.keepalive),
		client.WithOnLost(func(l client.LostLock) {
			if l.Name == name {
				select {
				case lost <- l:
				default:
				}
			}
		}),
	}
	if o.timeout > 0 {
		opts = append(opts, client.WithSessionTimeout(o.timeout))
	}
	if acc.tls != nil {
		opts = append(opts, client.WithTLS(acc.tls))
	}
	if acc.token != "" {
		opts = append(opts, client.WithToken(acc.token))
	}
	ctx := context.Background()
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	c, err := client.Dial(dctx, addrs, opts...)
	cancel()
	if err != nil {
		fmt.Fprintln(stderr, "elock lock:", err)
		return exitUnavailable
	}
	defer c.Close()
	if o.label != "" {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := c.Label(lctx, o.label)
		cancel()
		if errors.Is(err, client.ErrInvalidLabel) {
			fmt.Fprintln(stderr, "elock lock: -label:", err)
			return exitUsage
		}
		if err != nil {
			// Only a courtesy to others: go on without it.
			fmt.Fprintln(stderr, "elock lock: label:", err)
		}
	}

	// While the lock is busy for more than a second, say once who holds
	// it, asked on a second connection: this one is blocked in the wait.
	stopWaiting := func() {}
	if !o.quiet && o.wait != 0 {
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			t := time.NewTimer(time.Second)
			defer t.Stop()
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
			line := waitingLine(wctx, addrs, acc, name)
			if wctx.Err() == nil {
				fmt.Fprintln(stderr, line)
			}
		}()
		stopWaiting = func() {
			cancel()
			<-done
		}
	}
	token, code := acquire(ctx, c, name, o.wait, stderr)
	stopWaiting()
	if code != exitOK {
		return code
	}
	status := runHolding(cmdArgs, name, token, lost, o.killAfter, stderr)
	if status == exitLost {
		return status // nothing left to release
	}
	uctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.Unlock(uctx, name); err != nil && !errors.Is(err, client.ErrNotLocked) && !errors.Is(err, client.ErrNotYours) {
		// The session's timeout releases it in the end.
		fmt.Fprintln(stderr, "elock lock: unlock:", err)
	}
	return status
}

// acquire takes the lock, waiting as -wait says.
func acquire(ctx context.Context, c *client.Client, name string, wait time.Duration, stderr io.Writer) (uint64, int) {
	var (
		token uint64
		err   error
	)
	switch {
	case wait == 0:
		token, err = c.TryLock(ctx, name)
	case wait > 0:
		wctx, cancel := context.WithTimeout(ctx, wait)
		token, err = c.Lock(wctx, name)
		cancel()
	default:
		token, err = c.Lock(ctx, name)
	}
	switch {
	case err == nil:
		return token, exitOK
	case errors.Is(err, client.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		fmt.Fprintf(stderr, "elock lock: %s: not acquired within %v\n", name, max(wait, 0))
		return 0, exitNotAcquired
	}
	var se *client.ServerError
	if errors.As(err, &se) {
		fmt.Fprintln(stderr, "elock lock:", err)
		return 0, exitSoftware
	}
	fmt.Fprintln(stderr, "elock lock:", err)
	return 0, exitUnavailable
}

// runHolding runs the command and returns its exit status, or exitLost if
// the lock was lost and the command had to be stopped.
func runHolding(argv []string, name string, token uint64, lost <-chan client.LostLock, killAfter time.Duration, stderr io.Writer) int {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "ELOCK_TOKEN="+strconv.FormatUint(token, 10), "ELOCK_NAME="+name)
	// Signals meant for us go to the child, which decides how to end.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(stderr, "elock lock:", err)
		return 127
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	wasLost := false
	var kill <-chan time.Time
	for {
		select {
		case err := <-exited:
			if wasLost {
				return exitLost
			}
			return exitStatus(err)
		case s := <-sigs:
			cmd.Process.Signal(s)
		case l := <-lost:
			if !wasLost {
				wasLost = true
				fmt.Fprintf(stderr, "elock lock: lock %s lost (%v); stopping %s\n", l.Name, l.Err, argv[0])
				cmd.Process.Signal(syscall.SIGTERM)
				kill = time.After(killAfter)
			}
		case <-kill:
			cmd.Process.Kill()
		}
	}
}

// exitStatus maps a child's end to a shell-style status.
func exitStatus(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return exitSoftware
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ee.ExitCode()
}
