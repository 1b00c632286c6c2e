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
	"strings"
	"syscall"
	"time"

	"github.com/elock/elock/client"
)

// lockOptions are the flags of "elock lock" and "elock sem".
type lockOptions struct {
	wait      time.Duration // < 0: wait as long as it takes
	timeout   time.Duration // session timeout; 0: the server's default
	killAfter time.Duration // SIGTERM to SIGKILL when the lock is lost
	keepalive time.Duration
	label     string
	quiet     bool
	shared    bool   // lock -shared
	limit     int    // sem -limit
	value     string // elect -value
}

// holding is what a command holds while COMMAND runs: NAME exclusively
// (elock lock), shared (elock lock -shared), one of limit permits (elock
// sem), or its leadership with value published (elock elect).
type holding struct {
	cmd    string // lock, sem or elect, for messages
	shared bool
	limit  int    // sem only
	value  string // elect only
}

// take asks for the grant, waiting on the server if wait is set.
func (h holding) take(ctx context.Context, c *client.Client, name string, wait bool) (uint64, error) {
	switch {
	case h.cmd == "elect" && wait:
		return c.Campaign(ctx, name, h.value)
	case h.cmd == "elect":
		return c.TryCampaign(ctx, name, h.value)
	case h.cmd == "sem" && wait:
		return c.Acquire(ctx, name, h.limit)
	case h.cmd == "sem":
		return c.TryAcquire(ctx, name, h.limit)
	case h.shared && wait:
		return c.RLock(ctx, name)
	case h.shared:
		return c.TryRLock(ctx, name)
	case wait:
		return c.Lock(ctx, name)
	}
	return c.TryLock(ctx, name)
}

// what names the grant for messages.
func (h holding) what(name string) string {
	switch {
	case h.cmd == "elect":
		return "leadership of " + name
	case h.cmd == "sem":
		return "a permit of " + name
	case h.shared:
		return "shared lock " + name
	}
	return "lock " + name
}

// runLock runs COMMAND while holding NAME, like flock(1) or "etcdctl lock
// NAME cmd", exclusively or, with -shared, shared with other -shared
// holders.
func runLock(args, addrs []string, acc access, stderr io.Writer) int {
	return runHold("lock", args, addrs, acc, stderr)
}

// runSem runs COMMAND while holding one of the -limit permits of the
// semaphore NAME.
func runSem(args, addrs []string, acc access, stderr io.Writer) int {
	return runHold("sem", args, addrs, acc, stderr)
}

// runElect runs COMMAND while this process leads NAME, publishing -value
// for elock leader (and Client.Leader) to tell: a leader election where
// the process that wins runs, and the others wait their turn.
func runElect(args, addrs []string, acc access, stderr io.Writer) int {
	return runHold("elect", args, addrs, acc, stderr)
}

