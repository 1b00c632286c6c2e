// Command elockd is the elock lock server.
//
// With no flags it serves the elock protocol on 127.0.0.1:11400 as a
// single node. Run "elockd -h" for every flag.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/elock/elock/node"
	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// options are the parsed flags.
type options struct {
	listen     string
	debugAddr  string
	nodeID     string
	logLevel   string
	shutdown   time.Duration
	version    bool
	partitions int
	cfg        node.Config
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	o := options{cfg: node.DefaultConfig()}
	fs := flag.NewFlagSet("elockd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:11400", "client address (host:port); binding beyond loopback is your explicit choice")
	fs.StringVar(&o.debugAddr, "debug-addr", "", "serve Go profiles at /debug/pprof/ on this address (default: off)")
	fs.StringVar(&o.nodeID, "node-id", "", "this node's id (default: derived from -listen)")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error (debug logs every command)")
	fs.DurationVar(&o.shutdown, "shutdown-timeout", 10*time.Second, "how long SIGTERM waits for connections to finish")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	fs.IntVar(&o.partitions, "partitions", partition.DefaultPartitions, "partitions of the lock space")
	fs.IntVar(&o.cfg.MaxLine, "max-line", o.cfg.MaxLine, "longest request line in bytes, terminator excluded")
	fs.IntVar(&o.cfg.MaxName, "max-name", o.cfg.MaxName, "longest lock name in bytes")
	fs.DurationVar(&o.cfg.MaxWait, "max-wait", o.cfg.MaxWait, "largest SECS accepted by 'lock NAME SECS'")
	fs.DurationVar(&o.cfg.MaxTimeout, "max-timeout", o.cfg.MaxTimeout, "largest 'set_timeout MS' accepted")
	fs.DurationVar(&o.cfg.DefaultTimeout, "session-timeout", o.cfg.DefaultTimeout, "how long a session's locks outlive its connection, until set_timeout")
	fs.IntVar(&o.cfg.MaxConns, "max-conns", o.cfg.MaxConns, "most client connections at once")
	fs.IntVar(&o.cfg.MaxLocksPerSession, "max-locks", o.cfg.MaxLocksPerSession, "most locks one session may hold")
	fs.IntVar(&o.cfg.MaxWaiters, "max-waiters", o.cfg.MaxWaiters, "most requests waiting for one lock")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	o.cfg.NodeID = o.nodeID
	return o, nil
}

func newLogger(level string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("bad -log-level %q: %w", level, err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
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
	log, err := newLogger(o.logLevel, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "elockd:", err)
		return 2
	}
	o.cfg.Logger = log
	l, err := net.Listen("tcp", o.listen)
	if err != nil {
		log.Error("cannot listen", "addr", o.listen, "err", err)
		return 1
	}
	defer l.Close()
	if o.cfg.NodeID == "" {
		// The client address is unique among the nodes of one machine and
		// stable across restarts, which is what a node id must be.
		o.cfg.NodeID = l.Addr().String()
	}
	if err := o.cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "elockd:", err)
		return 2
	}
	set, err := partition.New(partition.Config{
		Partitions: o.partitions,
		Limits:     locktable.Limits{MaxWaiters: o.cfg.MaxWaiters, DefaultTimeout: o.cfg.DefaultTimeout},
		Epoch:      1,
		AutoEpoch:  true,
	})
	if err != nil {
		fmt.Fprintln(stderr, "elockd:", err)
		return 2
	}
	defer set.Close()

	backend := &node.Local{Set: set, Home: o.cfg.NodeID, Addr: l.Addr().String()}
	srv, err := node.NewServer(o.cfg, backend)
	if err != nil {
		fmt.Fprintln(stderr, "elockd:", err)
		return 2
	}

	if o.debugAddr != "" {
		stopDebug, err := serveDebug(o.debugAddr, log)
		if err != nil {
			log.Error("cannot serve debug endpoints", "addr", o.debugAddr, "err", err)
			return 1
		}
		defer stopDebug()
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	log.Info("serving", "addr", l.Addr().String(), "node", o.cfg.NodeID, "version", node.Version)

	select {
	case err := <-served:
		log.Error("serve failed", "err", err)
		return 1
	case <-ctx.Done():
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

// serveDebug serves the profiling endpoints on their own listener, never
// on the client port.
func serveDebug(addr string, log *slog.Logger) (func(), error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(l)
	log.Info("serving debug endpoints", "addr", l.Addr().String())
	return func() { hs.Close() }, nil
}
