// Command elockd is the elock lock server.
//
// With no flags it serves the elock protocol on 127.0.0.1:11400 as a
// single node. Any of -join, -gossip, -peer or -bootstrap-expect makes it
// a node of a mesh. Run "elockd -h" for every flag.
package main

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/elock/elock/cmd/pki"
	"github.com/elock/elock/node"
	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/mesh"
	"github.com/elock/elock/node/metrics"
	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/node/peer"
	"github.com/elock/elock/node/web"
	"github.com/elock/elock/replication"
	"github.com/elock/elock/ring"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// options are the parsed flags.
type options struct {
	listen     string
	httpAddr   string // -http, or its alias -debug-addr
	httpFlag   string // which of the two gave httpAddr, for messages
	debugAddr  string
	logFormat  string
	nodeID     string
	logLevel   string
	shutdown   time.Duration
	leave      time.Duration
	version    bool
	partitions int
	cfg        node.Config

	// Mesh.
	mesh      bool // any mesh flag was given
	gossip    string
	peer      string
	join      string
	expect    int
	dataDir   string
	lease     time.Duration
	homeLease time.Duration
	lostAfter time.Duration
	// The client port's TLS: certificate and key, and the CA that
	// client certificates must chain to (none: no client certificates).
	tlsCert, tlsKey, tlsClientCA string
	// acl is the file of the client port's access control.
	acl string
	// Peer TLS: this node's certificate and key, and the mesh's CA.
	peerCert, peerKey, peerCA string
	// The gossip keys, from -encrypt or -encrypt-file; the first
	// encrypts.
	encrypt     string
	encryptFile string
	keys        [][]byte
	// maxSessions and maxLocksTotal bound the session records and the
	// locks this node keeps (0: no bound).
	maxSessions, maxLocksTotal int
	// insecure allows a mesh beyond loopback without gossip encryption
	// or peer TLS, and -http beyond loopback without TLS.
	insecure bool
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	o := options{cfg: node.DefaultConfig(), httpFlag: "-http"}
	fs := flag.NewFlagSet("elockd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:11400", "client address (host:port); binding beyond loopback is your explicit choice")
	fs.StringVar(&o.nodeID, "node-id", "", "this node's id, [A-Za-z0-9._-] (default: derived from -listen)")
	fs.StringVar(&o.gossip, "gossip", "127.0.0.1:7946", "mesh: memberlist bind address, UDP and TCP")
	fs.StringVar(&o.peer, "peer", "127.0.0.1:11401", "mesh: internal RPC address for proxying, replication and the control plane")
	fs.StringVar(&o.join, "join", "", "mesh: gossip addresses of existing members, comma-separated; retried until one answers")
	fs.IntVar(&o.expect, "bootstrap-expect", 0, "mesh: makes this node a voter; the voters form the control plane once N of them see each other (default: 1 without -join, none with -join)")
	fs.StringVar(&o.dataDir, "data-dir", "", "where persistent state goes (default: none, in memory)")
	fs.DurationVar(&o.lease, "lease", replication.DefaultLease, "mesh: owner lease; an owner whose lease runs out is taken over")
	fs.DurationVar(&o.lostAfter, "lost-after", replication.DefaultLostAfter, "mesh: how long both copies of a partition may be out of reach (and not known to have restarted) before it is declared lost and served empty after a lock-delay")
	fs.DurationVar(&o.homeLease, "home-lease", mesh.DefaultHomeLease, "mesh: a node that cannot renew a client's session for this long closes its connection")
	fs.StringVar(&o.acl, "acl", "", "client access control: a JSON file of identities (a client certificate's common name, or named by a token sent with 'auth TOKEN'), the name prefixes each may lock and those it may only read (default: none, everyone may do everything)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "serve the client port over TLS with this certificate (PEM; with -tls-key)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "the private key of -tls-cert (PEM)")
	fs.StringVar(&o.tlsClientCA, "tls-client-ca", "", "require client certificates signed by this CA (PEM; with -tls-cert)")
	fs.StringVar(&o.peerCert, "peer-cert", "", "mesh: this node's certificate (PEM), naming its node id as a DNS name; with -peer-key and -peer-ca, peer RPC and raft use mutual TLS 1.3")
	fs.StringVar(&o.peerKey, "peer-key", "", "mesh: the private key of -peer-cert (PEM)")
	fs.StringVar(&o.peerCA, "peer-ca", "", "mesh: the CA (PEM) that signs every node's -peer-cert")
	fs.BoolVar(&o.insecure, "insecure", false, "allow a mesh whose -gossip or -peer address is beyond loopback without -encrypt and the -peer-* flags, and -http beyond loopback without -tls-cert")
	fs.StringVar(&o.encrypt, "encrypt", "", "mesh: gossip key, base64 of 16, 24 or 32 bytes ('elock keygen' makes one); every node needs it")
	fs.StringVar(&o.encryptFile, "encrypt-file", "", "mesh: file of gossip keys, one per line: the first encrypts, all decrypt (to rotate keys by rolling restarts)")
	fs.DurationVar(&o.leave, "leave-timeout", time.Minute, "mesh: how long SIGTERM waits for this node's partitions to move away")
	fs.StringVar(&o.httpAddr, "http", "", "serve HTTP on this address: /metrics, /healthz, /readyz, a status page at /, profiles at /debug/pprof/ (default: off); beyond loopback it needs -tls-cert (then HTTPS) or -insecure")
	fs.StringVar(&o.debugAddr, "debug-addr", "", "an alias of -http, which now serves the profiles")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error (debug logs every command)")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json (one JSON object per line); every line carries the node id")
	fs.DurationVar(&o.shutdown, "shutdown-timeout", 10*time.Second, "how long SIGTERM waits for connections to finish")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	fs.IntVar(&o.partitions, "partitions", partition.DefaultPartitions, "partitions of the lock space; every node of a mesh must agree")
	fs.IntVar(&o.cfg.MaxLine, "max-line", o.cfg.MaxLine, "longest request line in bytes, terminator excluded")
	fs.IntVar(&o.cfg.MaxName, "max-name", o.cfg.MaxName, "longest lock name in bytes")
	fs.DurationVar(&o.cfg.MaxWait, "max-wait", o.cfg.MaxWait, "largest SECS accepted by 'lock NAME SECS'")
	fs.DurationVar(&o.cfg.MaxTimeout, "max-timeout", o.cfg.MaxTimeout, "largest 'set_timeout MS' accepted; with the lease it sizes the lock-delay after a double failure")
	fs.DurationVar(&o.cfg.DefaultTimeout, "session-timeout", o.cfg.DefaultTimeout, "how long a session's locks outlive its connection, until set_timeout")
	fs.IntVar(&o.cfg.MaxConns, "max-conns", o.cfg.MaxConns, "most client connections at once")
	fs.IntVar(&o.cfg.MaxConnsPerIP, "max-conns-per-ip", o.cfg.MaxConnsPerIP, "most client connections at once from one IP address (0: no cap per address)")
	fs.DurationVar(&o.cfg.WriteTimeout, "write-timeout", o.cfg.WriteTimeout, "a client that leaves its replies unread this long is disconnected; its session detaches and times out")
	fs.IntVar(&o.cfg.MaxLocksPerSession, "max-locks", o.cfg.MaxLocksPerSession, "most locks one session may hold")
	fs.IntVar(&o.cfg.MaxWaiters, "max-waiters", o.cfg.MaxWaiters, "most requests waiting for one lock")
	fs.IntVar(&o.cfg.MaxPermits, "max-permits", o.cfg.MaxPermits, "most permits a semaphore may have (acquire NAME LIMIT)")
	fs.IntVar(&o.cfg.MaxWatches, "max-watches", o.cfg.MaxWatches, "most names one connection may watch")
	fs.IntVar(&o.maxSessions, "max-sessions", node.DefaultMaxSessions, "most sessions this node keeps, attached or waiting out their timeout (0: no bound); a mesh node counts those whose records it owns or replicates")
	fs.IntVar(&o.maxLocksTotal, "max-locks-total", node.DefaultMaxLocksTotal, "most locks held on this node by all sessions together (0: no bound); a mesh node counts those of the partitions it owns or replicates")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "join", "gossip", "peer", "bootstrap-expect":
			o.mesh = true
		}
	})
	switch {
	case o.debugAddr != "" && o.httpAddr != "" && o.debugAddr != o.httpAddr:
		return o, fmt.Errorf("-debug-addr is an alias of -http: give one address, not -http %s and -debug-addr %s", o.httpAddr, o.debugAddr)
	case o.httpAddr == "" && o.debugAddr != "":
		o.httpAddr, o.httpFlag = o.debugAddr, "-debug-addr"
	}
	if o.logFormat != "text" && o.logFormat != "json" {
		return o, fmt.Errorf("bad -log-format %q: want text or json", o.logFormat)
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return o, errors.New("-tls-cert and -tls-key go together")
	}
	if o.tlsClientCA != "" && o.tlsCert == "" {
		return o, errors.New("-tls-client-ca needs -tls-cert and -tls-key")
	}
	var err error
	if o.keys, err = gossipKeys(o.encrypt, o.encryptFile); err != nil {
		return o, err
	}
	if n := countSet(o.peerCert, o.peerKey, o.peerCA); n != 0 && n != 3 {
		return o, errors.New("-peer-cert, -peer-key and -peer-ca go together")
	}
	if o.peerCert != "" && !o.mesh {
		return o, errors.New("-peer-cert, -peer-key and -peer-ca apply to a mesh: give -join, -gossip, -peer or -bootstrap-expect too")
	}
	if len(o.keys) > 0 && !o.mesh {
		return o, errors.New("-encrypt and -encrypt-file apply to a mesh: give -join, -gossip, -peer or -bootstrap-expect too")
	}
	if err := o.secureBeyondLoopback(); err != nil {
		return o, err
	}
	if o.mesh && o.expect == 0 && o.join == "" {
		o.expect = 1
	}
	if o.expect < 0 {
		return o, fmt.Errorf("-bootstrap-expect %d is negative", o.expect)
	}
	if o.maxSessions < 0 || o.maxLocksTotal < 0 {
		return o, errors.New("-max-sessions and -max-locks-total may not be negative")
	}
	o.cfg.NodeID = o.nodeID
	return o, nil
}

