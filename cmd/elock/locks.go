package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/elock/elock/client"
)

// clientOptions are the Go client's options for acc.
// maxLockLimit is elockd's largest LIMIT of the locks command.
const maxLockLimit = 10000

func clientOptions(acc access) []client.Option {
	var opts []client.Option
	if acc.tls != nil {
		opts = append(opts, client.WithTLS(acc.tls))
	}
	if acc.token != "" {
		opts = append(opts, client.WithToken(acc.token))
	}
	return opts
}

// splitPrefix parses fs from args, which may hold one PREFIX before or
// after the flags; it returns the prefix ("" for every name).
func splitPrefix(fs *flag.FlagSet, args []string) (string, error) {
	prefix := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		prefix, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	switch rest := fs.Args(); {
	case len(rest) == 1 && prefix == "":
		prefix = rest[0]
	case len(rest) > 0:
		return "", fmt.Errorf("unexpected arguments %q", rest)
	}
	return strings.TrimSuffix(prefix, "*"), nil
}

func dialClient(addrs []string, acc access) (*client.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return client.Dial(ctx, addrs, append(clientOptions(acc), client.WithKeepalive(-1))...)
}

// runLocks prints the held locks under a prefix for a person.
func runLocks(args, addrs []string, acc access, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("elock locks", flag.ContinueOnError)
	fs.SetOutput(stderr)
	limit := fs.Int("n", 1000, "list at most this many locks (1 to 10000)")
	order := fs.String("order", "name", "which come first: name, held (longest held) or waiters (longest queue)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: elock locks [-n LIMIT] [-order name|held|waiters] [PREFIX]")
		fs.PrintDefaults()
	}
	prefix, err := splitPrefix(fs, args)
	if err != nil {
		if err != flag.ErrHelp {
			fmt.Fprintln(stderr, "elock locks:", err)
		}
		return exitUsage
	}
	if *limit < 1 || *limit > maxLockLimit || (*order != "name" && *order != "held" && *order != "waiters") {
		fmt.Fprintln(stderr, "elock locks: -n wants 1 to 10000, -order name, held or waiters")
		return exitUsage
	}
	c, err := dialClient(addrs, acc)
	if err != nil {
		fmt.Fprintln(stderr, "elock locks:", err)
		return exitUnavailable
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := c.LocksBy(ctx, prefix, *limit, client.LockOrder(*order))
	if err != nil {
		fmt.Fprintln(stderr, "elock locks:", err)
		return exitSoftware
	}
	printLocks(stdout, l.Locks)
	if l.Truncated {
		fmt.Fprintf(stdout, "(truncated: more locks match; showing the first %d, see -n)\n", len(l.Locks))
	}
	return exitOK
}

// printLocks writes locks as aligned columns.
func printLocks(w io.Writer, locks []client.HeldLock) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTOKEN\tHELD\tWAITERS\tLABEL")
	for _, l := range locks {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\n", l.Name, l.Token, heldFor(l.HeldFor), l.Waiters, orDash(l.Label))
	}
	tw.Flush()
}

