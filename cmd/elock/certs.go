package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/elock/elock/cmd/pki"
)

// certValidity and caValidity are how long elock certs' certificates
// last.
const (
	certValidity = 365 * 24 * time.Hour
	caValidity   = 5 * 365 * 24 * time.Hour
)

// validName is a node id or client name: a DNS label's characters, as
// elockd's -node-id takes them.
var validName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// runCerts writes a CA (or uses the one already in -dir) and a
// certificate per node and per client, as consul tls ca create and
// consul tls cert create do.
func runCerts(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("elock certs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "where the files go (created if missing); a CA already there (ca.pem, ca-key.pem) signs the new certificates")
	nodes := fs.String("nodes", "", "node ids, comma-separated, each with its addresses if clients or peers reach it by them: n1=10.0.0.1+n1.example.com,n2=10.0.0.2")
	clients := fs.String("clients", "", "client names, comma-separated: their certificates' common names, for a client port with -tls-client-ca")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *dir == "" || *nodes == "" && *clients == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "elock certs: want -dir DIR and -nodes or -clients")
		fs.Usage()
		return exitUsage
	}
	specs, err := parseCertSpecs(*nodes, *clients)
	if err != nil {
		fmt.Fprintln(stderr, "elock certs:", err)
		return exitUsage
	}
	if err := writeCerts(*dir, specs, stdout); err != nil {
		fmt.Fprintln(stderr, "elock certs:", err)
		return exitSoftware
	}
	return exitOK
}

// certSpec is one certificate to write.
type certSpec struct {
	name  string
	hosts []string
	kind  pki.Kind
}

func parseCertSpecs(nodes, clients string) ([]certSpec, error) {
	var specs []certSpec
	seen := map[string]bool{"ca": true}
	add := func(s certSpec) error {
		if !validName.MatchString(s.name) {
			return fmt.Errorf("%q is not a name of [A-Za-z0-9._-]", s.name)
		}
		if seen[s.name] {
			return fmt.Errorf("%q is named twice (or is the CA's file name)", s.name)
		}
		seen[s.name] = true
		specs = append(specs, s)
		return nil
	}
	for _, n := range splitList(nodes) {
		id, hosts, _ := strings.Cut(n, "=")
		// Every node can be reached on its own machine by these.
		s := certSpec{name: id, hosts: []string{"localhost", "127.0.0.1"}, kind: pki.Node}
		for _, h := range strings.Split(hosts, "+") {
			if h = strings.TrimSpace(h); h != "" {
				s.hosts = append(s.hosts, h)
			}
		}
		if err := add(s); err != nil {
			return nil, err
		}
	}
	for _, c := range splitList(clients) {
		if err := add(certSpec{name: c, kind: pki.Client}); err != nil {
			return nil, err
		}
	}
	return specs, nil
}

// writeCerts writes the CA, if dir has none, and every spec's certificate
// and key; it refuses to replace a certificate that exists.
func writeCerts(dir string, specs []certSpec, stdout io.Writer) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	caCert, caKey := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	var ca *pki.CA
	cb, cerr := os.ReadFile(caCert)
	kb, kerr := os.ReadFile(caKey)
	switch {
	case cerr == nil && kerr == nil:
		var err error
		if ca, err = pki.LoadCA(cb, kb); err != nil {
			return fmt.Errorf("%s, %s: %w", caCert, caKey, err)
		}
		fmt.Fprintf(stdout, "using the CA in %s\n", caCert)
	case errors.Is(cerr, fs.ErrNotExist) && errors.Is(kerr, fs.ErrNotExist):
		var err error
		if ca, err = pki.NewCA("elock CA", caValidity); err != nil {
			return err
		}
		key, err := ca.KeyPEM()
		if err != nil {
			return err
		}
		if err := create(caKey, key); err != nil {
			return err
		}
		if err := create(caCert, ca.CertPEM()); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s (give it to every node and client) and %s (keep it apart: it signs certificates)\n", caCert, caKey)
	default:
		return fmt.Errorf("%s and %s: want both or neither", caCert, caKey)
	}
	for _, s := range specs {
		cert, key, err := ca.Issue(s.name, s.hosts, s.kind, certValidity)
		if err != nil {
			return err
		}
		cf, kf := filepath.Join(dir, s.name+".pem"), filepath.Join(dir, s.name+"-key.pem")
		if err := create(kf, key); err != nil {
			return err
		}
		if err := create(cf, cert); err != nil {
			return err
		}
		what := "client"
		if s.kind == pki.Node {
			what = "node"
		}
		fmt.Fprintf(stdout, "wrote %s and %s (%s %s; names %s)\n", cf, kf, what, s.name, strings.Join(append([]string{s.name}, s.hosts...), ", "))
	}
	return nil
}

// create writes a new file readable by its owner only; it never replaces
// one.
func create(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s exists; remove it to make a new one", path)
		}
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