// newLogger makes the logger of -log-level and -log-format (text or
// json: slog's handlers, so each line is one logfmt record or one JSON
// object).
func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("bad -log-level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// secureBeyondLoopback refuses what would let anyone on the network into
// the node: a mesh whose gossip or peer address is beyond loopback
// without gossip encryption and peer TLS, and the HTTP endpoint (whose
// profiles show the heap and goroutine stacks, session ids among them)
// beyond loopback without TLS, unless -insecure says so. The endpoint
// serves HTTPS with the client port's certificate; -acl decides who may
// read it.
func (o options) secureBeyondLoopback() error {
	if o.insecure {
		return nil
	}
	if o.httpAddr != "" && !loopbackAddr(o.httpAddr) && o.tlsCert == "" {
		return fmt.Errorf("%s %s is beyond loopback without TLS: anyone on the network could read this node's metrics, status and profiles (heap and goroutine stacks, session ids among them) in clear; give -tls-cert and -tls-key (and -acl to say who may read it), bind it to loopback, or give -insecure", o.httpFlag, o.httpAddr)
	}
	if !o.mesh {
		return nil
	}
	var beyond []string
	if !loopbackAddr(o.gossip) {
		beyond = append(beyond, "-gossip "+o.gossip)
	}
	if !loopbackAddr(o.peer) {
		beyond = append(beyond, "-peer "+o.peer)
	}
	if len(beyond) == 0 {
		return nil
	}
	var missing []string
	if len(o.keys) == 0 {
		missing = append(missing, "-encrypt (or -encrypt-file)")
	}
	if o.peerCert == "" {
		missing = append(missing, "-peer-cert, -peer-key and -peer-ca")
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("%s beyond loopback: anyone on the network could join this mesh without %s; give them (elock keygen makes a gossip key), or -insecure to run without",
		strings.Join(beyond, " and "), strings.Join(missing, " and "))
}

// profilesServed says whether the HTTP endpoint serves Go's profiles: on
// loopback, or beyond it only where it can tell who asks (-acl, client
// certificates), or with -insecure. TLS alone names nobody, and a CPU
// profile or a trace is a lever on the node, its command line may hold
// a gossip key.
func (o options) profilesServed() bool {
	return loopbackAddr(o.httpAddr) || o.insecure || o.acl != "" || o.tlsClientCA != ""
}

// loopbackAddr reports whether host:port names a loopback address
// ("localhost" included); an unspecified address (":7946", "0.0.0.0")
// binds every interface and is not.
func loopbackAddr(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// countSet counts the non-empty strings.
func countSet(ss ...string) int {
	n := 0
	for _, s := range ss {
		if s != "" {
			n++
		}
	}
	return n
}

// clientTLS is the client port's TLS configuration: TLS 1.2 or later,
// and with a client CA, only clients whose certificate it signed.
func clientTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("-tls-cert, -tls-key: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := pki.LoadPool(caFile)
		if err != nil {
			return nil, fmt.Errorf("-tls-client-ca: %w", err)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// gossipKeys reads the gossip keys of -encrypt (one key) or
// -encrypt-file (one per line; blank lines and lines starting with # are
// skipped), each base64 of 16, 24 or 32 bytes.
func gossipKeys(key, file string) ([][]byte, error) {
	var lines []string
	where := "-encrypt"
	switch {
	case key != "" && file != "":
		return nil, errors.New("give -encrypt or -encrypt-file, not both")
	case key != "":
		lines = []string{key}
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("-encrypt-file: %w", err)
		}
		lines = strings.Split(string(b), "\n")
		where = "-encrypt-file " + file
	}
	var keys [][]byte
	for i, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(l)
		if err == nil {
			err = ring.ValidateKey(k)
		}
		if err != nil {
			// The key itself is a secret: never echo it.
			return nil, fmt.Errorf("%s: key on line %d: not base64 of 16, 24 or 32 bytes", where, i+1)
		}
		keys = append(keys, k)
	}
	if file != "" && len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no key", where)
	}
	return keys, nil
}

// nodeID derives an id from the client address: unique among the nodes of
// a machine and stable across restarts, as a node id must be.
func nodeID(addr string) string {
	return strings.NewReplacer(":", "-", "[", "", "]", "").Replace(addr)
}

func run(args []string, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "elockd:", err)
		return 2
	}
	if o.version {
		fmt.Fprintln(os.Stdout, "elockd", node.Version)
		return 0
	}
	log, err := newLogger(o.logLevel, o.logFormat, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "elockd:", err)
		return 2
	}
	if o.cfg.NodeID != "" {
		log = log.With("node", o.cfg.NodeID)
	}
	o.cfg.Logger = log
	reg := metrics.NewRegistry()
	// usage reports a configuration error found once the logger exists:
	// as the line "elockd: ERR", or with -log-format json as a log record,
	// so that every line of a JSON log parses.
	usage := func(err error) {
		if o.logFormat == "json" {
			log.Error("bad configuration", "err", err)
			return
		}
		fmt.Fprintln(stderr, "elockd:", err)
	}
	if o.cfg.Observer, err = metrics.NewCommands(reg); err != nil {
		usage(err)
		return 2
	}
	l, err := net.Listen("tcp", o.listen)
	if err != nil {
		log.Error("cannot listen", "addr", o.listen, "err", err)
		return 1
	}
	defer l.Close()
	if o.tlsCert != "" {
		tc, err := clientTLS(o.tlsCert, o.tlsKey, o.tlsClientCA)
		if err != nil {
			usage(err)
			return 2
		}
		l = tls.NewListener(l, tc)
	} else if !loopbackAddr(l.Addr().String()) {
		log.Warn("the client port is beyond loopback without TLS: commands, replies and session ids (which resume sessions and their locks) travel in clear; see -tls-cert",
			"addr", l.Addr().String())
	}
	if o.cfg.NodeID == "" {
		// Known only now: the lines before carry no node id (the
		// address they report names the node).
		o.cfg.NodeID = nodeID(l.Addr().String())
		log = log.With("node", o.cfg.NodeID)
		o.cfg.Logger = log
	}
	if o.acl != "" {
		b, err := os.ReadFile(o.acl)
		if err == nil {
			o.cfg.ACL, err = node.ParseACL(b)
		}
		if err != nil {
			usage(fmt.Errorf("-acl: %w", err))
			return 2
		}
	}
	if err := o.cfg.Validate(); err != nil {
		usage(err)
		return 2
	}
	limits := locktable.Limits{MaxWaiters: o.cfg.MaxWaiters, DefaultTimeout: o.cfg.DefaultTimeout}

	// The registry of clients by session is built first: the server
	// records its connections in it, and a mesh closes them through it.
	o.cfg.Clients = node.NewClients()
	var (
		backend  node.Backend
		m        *mesh.Mesh
		extra    []any
		figures  metrics.Node // what the node's metrics read at a scrape
		overview func() node.Overview
		// notReady says why the node is not ready ("" if it is), for
		// /readyz.
		notReady func() string
	)
	if o.mesh {
		var join []string
		for _, a := range strings.Split(o.join, ",") {
			if a = strings.TrimSpace(a); a != "" {
				join = append(join, a)
			}
		}
		mc := mesh.DefaultConfig()
		mc.ID, mc.ClientAddr, mc.GossipAddr, mc.PeerAddr = o.cfg.NodeID, l.Addr().String(), o.gossip, o.peer
		mc.Join, mc.Voter, mc.Expect, mc.DataDir = join, o.expect > 0, o.expect, o.dataDir
		mc.GossipKeys = o.keys
		if o.peerCert != "" {
			if mc.PeerTLS, err = peer.LoadTLS(o.peerCert, o.peerKey, o.peerCA, o.cfg.NodeID); err != nil {
				usage(err)
				return 2
			}
		}
		mc.Partitions, mc.Limits, mc.MaxTimeout = o.partitions, limits, o.cfg.MaxTimeout
		mc.MaxName, mc.MaxWait, mc.MaxPermits = o.cfg.MaxName, o.cfg.MaxWait, o.cfg.MaxPermits
		mc.MaxLocks, mc.MaxSessions, mc.MaxLocksPerSession = o.maxLocksTotal, o.maxSessions, o.cfg.MaxLocksPerSession
		mc.Lease, mc.HomeLease, mc.LostAfter = o.lease, o.homeLease, o.lostAfter
		mc.Clients, mc.Logger = o.cfg.Clients, log
		mm, err := metrics.NewMesh(reg)
		if err != nil {
			usage(err)
			return 2
		}
		mc.ObservePeer, mc.ObserveBatch = mm.PeerCall, mm.Batch
		if err := mc.Validate(); err != nil {
			usage(err)
			return 2
		}
		m, err = mesh.Start(mc)
		if err != nil {
			log.Error("cannot start the mesh", "err", err)
			return 1
		}
		defer m.Close()
		backend = m.Backend()
		figures = metrics.Node{Counts: m.Counts, Ready: m.Ready}
		if err := metrics.RegisterMeshFigures(reg, m.Figures); err != nil {
			usage(err)
			return 2
		}
		overview, notReady = m.Overview, m.NotReady
		extra = []any{"gossip", m.GossipAddr(), "peer", m.PeerAddr(), "voter", o.expect > 0, "expect", o.expect,
			"gossip_encrypted", len(o.keys) > 0, "peer_tls", o.peerCert != ""}
	} else {
		epoch, err := standaloneEpoch(o.dataDir)
		if err != nil {
			log.Error("cannot read the data dir", "dir", o.dataDir, "err", err)
			return 1
		}
		delay, err := startDelay(o.dataDir, o.cfg.MaxTimeout, time.Now())
		if err != nil {
			log.Error("cannot read the data dir", "dir", o.dataDir, "err", err)
			return 1
		}
		if delay > 0 {
			log.Warn("the last run ended with locks held (a crash, or a stop while sessions held locks): refusing grants for the lock-delay",
				"delay", delay.Round(time.Second))
		}
		set, err := partition.New(partition.Config{Partitions: o.partitions, Limits: limits, Epoch: epoch, AutoEpoch: true, GrantDelay: delay,
			MaxLocks: o.maxLocksTotal, MaxSessions: o.maxSessions, MaxLocksPerSession: o.cfg.MaxLocksPerSession})
		if err != nil {
			usage(err)
			return 2
		}
		defer set.Close()
		if o.dataDir != "" {
			// Runs after the server's shutdown (deferred later, run
			// earlier): only then is it known whether locks outlive it.
			defer func() {
				held := len(set.Holders()) > 0
				if err := stopDelay(o.dataDir, held, o.cfg.MaxTimeout, time.Now()); err != nil {
					log.Error("cannot record the stop in the data dir; the next start refuses grants for the lock-delay", "err", err)
				} else if held {
					log.Warn("stopping with locks held: the next start refuses grants for the lock-delay")
				}
			}()
		}
		local := &node.Local{Set: set, Home: o.cfg.NodeID, Addr: l.Addr().String()}
		backend, overview = local, local.Overview
		figures = metrics.Node{Counts: set.Counts}
		// A single node is ready while it serves, its start-up lock-delay
		// included: it serves every command but a grant meanwhile (as a
		// mesh serves a lost partition in its lock-delay, ready), and
		// there is no other node a balancer could send its clients to.
		notReady = func() string { return "" }
	}
	srv, err := node.NewServer(o.cfg, backend)
	if err != nil {
		usage(err)
		return 2
	}
	figures.Connections, figures.Accepted, figures.Refused, figures.Version = srv.Connections, srv.Accepted, srv.Refused, node.Version
	if err := metrics.RegisterNode(reg, figures); err != nil {
		usage(err)
		return 2
	}
	// Set once SIGTERM arrives: the node stops being ready before it
	// leaves the mesh and closes its clients, so that a balancer sends
	// no new ones.
	var shuttingDown atomic.Bool
	if o.httpAddr != "" {
		ready := func() (bool, string) {
			if shuttingDown.Load() {
				return false, "shutting down"
			}
			why := notReady()
			return why == "", why
		}
		counts := func(ctx context.Context) (web.Counts, error) {
			st, err := backend.Stats(ctx, o.cfg.Clients.Count())
			return web.Counts{Clients: st.Clients, Sessions: st.Sessions, Locks: st.Locks, Waiters: st.Waiters, Grants: st.Grants}, err
		}
		var busiest func(context.Context, bool, int) ([]web.Busy, error)
		if lister, ok := backend.(node.Lister); ok {
			busiest = func(ctx context.Context, byWaiters bool, limit int) ([]web.Busy, error) {
				return busiestOf(ctx, lister, byWaiters, limit)
			}
		}
		addr, stopHTTP, err := serveHTTP(o, web.Config{Gatherer: reg, Ready: ready, Overview: overview, Counts: counts, Profiles: o.profilesServed(),
			Busiest: busiest, ACL: o.cfg.ACL, RequireClientCert: o.tlsClientCA != "", Version: node.Version, Started: time.Now(), Logger: log})
		if err != nil {
			log.Error("cannot serve HTTP", "addr", o.httpAddr, "err", err)
			return 1
		}
		defer stopHTTP()
		extra = append(extra, "http", addr)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	log.Info("serving", append([]any{"addr", l.Addr().String(), "version", node.Version, "client_tls", o.tlsCert != ""}, extra...)...)

	select {
	case err := <-served:
		log.Error("serve failed", "err", err)
		return 1
	case <-ctx.Done():
	}
	stop()
	shuttingDown.Store(true)
	if m != nil {
		// Hand the partitions over while this node still proxies its
		// clients' commands; then close the clients, whose sessions the
		// other nodes resume.
		log.Info("leaving the mesh")
		lctx, cancel := context.WithTimeout(context.Background(), o.leave)
		if err := m.Leave(lctx); err != nil {
			log.Warn("leave cut short", "err", err)
		}
		cancel()
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdown)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown cut short", "err", err)
	}
	<-served
	log.Info("stopped")
	return 0
}

