package node

import (
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/elock/elock/testcluster/certs"
	"github.com/elock/elock/testcluster/sockopt"
)

// A client connection gets a TCP keepalive of KeepAlive, probed three
// times, so a client that vanished without closing is found in about
// 45 s, not the kernel's default of two hours.
func TestClientConnectionsKeepAlive(t *testing.T) {
	ts := startServer(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The listener's own keepalive default is switched off first, so
	// that what is read below is newConn's doing.
	s.(*net.TCPConn).SetKeepAlive(false)
	newConn(ts.srv, s)
	secs := int(KeepAlive / time.Second)
	if on, idle, intvl, cnt := sockopt.KeepAlive(t, s); on != 1 || idle != secs || intvl != secs || cnt != 3 {
		t.Fatalf("keepalive %d, idle %d s, interval %d s, count %d; want on, %d, %d, 3", on, idle, intvl, cnt, secs, secs)
	}
}

// On a TLS client port, a connection that never completes its handshake
// is closed after HandshakeTimeout, instead of holding its goroutine for
// as long as the client likes.
func TestATLSClientThatSaysNothingIsClosed(t *testing.T) {
	ca := certs.New(t)
	certFile, keyFile := ca.Issue(t, "127.0.0.1")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, func(c *Config) { c.HandshakeTimeout = 200 * time.Millisecond })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go ts.srv.Serve(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}}))
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	start := time.Now()
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = nc.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("a silent connection: read %v, want it closed", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("closed after %v, want about 200ms", d)
	}
}
