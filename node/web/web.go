// Package web is a node's HTTP endpoint: Prometheus metrics, health and
// readiness probes, a status page a person reads, and Go's profiles.
//
// It holds no state of its own beyond what its Config passes in: the
// registry, the readiness condition, the node's overview and counts, and
// the access control. Serving it (the listener, TLS, start and stop) is
// the caller's; NewServer gives an http.Server with bounded timeouts and
// headers.
//
// Access: /healthz and /readyz answer anyone, since probes carry no
// credentials. With an ACL, every other route needs an identity (a
// verified client certificate's common name, or "Authorization: Bearer
// TOKEN" with a token of the ACL) that may read something (401 without
// one, 403 if it may read nothing); the profiles need read rights on
// every name, because a heap profile or a goroutine dump shows them all.
// With RequireClientCert (a client CA is configured), those routes also
// need a verified client certificate.
package web

import (
	"context"
	"crypto/tls"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/elock/elock/node"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Busy is one of the busiest names: held longest, or longest queues.
type Busy struct {
	Name    string        `json:"name"`
	HeldFor time.Duration `json:"-"`
	Waiters int           `json:"waiters"`
	Label   string        `json:"label,omitempty"`
}

// Counts are the lock counts the page shows, over the whole cluster.
type Counts struct {
	Clients  int    `json:"clients"`
	Sessions int    `json:"sessions"`
	Locks    int    `json:"locks"`
	Waiters  int    `json:"waiters"`
	Grants   uint64 `json:"grants"`
}

// Config is what the handler serves. Gatherer, Ready and Overview are
// required.
type Config struct {
	// Gatherer is served at /metrics, and the page reads the refusal
	// counters (elock_refusals_total) from it.
	Gatherer prometheus.Gatherer
	// Ready reports whether the node is ready, and if not, why.
	Ready func() (ready bool, reason string)
	// Overview describes the node and the cluster as it sees them.
	Overview func() node.Overview
	// Counts returns the lock counts; nil: the page shows none.
	Counts func(ctx context.Context) (Counts, error)
	// Busiest returns up to limit held names, the longest held first, or
	// with byWaiters the longest queues first; nil: the page says the
	// list is not available.
	Busiest func(ctx context.Context, byWaiters bool, limit int) ([]Busy, error)
	// ACL limits who may see what; nil: whoever reaches the endpoint.
	ACL *node.ACL
	// RequireClientCert: every route but the probes needs a verified
	// client certificate (the server asks for one but lets a probe
	// through without).
	RequireClientCert bool
	// Profiles serves /debug/pprof/; without it those routes answer 403.
	// elockd turns it off for an endpoint beyond loopback that has no way
	// to tell who asks (no -acl, no client certificates): a CPU profile
	// or a trace is a lever on the node, and its command line may hold a
	// gossip key.
	Profiles bool
	// Version and Started are shown as this node's version and uptime.
	Version string
	Started time.Time
	Logger  *slog.Logger
}

// Validate reports what is missing.
func (c Config) Validate() error {
	var errs []error
	if c.Gatherer == nil {
		errs = append(errs, errors.New("web: no Gatherer"))
	}
	if c.Ready == nil {
		errs = append(errs, errors.New("web: no Ready"))
	}
	if c.Overview == nil {
		errs = append(errs, errors.New("web: no Overview"))
	}
	return errors.Join(errs...)
}

//go:embed static
var static embed.FS

// BusiestLimit is how many of the busiest names the page shows, each way.
const BusiestLimit = 10

// handler serves the routes of a Config.
type handler struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux
	// statuses admits maxStatuses status documents at once: each gathers
	// the busiest names from every owner of the cluster.
	statuses chan struct{}
}

// maxStatuses bounds the status documents served at once; more are
// answered 503.
const maxStatuses = 2

// bounded serves next while fewer than maxStatuses requests are in it,
// and 503 otherwise.
func (h *handler) bounded(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case h.statuses <- struct{}{}:
			defer func() { <-h.statuses }()
			next.ServeHTTP(w, r)
		default:
			w.Header().Set("Retry-After", "1")
			http.Error(w, "busy: too many status requests in progress", http.StatusServiceUnavailable)
		}
	})
}