// standaloneEpoch is the epoch a single node's tokens start in: the wall
// clock in seconds, so tokens keep growing across restarts while the clock
// does, and with a data dir also above the last epoch used there, so they
// grow even if the clock goes back.
func standaloneEpoch(dir string) (uint64, error) {
	epoch := uint64(time.Now().Unix()) & 0x7fffffff
	if dir == "" {
		return epoch, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	path := dir + "/epoch"
	if b, err := os.ReadFile(path); err == nil {
		var last uint64
		if _, err := fmt.Sscan(string(b), &last); err == nil && last >= epoch {
			epoch = last + 1
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	if epoch > locktable.MaxEpoch {
		return 0, fmt.Errorf("epoch %d above the largest tokens can carry", epoch)
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return 0, err
	}
	fmt.Fprintln(f, epoch)
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, err
	}
	f.Close()
	if err := os.Rename(tmp, path); err != nil {
		return 0, err
	}
	return epoch, syncDir(dir)
}

// syncDir makes a rename or removal in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// A single node keeps its locks in memory: a run that ends while
// sessions hold locks (a crash, or a stop with locks held) loses grants
// whose holders may still act on them for up to their timeout. With a
// data dir, the next start refuses grants until no such session can be
// left, as a mesh does for a partition that lost both copies. Two files
// say so: "running" exists while a run goes on (a start that finds it
// follows a crash), and "lock-delay" holds the wall-clock time, in Unix
// nanoseconds, until which grants are refused, kept across further
// restarts until it has passed.
const (
	runningFile   = "running"
	lockDelayFile = "lock-delay"
)

// startDelay records in dir that a run has started, and returns how long
// it must refuse grants: until maxTimeout after now if the last run did
// not stop cleanly, or until a recorded lock-delay that has not passed.
func startDelay(dir string, maxTimeout time.Duration, now time.Time) (time.Duration, error) {
	if dir == "" {
		return 0, nil
	}
	until, err := readDelay(dir, now.Add(maxTimeout))
	if err != nil {
		return 0, err
	}
	if _, err := os.Stat(filepath.Join(dir, runningFile)); err == nil {
		until = later(until, now.Add(maxTimeout))
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	if until.After(now) {
		if err := writeSynced(dir, lockDelayFile, strconv.FormatInt(until.UnixNano(), 10)+"\n"); err != nil {
			return 0, err
		}
	}
	if err := writeSynced(dir, runningFile, strconv.Itoa(os.Getpid())+"\n"); err != nil {
		return 0, err
	}
	return max(until.Sub(now), 0), nil
}

// stopDelay records a clean stop: with locks still held, grants are
// refused until maxTimeout after now at the next start.
func stopDelay(dir string, held bool, maxTimeout time.Duration, now time.Time) error {
	if held {
		until, err := readDelay(dir, now.Add(maxTimeout))
		if err != nil {
			return err
		}
		until = later(until, now.Add(maxTimeout))
		if err := writeSynced(dir, lockDelayFile, strconv.FormatInt(until.UnixNano(), 10)+"\n"); err != nil {
			return err
		}
	}
	if err := os.Remove(filepath.Join(dir, runningFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return syncDir(dir)
}

// readDelay reads the recorded end of a lock-delay; zero if none. A file
// that does not parse (a torn write the rename should have prevented, an
// edit) counts as a delay ending at fallback.
func readDelay(dir string, fallback time.Time) (time.Time, error) {
	b, err := os.ReadFile(filepath.Join(dir, lockDelayFile))
	if errors.Is(err, os.ErrNotExist) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return fallback, nil
	}
	return time.Unix(0, ns), nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// writeSynced replaces dir/name with data, durably.
func writeSynced(dir, name, data string) error {
	path := filepath.Join(dir, name)
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

// busiestWait bounds the status page's gathering of the busiest names
// from every owner, so that a page refresh during a takeover shows the
// error rather than hang for the route's whole timeout.
const busiestWait = 5 * time.Second

// busiestOf lists the names held longest, or with byWaiters those with
// the longest queues, across the cluster, for the status page.
func busiestOf(ctx context.Context, l node.Lister, byWaiters bool, limit int) ([]web.Busy, error) {
	ctx, cancel := context.WithTimeout(ctx, busiestWait)
	defer cancel()
	q := node.LockQuery{Limit: limit, Order: node.ByHeld}
	if byWaiters {
		q.Order = node.ByWaiters
	}
	list, err := l.Locks(ctx, q)
	if err != nil {
		return nil, err
	}
	out := make([]web.Busy, 0, len(list.Locks))
	queued := map[string]bool{}
	for _, e := range list.Locks {
		if byWaiters {
			if e.Waiters == 0 {
				break // the rest have no queue either
			}
			// A name held shared, or a semaphore, is listed once per
			// holder, but it has one queue.
			if queued[e.Name] {
				continue
			}
			queued[e.Name] = true
		}
		out = append(out, web.Busy{Name: e.Name, HeldFor: e.HeldFor, Waiters: e.Waiters, Label: e.Label})
	}
	return out, nil
}

// serveHTTP serves the HTTP endpoint (package web) on its own listener,
// never on the client port: with -tls-cert over HTTPS with the client
// port's certificate, and with -tls-client-ca asking for a client
// certificate without requiring one in the handshake, so that a probe
// without one reaches /healthz and /readyz (the handler asks for it
// everywhere else). It returns the bound address and the stop, which
// joins the serving goroutine.
func serveHTTP(o options, cfg web.Config) (string, func(), error) {
	h, err := web.New(cfg)
	if err != nil {
		return "", nil, err
	}
	var tc *tls.Config
	if o.tlsCert != "" {
		if tc, err = clientTLS(o.tlsCert, o.tlsKey, o.tlsClientCA); err != nil {
			return "", nil, err
		}
		if tc.ClientCAs != nil {
			tc.ClientAuth = tls.VerifyClientCertIfGiven
		}
	}
	l, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		return "", nil, err
	}
	// Every request runs under base, which stop cancels, and is counted,
	// so that stop returns only once no handler runs (a CPU profile, a
	// status document gathering from the mesh) on a node going away.
	base, cancelBase := context.WithCancel(context.Background())
	var handlers inFlight
	hs := web.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !handlers.enter() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		defer handlers.leave()
		h.ServeHTTP(w, r)
	}), tc, cfg.Logger)
	hs.BaseContext = func(net.Listener) context.Context { return base }
	done := make(chan error, 1)
	go func() {
		if tc != nil {
			done <- hs.ServeTLS(l, "", "")
		} else {
			done <- hs.Serve(l)
		}
	}()
	addr := l.Addr().String()
	cfg.Logger.Info("serving HTTP", "http", addr, "tls", tc != nil, "client_certs", o.tlsClientCA != "", "acl", o.cfg.ACL != nil)
	return addr, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if hs.Shutdown(ctx) != nil {
			// A long request (a CPU profile) is cut short.
			cancelBase()
			hs.Close()
		}
		cancelBase()
		<-done
		handlers.closeAndWait()
	}, nil
}

// inFlight counts running handlers, and after closeAndWait admits none:
// unlike a WaitGroup's, its count may go up while a wait is under way.
type inFlight struct {
	mu     sync.Mutex
	n      int
	closed bool
	idle   chan struct{} // closed when n falls to 0 after closing
}

func (f *inFlight) enter() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.n++
	return true
}

func (f *inFlight) leave() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n--; f.n == 0 && f.idle != nil {
		close(f.idle)
		f.idle = nil
	}
}

func (f *inFlight) closeAndWait() {
	f.mu.Lock()
	f.closed = true
	if f.n == 0 {
		f.mu.Unlock()
		return
	}
	idle := make(chan struct{})
	f.idle = idle
	f.mu.Unlock()
	<-idle
}
