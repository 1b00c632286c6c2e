// Package certs writes a throwaway certificate authority and
// certificates signed by it, for tests that run elock over TLS.
package certs

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/elock/elock/cmd/pki"
)

// Set is where one CA and its certificates were written.
type Set struct {
	Dir string
	CA  string // the CA's certificate (PEM)

	ca *pki.CA
}

// New writes a new CA under a temporary directory of tb.
func New(tb testing.TB) *Set {
	tb.Helper()
	ca, err := pki.NewCA("elock test CA", 24*time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	s := &Set{Dir: tb.TempDir(), ca: ca}
	s.CA = s.write(tb, "ca.pem", ca.CertPEM())
	return s
}

// Issue writes a certificate for name (its common name and a DNS name,
// plus an IP address if name is one, and 127.0.0.1 and localhost), good
// for servers and clients, and returns the files of the certificate and
// of its key. It may be called from any goroutine.
func (s *Set) Issue(tb testing.TB, name string) (certFile, keyFile string) {
	tb.Helper()
	cert, key, err := s.ca.Issue(name, []string{name, "127.0.0.1", "localhost"}, pki.Node, 24*time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return s.write(tb, name+".pem", cert), s.write(tb, name+"-key.pem", key)
}

// IssueClient writes a client's certificate for name (client
// authentication only, as 'elock certs -clients' makes), and returns the
// files of the certificate and of its key.
func (s *Set) IssueClient(tb testing.TB, name string) (certFile, keyFile string) {
	tb.Helper()
	cert, key, err := s.ca.Issue(name, nil, pki.Client, 24*time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return s.write(tb, name+".pem", cert), s.write(tb, name+"-key.pem", key)
}

func (s *Set) write(tb testing.TB, name string, b []byte) string {
	tb.Helper()
	p := filepath.Join(s.Dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}
