package client

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults of the options.
const (
	DefaultDialTimeout = 5 * time.Second
	DefaultKeepalive   = 5 * time.Second
	DefaultMaxWait     = time.Hour
	DefaultResumeRetry = 2 * time.Second
)

// maxServerWait is the largest SECS a stock elockd accepts.
const maxServerWait = 24 * time.Hour

// Option configures Dial.
type Option func(*config)

type config struct {
	dialTimeout    time.Duration
	sessionTimeout time.Duration
	setTimeout     bool // sessionTimeout was given
	keepalive      time.Duration
	maxWait        time.Duration
	resumeRetry    time.Duration
	logger         *slog.Logger
	onLost         func(LostLock)
	tls            *tls.Config
	token          string
	events         chan<- SessionEvent
}

func defaultConfig() config {
	return config{
		dialTimeout: DefaultDialTimeout,
		keepalive:   DefaultKeepalive,
		maxWait:     DefaultMaxWait,
		resumeRetry: DefaultResumeRetry,
	}
}

// WithDialTimeout bounds each TCP connect and each connection handshake
// (default 5 s). It also bounds a keepalive probe and the clean-up that a
// cancelled Lock does.
func WithDialTimeout(d time.Duration) Option { return func(c *config) { c.dialTimeout = d } }

// WithSessionTimeout sets how long the server keeps the session's locks
// after its connection breaks (set_timeout). It is sent when the session
// is created and again after every resume. Without this option the
// server's default applies (30 s on a stock elockd). The server rounds to
// whole milliseconds and refuses values above its maximum (5 min by
// default), which makes Dial fail.
func WithSessionTimeout(d time.Duration) Option {
	return func(c *config) { c.sessionTimeout, c.setTimeout = d, true }
}

// WithKeepalive sets how long the connection may stay idle before the
// client probes it (default 5 s). Probing finds a dead connection while
// the application is idle, so that the session is resumed, or its lost
// locks reported, before the session timeout runs out. While a Lock waits
// on the server the connection is busy and not probed; TCP keepalive, at
// the same interval, watches it then. A value <= 0 turns probing off; the
// connection is then repaired by the next call.
func WithKeepalive(d time.Duration) Option { return func(c *config) { c.keepalive = d } }

// WithMaxWait caps the server-side wait of one "lock NAME SECS" request
// (default 1 h). A Lock whose context has no deadline, or a later one,
// waits in rounds of this length. It must be between 1 s and 24 h, and no
// more than the server's -max-wait.
func WithMaxWait(d time.Duration) Option { return func(c *config) { c.maxWait = d } }

// WithResumeRetry sets how long a resume keeps retrying when the server
// answers "403 cannot set conn id" (default 2 s). Right after a reconnect
// that answer usually means the server has not yet noticed that the old
// connection closed; if it lasts, the session is given up as lost.
func WithResumeRetry(d time.Duration) Option { return func(c *config) { c.resumeRetry = d } }

// WithTLS speaks TLS to the servers (elockd -tls-cert), with cfg: its
// RootCAs verify the servers, its Certificates are the client's own for
// a server that requires one (-tls-client-ca). Without a ServerName, each
// address's host is checked against the server's certificate.
func WithTLS(cfg *tls.Config) Option { return func(c *config) { c.tls = cfg } }

// WithToken authenticates every connection with token ("auth TOKEN"), for
// a server with access control (elockd -acl). The session belongs to the
// identity the token names.
func WithToken(token string) Option { return func(c *config) { c.token = token } }

// WithLogger sets the logger; nil, the default, discards.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithOnLost sets the function told about every lock the client finds it
// has lost: the session expired while disconnected, the resume failed, or
// a lock was gone or re-granted when the session was resumed. Calls come
// from one goroutine of the Client, in order, and never while the Client
// is busy with a command, so fn may call the Client's methods, except
// Close. A slow fn delays later reports, not the Client.
func WithOnLost(fn func(LostLock)) Option { return func(c *config) { c.onLost = fn } }

func (c *config) validate() error {
	var errs []error
	if c.dialTimeout <= 0 {
		errs = append(errs, fmt.Errorf("client: dial timeout %v is not positive", c.dialTimeout))
	}
	if c.setTimeout && c.sessionTimeout < 0 {
		errs = append(errs, fmt.Errorf("client: session timeout %v is negative", c.sessionTimeout))
	}
	if c.maxWait < time.Second || c.maxWait > maxServerWait {
		errs = append(errs, fmt.Errorf("client: max wait %v out of range 1s..24h", c.maxWait))
	}
	if c.resumeRetry < 0 {
		errs = append(errs, fmt.Errorf("client: resume retry %v is negative", c.resumeRetry))
	}
	return errors.Join(errs...)
}
