package peer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"time"
)

// TLS is a node's peer security: every peer connection (RPC and raft,
// both directions) is TLS 1.3, and each end must show a certificate from
// the mesh's CA. A node's certificate names its node id (a DNS SAN), which
// LoadTLS checks against the id the node runs as. Nil means plain TCP.
type TLS struct {
	// ID is the node id this node's certificate names.
	ID   string
	cert tls.Certificate
	ca   *x509.CertPool
}

// LoadTLS reads a node's certificate and key and the mesh's CA (PEM
// files), and checks that the certificate is the CA's and names id.
func LoadTLS(certFile, keyFile, caFile, id string) (*TLS, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("peer TLS: %w", err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("peer TLS: %w", err)
	}
	ca := x509.NewCertPool()
	if !ca.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("peer TLS: %s holds no PEM certificate", caFile)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("peer TLS: %w", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("peer TLS: %s is not signed by the CA in %s: %w", certFile, caFile, err)
	}
	if !slices.Contains(leaf.DNSNames, id) {
		return nil, fmt.Errorf("peer TLS: %s names %q, not this node's id %q (a node's certificate needs its id as a DNS name)", certFile, leaf.DNSNames, id)
	}
	return &TLS{ID: id, cert: cert, ca: ca}, nil
}

// errNoCert: the other end showed no certificate.
var errNoCert = errors.New("peer TLS: no certificate")

// verify checks that the other end's certificate chains to the CA and
// is a node's: one for server authentication. The same CA may sign the
// client port's client certificates (as 'elock certs' does, and Consul's
// CA), which are for client authentication only, so a client's
// certificate never opens a peer connection. Any node of the mesh may
// call or answer any other, so it checks no name here; the node id a
// certificate names is what identifies its holder (see Pool.To, and the
// admission Mux.Serve takes).
func (t *TLS) verify(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errNoCert
	}
	opts := x509.VerifyOptions{Roots: t.ca, Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(opts)
	return err
}

// server is the configuration of accepted connections: a client
// certificate from the CA is required.
func (t *TLS) server() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{t.cert},
		ClientAuth:   tls.RequireAnyClientCert,
		// RequireAnyClientCert plus this check, rather than
		// RequireAndVerifyClientCert, so that both directions verify alike.
		VerifyConnection: t.verify,
	}
}

// client is the configuration of dialled connections: the server's
// certificate must come from the CA. Its name is checked by verify, not
// against the address dialled, which is an IP.
func (t *TLS) client() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{t.cert},
		InsecureSkipVerify: true, // verified by VerifyConnection
		VerifyConnection:   t.verify,
	}
}

// wrap makes a dialled connection a TLS client, its handshake done
// within timeout, and, when want is not empty, checks that the other
// end's certificate names node want; with no TLS it returns nc as it is.
func (t *TLS) wrap(nc net.Conn, timeout time.Duration, want string) (net.Conn, error) {
	if t == nil {
		return nc, nil
	}
	tc := tls.Client(nc, t.client())
	tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		nc.Close()
		return nil, err
	}
	tc.SetDeadline(time.Time{})
	if want != "" {
		if names := tc.ConnectionState().PeerCertificates[0].DNSNames; !slices.Contains(names, want) {
			tc.Close()
			return nil, fmt.Errorf("%w: %s answered with a certificate for %q, not node %q", ErrNotProved, nc.RemoteAddr(), names, want)
		}
	}
	return tc, nil
}

// CallerNames returns the DNS names of the certificate of the caller
// whose connection context is ctx, and false on a mesh without peer TLS,
// where nobody's identity is known.
func CallerNames(ctx context.Context) ([]string, bool) {
	names, ok := ctx.Value(callerKey{}).([]string)
	return names, ok
}

// callerKey keys the names a caller's certificate gives, in the context a
// Handler gets for its connection.
type callerKey struct{}

// WithCaller returns ctx carrying the names of a caller's certificate, as
// ServeConn does for a TLS connection (tests use it to play a caller).
func WithCaller(ctx context.Context, names ...string) context.Context {
	return context.WithValue(ctx, callerKey{}, names)
}

// CallerIs reports whether the caller of the request whose connection
// context is ctx may act as node id: its certificate names id, or, on a
// mesh without peer TLS, nobody's identity is known and every caller
// may. A handler that acts for a role (the owner replicating, a node
// renewing its own lease) checks the role's node with it.
func CallerIs(ctx context.Context, id string) bool {
	names, ok := CallerNames(ctx)
	return !ok || slices.Contains(names, id)
}

// callerNames are the DNS names of a TLS connection's client
// certificate; ok is false for a plain connection.
func callerNames(nc net.Conn) (names []string, ok bool) {
	var tc *tls.Conn
	switch c := nc.(type) {
	case tlsServer:
		tc = c.Conn
	case *tls.Conn:
		tc = c
	default:
		return nil, false
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return []string{}, true // verified TLS without a certificate: nobody
	}
	return certs[0].DNSNames, true
}
