package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/elock/elock/testcluster/certs"
)

// loadTLS issues a certificate naming id from ca and loads it.
func loadTLS(t *testing.T, ca *certs.Set, id string) *TLS {
	t.Helper()
	cert, key := ca.Issue(t, id)
	sec, err := LoadTLS(cert, key, ca.CA, id)
	if err != nil {
		t.Fatal(err)
	}
	return sec
}

// startTLS serves the test handler on a mux secured with sec.
func startTLS(t *testing.T, sec *TLS) (*Mux, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMux(ln, sec, nil)
	m.Serve(NewServer(&testHandler{}, nil), nil)
	t.Cleanup(func() { m.Close() })
	return m, ln.Addr().String()
}

// With peer TLS, calls go through between nodes whose certificates come
// from the mesh's CA, and fail for a caller or a server without one: a
// plain connection, or a certificate from another CA.
func TestPeerTLSAdmitsOnlyTheMeshsCA(t *testing.T) {
	ca, other := certs.New(t), certs.New(t)
	_, addr := startTLS(t, loadTLS(t, ca, "n1"))
	call := func(sec *TLS, addr string) error {
		p := NewPool(2*time.Second, nil, sec)
		defer p.Close()
		got, err := p.Get(addr).Call(ctx(t), mEcho, []byte("hi"))
		if err == nil && string(got) != "echo:hi" {
			t.Fatalf("echo over TLS: %q", got)
		}
		return err
	}
	if err := call(loadTLS(t, ca, "n2"), addr); err != nil {
		t.Fatalf("a node of the mesh: %v", err)
	}
	if err := call(nil, addr); err == nil {
		t.Error("a plain caller was served")
	}
	if err := call(loadTLS(t, other, "n2"), addr); err == nil {
		t.Error("a caller with another CA's certificate was served")
	}
	_, plain := start(t, &testHandler{})
	if err := call(loadTLS(t, ca, "n2"), plain); err == nil {
		t.Error("a TLS caller accepted a server without TLS")
	}
	_, foreign := startTLS(t, loadTLS(t, other, "n1"))
	if err := call(loadTLS(t, ca, "n2"), foreign); err == nil {
		t.Error("a TLS caller accepted a server with another CA's certificate")
	}
}