// New returns the endpoint's handler.
func New(cfg Config) (http.Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	h := &handler{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), statuses: make(chan struct{}, maxStatuses)}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.cfg.Started.IsZero() {
		h.cfg.Started = time.Now()
	}
	sub, err := fs.Sub(static, "static")
	if err != nil {
		return nil, err
	}
	files := http.FileServerFS(sub)
	metrics := promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{
		ErrorLog: slogPrinter{h.log}, ErrorHandling: promhttp.ContinueOnError, MaxRequestsInFlight: 4,
	})

	h.mux.HandleFunc("GET /healthz", h.healthz)
	h.mux.HandleFunc("GET /readyz", h.readyz)
	h.mux.Handle("GET /metrics", h.need(mayList, metrics))
	h.mux.Handle("GET /status.json", h.need(mayList, h.bounded(http.HandlerFunc(h.status))))
	h.mux.Handle("GET /{$}", h.need(mayList, files))
	h.mux.Handle("GET /status.js", h.need(mayList, files))
	h.mux.Handle("GET /status.css", h.need(mayList, files))
	for path, f := range map[string]http.HandlerFunc{
		"/debug/pprof/": pprof.Index, "/debug/pprof/cmdline": pprof.Cmdline, "/debug/pprof/profile": pprof.Profile,
		"/debug/pprof/symbol": pprof.Symbol, "/debug/pprof/trace": pprof.Trace,
	} {
		if !cfg.Profiles {
			f = func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "profiles are not served here: beyond loopback they need -acl or -tls-client-ca, to know who asks (or -insecure)", http.StatusForbidden)
			}
		}
		h.mux.Handle("GET "+path, h.need(mayReadAll, f))
	}
	return h, nil
}

// maxBody bounds what a request may send: every route is a GET, so
// nothing is read, but a body is never buffered either way.
const maxBody = 4 << 10

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	// The page loads only its own script and style, and is never framed.
	w.Header().Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
	h.mux.ServeHTTP(w, r)
}

func (h *handler) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

func (h *handler) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	ready, reason := h.cfg.Ready()
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(reason + "\n"))
		return
	}
	w.Write([]byte("ready\n"))
}

// A rule says whether an identity may use a route.
type rule func(a *node.ACL, id string) bool

func mayList(a *node.ACL, id string) bool    { return a.MayList(id) }
func mayReadAll(a *node.ACL, id string) bool { return a.MayReadAll(id) }

type identityKey struct{}

// need admits a request whose identity the rule allows, and records the
// identity for the handler (the busiest names are filtered by it).
func (h *handler) need(allowed rule, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cn, certified := certName(r.TLS)
		if h.cfg.RequireClientCert && !certified {
			deny(w, http.StatusUnauthorized, "a client certificate is required")
			return
		}
		if h.cfg.ACL == nil {
			next.ServeHTTP(w, r)
			return
		}
		id := cn
		if !certified {
			tok, ok := bearer(r)
			if !ok {
				deny(w, http.StatusUnauthorized, "an identity is required: a client certificate, or Authorization: Bearer TOKEN")
				return
			}
			if id, ok = h.cfg.ACL.IdentityOf(tok); !ok {
				deny(w, http.StatusUnauthorized, "unknown token")
				return
			}
		}
		if !allowed(h.cfg.ACL, id) {
			deny(w, http.StatusForbidden, id+" may not read this")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
	})
}

// certName is the identity of a verified client certificate: its common
// name, if that has the form of an identity (as at the client port).
func certName(cs *tls.ConnectionState) (string, bool) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return "", false
	}
	cn := cs.PeerCertificates[0].Subject.CommonName
	return cn, node.ValidIdentity(cn)
}

func bearer(r *http.Request) (string, bool) {
	v := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

func deny(w http.ResponseWriter, code int, msg string) {
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="elock"`)
	}
	http.Error(w, msg, code)
}

// slogPrinter hands promhttp's errors to the logger.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) {
	p.log.Warn("cannot gather metrics", "err", fmt.Sprint(v...))
}

// NewServer returns an http.Server for h whose clients cannot hold a
// connection or memory without bound: headers must arrive within 5 s and
// stay under 16 KiB, and an idle connection is closed after a minute.
// The write timeout leaves room for a 30 s CPU profile (pprof's
// default), which pprof refuses if the timeout is shorter.
func NewServer(h http.Handler, tc *tls.Config, log *slog.Logger) *http.Server {
	s := &http.Server{
		Handler:           h,
		TLSConfig:         tc,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      65 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	if log != nil {
		// Debug: anyone on the network can make a handshake fail.
		s.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	}
	return s
}

// status serves the document the page renders.
func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	id, identified := identity(r.Context())
	doc := h.document(ctx, id, identified)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(doc)
}

func identity(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(identityKey{}).(string)
	return id, ok
}