// runHold is elock lock, elock sem and elock elect. The child learns its fencing
// token from ELOCK_TOKEN. If the grant is lost while the child runs (the
// session could not be resumed, or came back without it), the child gets
// SIGTERM and, -kill-after later, SIGKILL: nothing should go on acting
// under a lock it no longer holds.
func runHold(cmd string, args, addrs []string, acc access, stderr io.Writer) int {
	prog := "elock " + cmd
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o lockOptions
	fs.DurationVar(&o.wait, "wait", -1, "how long to wait for the lock (default: as long as it takes; 0: do not wait)")
	fs.DurationVar(&o.timeout, "timeout", 0, "session timeout: how long the lock outlives a lost connection (default: the server's, 30s)")
	fs.DurationVar(&o.killAfter, "kill-after", 5*time.Second, "when the lock is lost: time between SIGTERM and SIGKILL of COMMAND")
	fs.DurationVar(&o.keepalive, "keepalive", time.Second, "how often an idle connection is checked, which bounds how late a lost lock is noticed")
	fs.StringVar(&o.label, "label", defaultLabel(), "the label others see next to this lock (elock locks); empty: none")
	fs.BoolVar(&o.quiet, "quiet", false, "do not say on stderr who holds the lock while waiting for it")
	fs.Usage = func() {
		switch cmd {
		case "sem":
			fmt.Fprintln(stderr, "usage: elock sem NAME -limit N [FLAGS] -- COMMAND [ARGS...]")
		case "elect":
			fmt.Fprintln(stderr, "usage: elock elect NAME -value VALUE [FLAGS] -- COMMAND [ARGS...]")
		default:
			fmt.Fprintln(stderr, "usage: elock lock [-shared] NAME [FLAGS] -- COMMAND [ARGS...]")
		}
		fs.PrintDefaults()
	}
	switch cmd {
	case "elect":
		fs.StringVar(&o.value, "value", "", "what this process publishes while it leads, e.g. its address: no spaces, not \"-\" (required)")
	case "sem":
		fs.IntVar(&o.limit, "limit", 0, "the semaphore's number of permits, 1 to the server's -max-permits (65535 by default); every user of NAME gives the same (required)")
	default:
		fs.BoolVar(&o.shared, "shared", false, "take NAME shared: with any other -shared holders, and with no exclusive one")
	}
	name, cmdArgs, err := parseHoldArgs(fs, args)
	if err != nil {
		if err != flag.ErrHelp {
			fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		}
		return exitUsage
	}
	if cmd == "sem" && (o.limit < 1 || uint64(o.limit) > client.MaxPermits) {
		fmt.Fprintf(stderr, "%s: -limit wants 1 to %d permits\n", prog, uint64(client.MaxPermits))
		return exitUsage
	}
	if cmd == "elect" && o.value == "" {
		// The rest of what a value may not be the client checks.
		fmt.Fprintf(stderr, "%s: -value is required\n", prog)
		return exitUsage
	}
	h := holding{cmd: cmd, shared: o.shared, limit: o.limit, value: o.value}

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
	// Session events: jeopardy and safe go to stderr, so that whoever
	// watches the command's output knows when its lock is at risk.
	events := make(chan client.SessionEvent, 16)
	opts = append(opts, client.WithEvents(events))
	evDone := make(chan struct{})
	evStop := make(chan struct{})
	go func() {
		defer close(evDone)
		for {
			select {
			case ev := <-events:
				switch ev.Kind {
				case client.Jeopardy:
					fmt.Fprintf(stderr, "%s: jeopardy: the session holding %s may be lost soon\n", prog, name)
				case client.Safe:
					fmt.Fprintf(stderr, "%s: safe: the session holding %s is renewed again\n", prog, name)
				}
			case <-evStop:
				return
			}
		}
	}()
	defer func() {
		close(evStop)
		<-evDone
	}()
	ctx := context.Background()
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	c, err := client.Dial(dctx, addrs, opts...)
	cancel()
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return exitUnavailable
	}
	defer c.Close()
	if o.label != "" {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := c.Label(lctx, o.label)
		cancel()
		if errors.Is(err, client.ErrInvalidLabel) {
			fmt.Fprintf(stderr, "%s: -label: %v\n", prog, err)
			return exitUsage
		}
		if err != nil {
			// Only a courtesy to others: go on without it.
			fmt.Fprintf(stderr, "%s: label: %v\n", prog, err)
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
	token, code := acquire(ctx, c, h, name, o.wait, stderr)
	stopWaiting()
	if code != exitOK {
		return code
	}
	status := runHolding(cmdArgs, h, name, token, lost, o.killAfter, stderr)
	if status == exitLost {
		return status // nothing left to release
	}
	uctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.Unlock(uctx, name); err != nil && !errors.Is(err, client.ErrNotLocked) && !errors.Is(err, client.ErrNotYours) {
		// The session's timeout releases it in the end.
		fmt.Fprintf(stderr, "%s: unlock: %v\n", prog, err)
	}
	return status
}

// parseHoldArgs parses "[FLAGS] NAME [FLAGS] [--] COMMAND [ARGS...]":
// the flags may come before NAME (lock -shared NAME) or after it (lock
// NAME -wait 5s). A first argument that is none of fs's flags is NAME,
// even if it begins with '-', as elock lock has always taken it.
func parseHoldArgs(fs *flag.FlagSet, args []string) (name string, cmd []string, err error) {
	if len(args) > 0 && args[0] != "--" && !isFlagOf(fs, args[0]) {
		name, args = args[0], args[1:]
	} else {
		if err := fs.Parse(args); err != nil {
			return "", nil, err
		}
		rest := fs.Args()
		// The flag package also stops after a "--", which here means that
		// NAME is missing.
		if len(rest) == 0 || len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
			return "", nil, errors.New("missing NAME")
		}
		name, args = rest[0], rest[1:]
	}
	if err := fs.Parse(args); err != nil {
		return "", nil, err
	}
	if fs.NArg() == 0 {
		return "", nil, errors.New("missing '-- COMMAND'")
	}
	return name, fs.Args(), nil
}

// isFlagOf reports whether arg is one of fs's flags (or asks for help).
func isFlagOf(fs *flag.FlagSet, arg string) bool {
	if len(arg) < 2 || arg[0] != '-' {
		return false
	}
	n, _, _ := strings.Cut(strings.TrimPrefix(arg[1:], "-"), "=")
	return fs.Lookup(n) != nil || n == "h" || n == "help"
}

// acquire takes the grant, waiting as -wait says.
func acquire(ctx context.Context, c *client.Client, h holding, name string, wait time.Duration, stderr io.Writer) (uint64, int) {
	var (
		token uint64
		err   error
	)
	switch {
	case wait == 0:
		token, err = h.take(ctx, c, name, false)
	case wait > 0:
		wctx, cancel := context.WithTimeout(ctx, wait)
		token, err = h.take(wctx, c, name, true)
		cancel()
	default:
		token, err = h.take(ctx, c, name, true)
	}
	prog := "elock " + h.cmd
	switch {
	case err == nil:
		return token, exitOK
	case errors.Is(err, client.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		verb := "acquired"
		if h.cmd == "elect" {
			verb = "elected"
		}
		fmt.Fprintf(stderr, "%s: %s: not %s within %v\n", prog, name, verb, max(wait, 0))
		return 0, exitNotAcquired
	case errors.Is(err, client.ErrInvalidValue):
		fmt.Fprintf(stderr, "%s: -value: %v\n", prog, err)
		return 0, exitUsage
	}
	var se *client.ServerError
	if errors.As(err, &se) {
		// The server answered, but refused: NAME is the other kind, a
		// semaphore with another limit, or a name or limit it does not
		// take.
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 0, exitSoftware
	}
	fmt.Fprintf(stderr, "%s: %v\n", prog, err)
	return 0, exitUnavailable
}

// runHolding runs the command and returns its exit status, or exitLost if
// the lock was lost and the command had to be stopped.
func runHolding(argv []string, h holding, name string, token uint64, lost <-chan client.LostLock, killAfter time.Duration, stderr io.Writer) int {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "ELOCK_TOKEN="+strconv.FormatUint(token, 10), "ELOCK_NAME="+name)
	// Signals meant for us go to the child, which decides how to end.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "elock %s: %v\n", h.cmd, err)
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
				fmt.Fprintf(stderr, "elock %s: %s lost (%v); stopping %s\n", h.cmd, h.what(l.Name), l.Err, argv[0])
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
