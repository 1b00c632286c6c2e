package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/elock/elock/node/wire"
)

// runQuery prints the server's answer to stats or info NAME, line for
// line without the CR. It exits 0 on a 2xx answer and 1 otherwise.
func runQuery(cmd string, args, addrs []string, acc access, stdout, stderr io.Writer) int {
	want := map[string]int{"stats": 0, "info": 1}[cmd]
	if len(args) != want {
		fmt.Fprintf(stderr, "elock %s: want %d argument(s)\n", cmd, want)
		return exitUsage
	}
	line := strings.Join(append([]string{cmd}, args...), " ")
	lines, err := query(addrs, line, 10*time.Second, acc)
	if err != nil {
		fmt.Fprintln(stderr, "elock:", err)
		return exitUnavailable
	}
	for _, l := range lines {
		fmt.Fprintln(stdout, l)
	}
	if r, ok := wire.ParseReply([]byte(lines[0])); !ok || r.Code/100 != 2 {
		return 1
	}
	return exitOK
}

// query sends one request to the first address that answers and returns
// its reply lines: one, or a block through END.
func query(addrs []string, request string, timeout time.Duration, acc access) ([]string, error) {
	var lastErr error
	for _, a := range addrs {
		lines, err := queryOne(a, request, timeout, acc)
		if err == nil {
			return lines, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func queryOne(addr, request string, timeout time.Duration, acc access) ([]string, error) {
	nc, err := dialServer(context.Background(), addr, timeout, acc)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	return exchange(nc, addr, request, timeout)
}

// exchange sends request on nc and reads its reply lines: one, or a
// block through END.
func exchange(nc net.Conn, addr, request string, timeout time.Duration) ([]string, error) {
	nc.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(nc, request+"\r\n"); err != nil {
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	r := bufio.NewReader(nc)
	var lines []string
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("%s: reading reply: %w", addr, err)
		}
		l = strings.TrimSuffix(l, "\r\n")
		lines = append(lines, l)
		if len(lines) == 1 {
			rep, ok := wire.ParseReply([]byte(l))
			if !ok {
				return nil, fmt.Errorf("%s: malformed reply %q", addr, l)
			}
			if rep.Code != wire.CodeOK || !wire.IsBlockHeader(rep.Text) {
				return lines, nil
			}
			continue
		}
		if l == "END" {
			return lines, nil
		}
	}
}

// runLeader prints who leads NAME as "TOKEN VALUE" (VALUE "-" when the
// leader published none, as a plain elock lock does) and exits 0, or
// prints "no leader" and exits exitNoLeader. A refusal of the server
// (a bad name, a name the -token may not read) goes to stderr with
// exitSoftware.
func runLeader(args, addrs []string, acc access, stdout, stderr io.Writer) int {
	const use = "usage: elock leader NAME"
	switch {
	case len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help"):
		fmt.Fprintln(stderr, use)
		return exitOK
	case len(args) != 1:
		fmt.Fprintln(stderr, use)
		return exitUsage
	}
	lines, err := query(addrs, "leader "+args[0], 10*time.Second, acc)
	if err != nil {
		fmt.Fprintln(stderr, "elock:", err)
		return exitUnavailable
	}
	r, ok := wire.ParseReply([]byte(lines[0]))
	switch {
	case ok && r.Code == wire.CodeOK:
		if rest, found := strings.CutPrefix(r.Text, "LEADER "); found {
			fmt.Fprintln(stdout, rest)
			return exitOK
		}
	case ok && r.Code == wire.CodeUnavailable:
		fmt.Fprintln(stdout, "no leader")
		return exitNoLeader
	}
	fmt.Fprintf(stderr, "elock leader: %s\n", lines[0])
	return exitSoftware
}