// heldFor is a duration for a person: whole seconds, or milliseconds
// under one.
func heldFor(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// runTop shows the longest held locks and the longest queues, refreshed
// every -interval, like top(1); -n stops after that many refreshes. On a
// terminal each refresh clears the screen; otherwise they follow each
// other plainly.
func runTop(args, addrs []string, acc access, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("elock top", flag.ContinueOnError)
	fs.SetOutput(stderr)
	interval := fs.Duration("interval", 2*time.Second, "time between refreshes")
	count := fs.Int("n", 0, "stop after this many refreshes (0: until interrupted)")
	rows := fs.Int("rows", 10, "locks shown in each list")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: elock top [-interval DUR] [-n COUNT] [-rows N] [PREFIX]")
		fs.PrintDefaults()
	}
	prefix, err := splitPrefix(fs, args)
	if err != nil {
		if err != flag.ErrHelp {
			fmt.Fprintln(stderr, "elock top:", err)
		}
		return exitUsage
	}
	if *interval <= 0 || *count < 0 || *rows < 1 || *rows > maxLockLimit {
		fmt.Fprintln(stderr, "elock top: -interval must be positive, -n not negative, -rows 1 to 10000")
		return exitUsage
	}
	c, err := dialClient(addrs, acc)
	if err != nil {
		fmt.Fprintln(stderr, "elock top:", err)
		return exitUnavailable
	}
	defer c.Close()
	tty := isTerminal(stdout)
	for i := 0; *count == 0 || i < *count; i++ {
		if i > 0 {
			time.Sleep(*interval)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		held, err := c.LocksBy(ctx, prefix, *rows, client.ByHeld)
		var queues client.LockList
		if err == nil {
			queues, err = c.LocksBy(ctx, prefix, *rows, client.ByWaiters)
		}
		cancel()
		if err != nil {
			fmt.Fprintln(stderr, "elock top:", err)
			return exitSoftware
		}
		if tty {
			io.WriteString(stdout, "\x1b[H\x1b[2J")
		}
		fmt.Fprintf(stdout, "elock top - %s\n\nLongest held\n", time.Now().Format("15:04:05"))
		printLocks(stdout, held.Locks)
		fmt.Fprintln(stdout, "\nLongest queues")
		// A name held shared or a semaphore has a line per holder, all
		// with the same queue: show its queue once.
		var waited []client.HeldLock
		seen := map[string]bool{}
		for _, l := range queues.Locks {
			if l.Waiters > 0 && !seen[l.Name] {
				seen[l.Name] = true
				waited = append(waited, l)
			}
		}
		printLocks(stdout, waited)
		if !tty {
			fmt.Fprintln(stdout)
		}
	}
	return exitOK
}

// isTerminal reports whether w is a character device, where screen
// control codes make sense.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// defaultLabel is host:pid, made a valid label.
func defaultLabel() string {
	host, _ := os.Hostname()
	b := []byte(host + ":" + strconv.Itoa(os.Getpid()))
	for i, ch := range b {
		if ch <= ' ' || ch > '~' {
			b[i] = '_'
		}
	}
	return string(b[:min(len(b), 128)])
}

// waitingHolders bounds the LOCK lines waitingLine reads: enough to see
// every holder of a busy shared name or semaphore, with room for names
// that only start with NAME, and still a small answer.
const waitingHolders = 100

// waitingLine asks a second connection who holds name, for the line
// elock lock and sem print while they wait. A shared name or semaphore
// has a LOCK line per holder. ctx ends the question.
func waitingLine(ctx context.Context, addrs []string, acc access, name string) string {
	line := "waiting for " + name
	for _, a := range addrs {
		nc, err := dialServer(ctx, a, 5*time.Second, acc)
		if err != nil {
			continue
		}
		stop := context.AfterFunc(ctx, func() { nc.Close() })
		lines, err := exchange(nc, a, "locks "+name+"* "+strconv.Itoa(waitingHolders), 5*time.Second)
		stop()
		nc.Close()
		if err != nil {
			continue
		}
		holders, waiters := 0, ""
		var longest int64 = -1
		label := ""
		for _, l := range lines {
			f := strings.Split(l, " ")
			if len(f) != 6 || f[0] != "LOCK" || f[1] != name {
				continue
			}
			holders++
			waiters = f[4]
			if ms, _ := strconv.ParseInt(f[3], 10, 64); ms > longest {
				longest, label = ms, f[5]
			}
		}
		switch {
		case holders == 1:
			return fmt.Sprintf("waiting for %s (held %d s by %s, %s waiting)", name, longest/1000, label, waiters)
		case holders > 1:
			n := strconv.Itoa(holders)
			if holders == waitingHolders {
				n += "+" // the listing was cut short
			}
			return fmt.Sprintf("waiting for %s (held by %s, the longest for %d s by %s; %s waiting)", name, n, longest/1000, label, waiters)
		}
		return line
	}
	return line
}
