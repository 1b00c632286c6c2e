package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// runCluster starts a local N-node mesh for a developer's own tests: node
// i listens on 127.0.1.(i+1) with the default ports, every node is a
// voter, and all join the first. It runs the secure path by default: a
// gossip key and peer TLS, from a CA and certificates it makes in a
// temporary directory (removed at the end); with -tls the client ports
// are TLS too. It prints every node's client address once the cluster
// serves, with its HTTP endpoint (-http, on a free port of its address:
// metrics, probes, the status page), and stops them all on Ctrl-C (or
// SIGTERM).
func runCluster(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("elock cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 3, "number of nodes")
	base := fs.String("ip", "127.0.1.0", "the nodes get the addresses after this one")
	bin := fs.String("elockd", "", "the elockd binary (default: next to elock, or on PATH)")
	dataDir := fs.String("data-dir", "", "give each node a data dir under this one (default: in memory)")
	logDir := fs.String("log-dir", "", "write each node's log to a file here (default: discard)")
	useTLS := fs.Bool("tls", false, "serve the client ports over TLS too (the printed command shows how to connect)")
	insecure := fs.Bool("insecure", false, "run without the gossip key and peer TLS")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *n < 1 || *n > 250 || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "elock cluster: -n must be 1 to 250, and no arguments")
		return exitUsage
	}
	ip := net.ParseIP(*base).To4()
	if ip == nil {
		fmt.Fprintf(stderr, "elock cluster: -ip %q is not an IPv4 address\n", *base)
		return exitUsage
	}
	elockd, err := findElockd(*bin)
	if err != nil {
		fmt.Fprintln(stderr, "elock cluster:", err)
		return exitUsage
	}
	addr := func(i int, port int) string {
		a := append(net.IP(nil), ip...)
		a[3] += byte(i + 1)
		return fmt.Sprintf("%s:%d", a, port)
	}
	var (
		secure  []string // flags of every node
		nodeTLS func(i int) []string
		tc      *tls.Config // to reach the client ports, with -tls
		caFile  string
	)
	if !*insecure || *useTLS {
		dir, err := os.MkdirTemp("", "elock-cluster-")
		if err != nil {
			fmt.Fprintln(stderr, "elock cluster:", err)
			return exitSoftware
		}
		defer os.RemoveAll(dir)
		var nodes []string
		for i := range *n {
			nodes = append(nodes, fmt.Sprintf("n%d=%s", i+1, strings.Split(addr(i, 0), ":")[0]))
		}
		specs, err := parseCertSpecs(strings.Join(nodes, ","), "")
		if err == nil {
			err = writeCerts(dir, specs, io.Discard)
		}
		if err != nil {
			fmt.Fprintln(stderr, "elock cluster: certificates:", err)
			return exitSoftware
		}
		file := func(i int, suffix string) string { return filepath.Join(dir, fmt.Sprintf("n%d%s.pem", i+1, suffix)) }
		caFile = filepath.Join(dir, "ca.pem")
		ca := caFile
		if !*insecure {
			key := make([]byte, 32)
			rand.Read(key)
			secure = []string{"-encrypt", base64.StdEncoding.EncodeToString(key)}
		}
		nodeTLS = func(i int) []string {
			var f []string
			if !*insecure {
				f = append(f, "-peer-cert", file(i, ""), "-peer-key", file(i, "-key"), "-peer-ca", ca)
			}
			if *useTLS {
				f = append(f, "-tls-cert", file(i, ""), "-tls-key", file(i, "-key"))
			}
			return f
		}
		if *useTLS {
			if tc, err = clientTLS(ca, "", ""); err != nil {
				fmt.Fprintln(stderr, "elock cluster:", err)
				return exitSoftware
			}
			fmt.Fprintf(stdout, "certificates in %s (removed when the cluster stops)\n", dir)
		}
	}
	var procs []*exec.Cmd
	stop := func() {
		for _, p := range procs {
			p.Process.Signal(syscall.SIGTERM)
		}
		for _, p := range procs {
			p.Wait()
		}
	}
	// Every node serves HTTP (metrics, probes, the status page) on its
	// own loopback address, on a port free when asked for.
	var httpAddrs []string
	for i := range *n {
		a, err := freePort(strings.Split(addr(i, 0), ":")[0])
		if err != nil {
			fmt.Fprintln(stderr, "elock cluster: a port for -http:", err)
			return exitSoftware
		}
		httpAddrs = append(httpAddrs, a)
	}
	for i := range *n {
		args := []string{
			"-node-id", fmt.Sprintf("n%d", i+1),
			"-listen", addr(i, 11400), "-gossip", addr(i, 7946), "-peer", addr(i, 11401),
			"-join", addr(0, 7946), "-bootstrap-expect", fmt.Sprint(*n),
			"-http", httpAddrs[i],
		}
		if *dataDir != "" {
			args = append(args, "-data-dir", filepath.Join(*dataDir, fmt.Sprintf("n%d", i+1)))
		}
		args = append(args, secure...)
		if nodeTLS != nil {
			args = append(args, nodeTLS(i)...)
		}
		cmd := exec.Command(elockd, args...)
		if *logDir != "" {
			f, err := os.Create(filepath.Join(*logDir, fmt.Sprintf("n%d.log", i+1)))
			if err != nil {
				stop()
				fmt.Fprintln(stderr, "elock cluster:", err)
				return exitUsage
			}
			defer f.Close()
			cmd.Stdout, cmd.Stderr = f, f
		}
		if err := cmd.Start(); err != nil {
			stop()
			fmt.Fprintln(stderr, "elock cluster:", err)
			return exitSoftware
		}
		procs = append(procs, cmd)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	var addrs []string
	for i := range *n {
		addrs = append(addrs, addr(i, 11400))
	}
	if err := waitReady(ctx, addrs, time.Minute, access{tls: tc}); err != nil {
		stop()
		fmt.Fprintln(stderr, "elock cluster:", err)
		return exitUnavailable
	}
	scheme := "http"
	if *useTLS {
		scheme = "https" // the endpoint serves with the client port's certificate
	}
	for i, a := range addrs {
		fmt.Fprintf(stdout, "n%d %s %s://%s/\n", i+1, a, scheme, httpAddrs[i])
	}
	how := ""
	switch {
	case tc != nil:
		how = " (client ports over TLS)"
	case *insecure:
		how = " (insecure: gossip and peer traffic in clear)"
	default:
		how = " (gossip key and peer TLS on)"
	}
	try := "elock -addr " + strings.Join(addrs, ",")
	if tc != nil {
		try += " -tls-ca " + caFile
	}
	fmt.Fprintf(stdout, "cluster of %d serving%s; try: %s stats; Ctrl-C stops it\n", *n, how, try)
	<-ctx.Done()
	fmt.Fprintln(stdout, "stopping")
	stop()
	return exitOK
}

// findElockd looks for the server binary.
func findElockd(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "elockd")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("elockd"); err == nil {
		return p, nil
	}
	return "", errors.New("no elockd binary next to elock or on PATH; build it (go build -o DIR ./cmd/elockd) or pass -elockd")
}

// waitReady waits until every node reports node_ready 1.
func waitReady(ctx context.Context, addrs []string, limit time.Duration, acc access) error {
	deadline := time.Now().Add(limit)
	for {
		ready := 0
		for _, a := range addrs {
			if nodeReady(ctx, a, acc) {
				ready++
			}
		}
		if ready == len(addrs) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d nodes ready after %v", ready, len(addrs), limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func nodeReady(ctx context.Context, addr string, acc access) bool {
	nc, err := dialServer(ctx, addr, time.Second, acc)
	if err != nil {
		return false
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := nc.Write([]byte("stats\r\n")); err != nil {
		return false
	}
	sc := bufio.NewScanner(nc)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "STAT node_ready 1" {
			return true
		}
		if l == "END" {
			return false
		}
	}
	return false
}

// freePort returns host:port with a TCP port free on host now.
func freePort(host string) (string, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