// Raft's connections over the mux are TLS too.
func TestPeerTLSCarriesRaft(t *testing.T) {
	ca := certs.New(t)
	m, addr := startTLS(t, loadTLS(t, ca, "n1"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dialer := NewMux(ln, loadTLS(t, ca, "n2"), nil)
	defer dialer.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := m.RaftListener().Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, err := dialer.DialRaft(addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("vote")); err != nil {
		t.Fatal(err)
	}
	var s net.Conn
	select {
	case s = <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("no raft connection accepted")
	}
	defer s.Close()
	b := make([]byte, 4)
	if _, err := io.ReadFull(s, b); err != nil || string(b) != "vote" {
		t.Fatalf("raft bytes: %q %v", b, err)
	}
	plain := NewMux(ln, nil, nil)
	if c, err := plain.DialRaft(addr, 2*time.Second); err == nil {
		c.Write([]byte("vote"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Error("a plain raft connection was answered")
		}
		c.Close()
	}
}

// Prove accepts a node whose certificate names the id it claims, and
// refuses one that names another; LoadTLS refuses a certificate that does
// not name this node or is not the CA's.
func TestProveAndLoadCheckTheNodeID(t *testing.T) {
	ca, other := certs.New(t), certs.New(t)
	_, addr := startTLS(t, loadTLS(t, ca, "n1"))
	p := NewPool(2*time.Second, nil, loadTLS(t, ca, "n2"))
	defer p.Close()
	if err := p.Prove(addr, "n1"); err != nil {
		t.Fatalf("n1 proving n1: %v", err)
	}
	if err := p.Prove(addr, "n3"); !errors.Is(err, ErrNotProved) {
		t.Fatalf("n1 claiming n3: %v, want ErrNotProved", err)
	}
	if err := NewPool(time.Second, nil, nil).Prove(addr, "anything"); err != nil {
		t.Fatalf("without TLS there is nothing to prove: %v", err)
	}
	cert, key := ca.Issue(t, "n4")
	if _, err := LoadTLS(cert, key, ca.CA, "n5"); err == nil || !strings.Contains(err.Error(), "n5") {
		t.Errorf("a certificate naming n4 loaded for n5: %v", err)
	}
	if _, err := LoadTLS(cert, key, other.CA, "n4"); err == nil {
		t.Error("a certificate loaded against another CA")
	}
}

// A handler learns its caller's identity from the connection: over TLS,
// the names its certificate gives; over plain TCP, none, so any caller
// may act for any node.
func TestHandlersSeeTheirCallersCertificate(t *testing.T) {
	ca := certs.New(t)
	whoami := HandlerFunc(func(conn context.Context, _ Method, _ []byte, reply func([]byte, error)) {
		reply([]byte(fmt.Sprint(CallerIs(conn, "n2"), CallerIs(conn, "n3"))), nil)
	})
	serve := func(sec *TLS) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		m := NewMux(ln, sec, nil)
		m.Serve(NewServer(whoami, nil), nil)
		t.Cleanup(func() { m.Close() })
		return ln.Addr().String()
	}
	ask := func(sec *TLS, addr string) string {
		p := NewPool(2*time.Second, nil, sec)
		defer p.Close()
		got, err := p.Get(addr).Call(ctx(t), MinMethod, nil)
		if err != nil {
			t.Fatal(err)
		}
		return string(got)
	}
	if got := ask(loadTLS(t, ca, "n2"), serve(loadTLS(t, ca, "n1"))); got != "true false" {
		t.Errorf("n2 over TLS may act as n2, n3: %s, want true false", got)
	}
	if got := ask(nil, serve(nil)); got != "true true" {
		t.Errorf("a plain caller may act as n2, n3: %s, want true true", got)
	}
}

// A client's certificate from the mesh's CA (client authentication
// only, as the client port's are) opens no peer connection, in either
// direction: the CA may sign both, and a client must not reach the
// methods behind the client port's access control.
func TestPeerTLSRefusesAClientsCertificate(t *testing.T) {
	ca := certs.New(t)
	cert, key := ca.IssueClient(t, "app1")
	// LoadTLS wants the id among the DNS names: a client's certificate
	// names its common name.
	client, err := LoadTLS(cert, key, ca.CA, "app1")
	if err != nil {
		t.Fatal(err)
	}
	_, addr := startTLS(t, loadTLS(t, ca, "n1"))
	p := NewPool(2*time.Second, nil, client)
	defer p.Close()
	if _, err := p.Get(addr).Call(ctx(t), mEcho, []byte("hi")); err == nil {
		t.Error("a caller with a client's certificate was served")
	}
	_, impostor := startTLS(t, client)
	q := NewPool(2*time.Second, nil, loadTLS(t, ca, "n2"))
	defer q.Close()
	if _, err := q.Get(impostor).Call(ctx(t), mEcho, []byte("hi")); err == nil {
		t.Error("a node called a server with a client's certificate")
	}
}

// Pool.To reaches only the node it names: a server of the mesh's CA
// that answers at the address with another node's certificate gets
// nothing, so a node never takes its answers for the named node's.
func TestPoolToChecksTheNodeID(t *testing.T) {
	ca := certs.New(t)
	_, addr := startTLS(t, loadTLS(t, ca, "n1"))
	p := NewPool(2*time.Second, nil, loadTLS(t, ca, "n2"))
	defer p.Close()
	if got, err := p.To("n1", addr).Call(ctx(t), mEcho, []byte("hi")); err != nil || string(got) != "echo:hi" {
		t.Fatalf("to n1 at n1's address: %q %v", got, err)
	}
	_, err := p.To("n3", addr).Call(ctx(t), mEcho, []byte("hi"))
	if !errors.Is(err, ErrUnreachable) || !errors.Is(err, ErrNotProved) {
		t.Fatalf("to n3 at n1's address: %v, want ErrUnreachable wrapping ErrNotProved", err)
	}
}

// With TLS, Mux.Serve's admission sees every connection's certificate
// names, RPC and raft alike, and a connection it refuses is closed
// before any request is served.
func TestMuxAdmission(t *testing.T) {
	ca := certs.New(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMux(ln, loadTLS(t, ca, "n1"), nil)
	m.Serve(NewServer(&testHandler{}, nil), func(names []string) bool { return slices.Contains(names, "n2") })
	t.Cleanup(func() { m.Close() })
	addr := ln.Addr().String()
	call := func(id string) error {
		p := NewPool(2*time.Second, nil, loadTLS(t, ca, id))
		defer p.Close()
		_, err := p.Get(addr).Call(ctx(t), mEcho, []byte("hi"))
		return err
	}
	if err := call("n2"); err != nil {
		t.Fatalf("an admitted node: %v", err)
	}
	if err := call("n3"); err == nil {
		t.Fatal("a node the admission refuses was served")
	}
	lr, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dialer := NewMux(lr, loadTLS(t, ca, "n3"), nil)
	defer dialer.Close()
	if c, err := dialer.DialRaft(addr, 2*time.Second); err == nil {
		c.Write([]byte("vote"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var ne net.Error
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("a raft connection from a refused node: read %v, want it closed", err)
		}
		c.Close()
	}
}
