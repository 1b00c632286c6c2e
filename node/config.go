package node

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/wire"
)

// Config configures a Server. Start from DefaultConfig; every limit here
// is also a flag of elockd.
type Config struct {
	// NodeID names this node; sessions record it as their home.
	NodeID string
	// MaxLine is the longest request line, in bytes, terminator excluded.
	MaxLine int
	// MaxName is the longest lock name, in bytes.
	MaxName int
	// MaxWait is the largest SECS accepted by "lock NAME SECS".
	MaxWait time.Duration
	// MaxTimeout is the largest "set_timeout MS" accepted.
	MaxTimeout time.Duration
	// DefaultTimeout is how long a new session's locks outlive its
	// connection.
	DefaultTimeout time.Duration
	// MaxConns is the most client connections served at once; more are
	// answered "503 too many connections" and closed.
	MaxConns int
	// MaxConnsPerIP is the most client connections served at once from
	// one IP address; more are answered "503 too many connections from
	// this address" and closed. Zero: no cap per address.
	MaxConnsPerIP int
	// WriteTimeout is how long a client may leave its replies unread
	// (the socket's buffers full) before its connection is closed; its
	// session then detaches and times out as if it had hung up, instead
	// of a connection goroutine and the session's locks staying pinned
	// for as long as the client does nothing.
	WriteTimeout time.Duration
	// HandshakeTimeout bounds a TLS client's handshake, so that a client
	// that connects and says nothing holds no goroutine for long before
	// it has even proved it speaks TLS.
	HandshakeTimeout time.Duration
	// MaxLocksPerSession is the most locks one session may hold.
	MaxLocksPerSession int
	// MaxWaiters is the most requests that may wait for one lock.
	MaxWaiters int
	// MaxPermits is the most permits a semaphore may have (acquire's
	// LIMIT).
	MaxPermits int
	// MaxWatches is the most names one connection may watch.
	MaxWatches int
	// ACL, if set, limits what each client identity may do (see ACL);
	// nil lets every client do everything.
	ACL *ACL
	// Logger receives the server's log; nil discards it.
	Logger *slog.Logger
	// Clients, if set, is the registry the server records its clients'
	// sessions in, shared with a mesh; nil gives the server its own.
	Clients *Clients
	// Observer, if set, is told of every command and refusal, for
	// metrics; nil records nothing and costs nothing.
	Observer Observer
}

// Observer is told what the server's connections do, for metrics (package
// node/metrics implements it; this package does not know Prometheus).
// Its methods are called on a connection's goroutine, in the command's
// path: they must be quick (a few atomic adds), safe for concurrent use,
// and must never block.
type Observer interface {
	// Command reports one request: cmd is its verb (wire.Unknown for an
	// unknown verb; a known verb with the wrong arguments is itself), code the three-digit code
	// of its reply (0 if it got none: the connection broke), and took
	// the time from its parse to its reply being buffered or written.
	Command(cmd wire.Command, code int, took time.Duration)
	// Refused reports a request answered 503 or 504 (code) for reason:
	// not a definite answer, but nothing done, or an unknown outcome.
	Refused(code int, reason failure.Reason)
}

// The defaults, also the flags' defaults.
const (
	DefaultMaxName        = 250
	DefaultMaxWait        = 24 * time.Hour
	DefaultMaxTimeout     = 5 * time.Minute
	DefaultSessionTimeout = 30 * time.Second
	DefaultMaxConns       = 20000
	DefaultWriteTimeout   = 30 * time.Second
	DefaultHandshake      = 10 * time.Second
	// KeepAlive is the TCP keepalive period of client connections: a
	// client that vanishes without closing (its machine powered off, a
	// cable pulled) is found in about three periods, not the kernel's
	// default two hours, and its session starts to time out.
	KeepAlive                 = 15 * time.Second
	DefaultMaxLocksPerSession = 100000
	DefaultMaxWaiters         = 4096
	DefaultMaxPermits         = 65535
	DefaultMaxWatches         = 1024
	// DefaultMaxSessions and DefaultMaxLocksTotal bound what one node
	// keeps for all its clients together (elockd's -max-sessions and
	// -max-locks-total): far above what a fleet needs, low enough that
	// clients that open sessions or take locks without end are refused
	// long before the node runs out of memory (a lock costs a few hundred
	// bytes, a session record about as much).
	DefaultMaxSessions   = 1000000
	DefaultMaxLocksTotal = 10000000
)

// DefaultConfig returns the configuration of a stock elockd.
func DefaultConfig() Config {
	return Config{
		NodeID:             "local",
		MaxLine:            wire.DefaultMaxLine,
		MaxName:            DefaultMaxName,
		MaxWait:            DefaultMaxWait,
		MaxTimeout:         DefaultMaxTimeout,
		DefaultTimeout:     DefaultSessionTimeout,
		MaxConns:           DefaultMaxConns,
		WriteTimeout:       DefaultWriteTimeout,
		HandshakeTimeout:   DefaultHandshake,
		MaxLocksPerSession: DefaultMaxLocksPerSession,
		MaxWaiters:         DefaultMaxWaiters,
		MaxPermits:         DefaultMaxPermits,
		MaxWatches:         DefaultMaxWatches,
	}
}

// Validate reports every setting that cannot work, joined.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("node: "+format, args...))
		}
	}
	check(c.NodeID != "", "node id is empty")
	check(c.MaxLine >= 64 && c.MaxLine <= 1<<20, "max line %d out of range 64..1048576", c.MaxLine)
	check(c.MaxName >= 1 && c.MaxName < c.MaxLine, "max name %d out of range 1..max line", c.MaxName)
	check(c.MaxWait >= time.Second, "max wait %v is under 1s", c.MaxWait)
	check(c.MaxTimeout >= 0, "max timeout %v is negative", c.MaxTimeout)
	check(c.DefaultTimeout >= 0 && c.DefaultTimeout <= c.MaxTimeout,
		"default timeout %v out of range 0..max timeout %v", c.DefaultTimeout, c.MaxTimeout)
	check(c.MaxConns >= 1, "max conns %d is under 1", c.MaxConns)
	check(c.MaxConnsPerIP >= 0, "max conns per ip %d is negative", c.MaxConnsPerIP)
	check(c.WriteTimeout >= time.Second, "write timeout %v is under 1s", c.WriteTimeout)
	check(c.HandshakeTimeout > 0, "handshake timeout %v is not positive", c.HandshakeTimeout)
	check(c.MaxLocksPerSession >= 1, "max locks per session %d is under 1", c.MaxLocksPerSession)
	check(c.MaxWaiters >= 1, "max waiters %d is under 1", c.MaxWaiters)
	check(c.MaxWatches >= 0, "max watches %d is negative", c.MaxWatches)
	check(c.MaxPermits >= 1 && uint64(c.MaxPermits) <= math.MaxUint32, "max permits %d out of range 1..4294967295", c.MaxPermits)
	return errors.Join(errs...)
}
