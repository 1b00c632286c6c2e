// Command elock is the command-line client of elock.
//
//	elock [-addr A,B] lock [-shared] NAME [-wait DUR] -- COMMAND ARGS...
//	elock [-addr A,B] sem NAME -limit N [-wait DUR] -- COMMAND ARGS...
//	elock [-addr A,B] elect NAME -value V [-wait DUR] -- COMMAND ARGS...
//	elock [-addr A,B] leader NAME
//	elock [-addr A,B] watch NAME [NAME...]
//	elock [-addr A,B] stats
//	elock [-addr A,B] info NAME
//	elock [-addr A,B] locks [PREFIX]
//	elock [-addr A,B] top [-interval DUR] [-n COUNT]
//	elock [-addr A,B] bench [-mode distinct|contended|semaphore|rw] [-clients N] [-duration D]
//	elock cluster [-n N]
//
// lock runs COMMAND while it holds NAME: exclusively, or with -shared
// together with other shared holders. sem runs COMMAND while it holds one
// of the N permits of the semaphore NAME. Either tells COMMAND its
// fencing token in ELOCK_TOKEN, and stops it if the grant is lost.
// elect runs COMMAND while it leads NAME, publishing V; COMMAND's
// ELOCK_TOKEN is the leadership term, and it is stopped when leadership
// is lost. leader prints the leader's term and value, "TOKEN VALUE".
// watch prints every change of the NAMEs, each line an RFC 3339 time and
// the state: "NAME held TOKEN VALUE" (VALUE - for a plain lock), "NAME
// shared HOLDERS TOKEN" or "NAME free TOKEN", starting with the current
// one, until interrupted (SIGINT or SIGTERM: exit 0).
//
// Exit status: that of COMMAND for lock, sem and elect, or one of the
// codes below.
package main

import (
	"bytes"
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
	"strings"
	"time"

	"github.com/elock/elock/cmd/pki"
)

// Exit codes of elock itself, from sysexits(3) where one fits.
const (
	exitOK          = 0
	exitUsage       = 64 // bad flags or arguments
	exitUnavailable = 69 // no server could be reached
	exitSoftware    = 70 // the server answered something unexpected
	exitNotAcquired = 75 // lock, sem, elect: not acquired within -wait (EX_TEMPFAIL)
	exitLost        = 76 // lock, sem, elect: the grant was lost while COMMAND ran; COMMAND was stopped
	// leader: nobody leads NAME. The same status as a lock not acquired:
	// what was asked for is not there now, and may be later.
	exitNoLeader = 75
)

const usage = `usage:
  elock [-addr A,B,...] lock [-shared] NAME [-wait DUR] [-timeout DUR] [-label TEXT] [-quiet] -- COMMAND [ARGS...]
                                  run COMMAND holding NAME, exclusively or (-shared) with other shared holders
  elock [-addr A,B,...] sem NAME -limit N [-wait DUR] [-timeout DUR] [-label TEXT] [-quiet] -- COMMAND [ARGS...]
                                  run COMMAND holding one of the N permits of semaphore NAME
  elock [-addr A,B,...] elect NAME -value V [-wait DUR] [-timeout DUR] [-label TEXT] [-quiet] -- COMMAND [ARGS...]
                                  run COMMAND while leading NAME, publishing V (no spaces, not "-")
  elock [-addr A,B,...] leader NAME   print the leader of NAME, "TOKEN VALUE" (VALUE - if it published none)
  elock [-addr A,B,...] watch NAME [NAME...]   print each change of the NAMEs until interrupted:
                                  "TIME NAME held TOKEN VALUE|-", "TIME NAME shared HOLDERS TOKEN" or "TIME NAME free TOKEN"
  elock [-addr A,B,...] stats
  elock [-addr A,B,...] info NAME
  elock [-addr A,B,...] locks [-n LIMIT] [-order name|held|waiters] [PREFIX]   held locks, with their holders' labels
  elock [-addr A,B,...] top [-interval DUR] [-n COUNT] [-rows N] [PREFIX]       longest held locks and longest queues
  elock [-addr A,B,...] bench [-backend elock|redis] [-mode distinct|contended] [-clients N] [-duration D] [-json]
  elock [-addr A,B,...] bench -mode semaphore [-limit N] | -mode rw [-readers-per-writer R]   (elock only)
  elock cluster [-n N] [-data-dir DIR] [-log-dir DIR]   a local N-node mesh; Ctrl-C stops it
  elock keygen                                        prints a new gossip key for elockd -encrypt
  elock certs -dir DIR -nodes n1,n2[=ADDR+ADDR] [-clients a,b]   a CA and certificates for TLS

exit status of lock, sem and elect: COMMAND's own status (128+N if killed by signal N), or
  64 usage, 69 no server reachable, 70 unexpected server reply or refusal (NAME is
  the other kind, or a semaphore with another -limit), 75 not acquired (elected) within
  -wait, 76 lock, permit or leadership lost while COMMAND ran (it was stopped)
exit status of leader: 0 with a leader, 75 no leader, 64, 69 or 70 as above
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("elock", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	addr := fs.String("addr", "127.0.0.1:11400", "comma-separated server addresses; any node of a mesh will do")
	tlsCA := fs.String("tls-ca", "", "speak TLS to the servers, trusting this CA (PEM)")
	tlsCert := fs.String("tls-cert", "", "client certificate (PEM; with -tls-key), for a server started with -tls-client-ca")
	tlsKey := fs.String("tls-key", "", "the private key of -tls-cert (PEM)")
	token := fs.String("token", "", "authenticate with this token ('auth TOKEN'), for a server with -acl")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return exitOK
		}
		return exitUsage
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return exitUsage
	}
	addrs := splitList(*addr)
	if len(addrs) == 0 {
		fmt.Fprintln(stderr, "elock: -addr is empty")
		return exitUsage
	}
	tc, err := clientTLS(*tlsCA, *tlsCert, *tlsKey)
	if err != nil {
		fmt.Fprintln(stderr, "elock:", err)
		return exitUsage
	}
	acc := access{tls: tc, token: *token}
	switch rest[0] {
	case "lock":
		return runLock(rest[1:], addrs, acc, stderr)
	case "sem":
		return runSem(rest[1:], addrs, acc, stderr)
	case "elect":
		return runElect(rest[1:], addrs, acc, stderr)
	case "leader":
		return runLeader(rest[1:], addrs, acc, stdout, stderr)
	case "watch":
		return runWatch(rest[1:], addrs, acc, stdout, stderr)
	case "stats":
		return runQuery("stats", rest[1:], addrs, acc, stdout, stderr)
	case "info":
		return runQuery("info", rest[1:], addrs, acc, stdout, stderr)
	case "locks":
		return runLocks(rest[1:], addrs, acc, stdout, stderr)
	case "top":
		return runTop(rest[1:], addrs, acc, stdout, stderr)
	case "bench":
		return runBench(rest[1:], addrs, acc, stdout, stderr)
	case "cluster":
		return runCluster(rest[1:], stdout, stderr)
	case "keygen":
		return runKeygen(rest[1:], stdout, stderr)
	case "certs":
		return runCerts(rest[1:], stdout, stderr)
	case "help", "-h", "--help":
		fs.Usage()
		return exitOK
	}
	fmt.Fprintf(stderr, "elock: unknown command %q\n", rest[0])
	fs.Usage()
	return exitUsage
}

// splitList splits a comma-separated list, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// runKeygen prints a new gossip key: base64 of 32 random bytes (AES-256),
// as consul keygen does.
func runKeygen(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintf(stderr, "elock keygen: unexpected arguments %q\n", args)
		return exitUsage
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		fmt.Fprintln(stderr, "elock keygen:", err)
		return exitSoftware
	}
	fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(key))
	return exitOK
}

// clientTLS is the TLS configuration of -tls-ca, -tls-cert and -tls-key:
// nil (plain TCP) without any of them.
func clientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	if caFile == "" && certFile == "" && keyFile == "" {
		return nil, nil
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("-tls-cert and -tls-key go together")
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := pki.LoadPool(caFile)
		if err != nil {
			return nil, fmt.Errorf("-tls-ca: %w", err)
		}
		tc.RootCAs = pool
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("-tls-cert, -tls-key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// access is how elock reaches its servers: over TLS when tls is set,
// authenticated with token when it is set.
type access struct {
	tls   *tls.Config
	token string
}

// dialServer connects to an elock server as acc says, and authenticates.
func dialServer(ctx context.Context, addr string, timeout time.Duration, acc access) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	var nc net.Conn
	var err error
	if acc.tls == nil {
		nc, err = d.DialContext(ctx, "tcp", addr)
	} else {
		td := tls.Dialer{NetDialer: &d, Config: acc.tls}
		nc, err = td.DialContext(ctx, "tcp", addr)
	}
	if err != nil || acc.token == "" {
		return nc, err
	}
	nc.SetDeadline(time.Now().Add(timeout))
	defer nc.SetDeadline(time.Time{})
	if _, err := io.WriteString(nc, "auth "+acc.token+"\r\n"); err != nil {
		nc.Close()
		return nil, err
	}
	// One byte at a time, so that nothing after the reply is read here.
	var line []byte
	b := make([]byte, 1)
	for len(line) < 512 && !bytes.HasSuffix(line, []byte("\n")) {
		if _, err := nc.Read(b); err != nil {
			nc.Close()
			return nil, fmt.Errorf("%s: auth: %w", addr, err)
		}
		line = append(line, b[0])
	}
	if !bytes.HasPrefix(line, []byte("200 ")) {
		nc.Close()
		return nil, fmt.Errorf("%s: auth: %s", addr, bytes.TrimSpace(line))
	}
	return nc, nil
}
