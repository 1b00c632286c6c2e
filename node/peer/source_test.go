package peer

import (
	"context"
	"net"
	"testing"
	"time"
)

func TestSource(t *testing.T) {
	cases := map[string]struct {
		listen net.Addr
		want   string
	}{
		"specific ip":   {&net.TCPAddr{IP: net.IPv4(127, 0, 0, 7), Port: 9}, "127.0.0.7:0"},
		"any ipv4":      {&net.TCPAddr{IP: net.IPv4zero, Port: 9}, ""},
		"any ipv6":      {&net.TCPAddr{IP: net.IPv6unspecified, Port: 9}, ""},
		"no ip":         {&net.TCPAddr{Port: 9}, ""},
		"not tcp":       {&net.UnixAddr{Name: "/x", Net: "unix"}, ""},
		"ipv6 loopback": {&net.TCPAddr{IP: net.IPv6loopback, Port: 9}, "[::1]:0"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := Source(tc.listen)
			if (got == nil) != (tc.want == "") || (got != nil && got.String() != tc.want) {
				t.Fatalf("Source(%v) = %v, want %q", tc.listen, got, tc.want)
			}
		})
	}
}

// remoteIP accepts one connection on ln and returns its peer's IP.
func remoteIP(t *testing.T, ln net.Listener) string {
	t.Helper()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.RemoteAddr().(*net.TCPAddr).IP.String()
}

// A node bound to one IP must also dial from it: firewall rules, and
// peers, tell nodes apart by address.
func TestDialsComeFromTheNodesAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	pool := NewPool(time.Second, Source(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}), nil)
	defer pool.Close()
	cx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	go pool.Get(ln.Addr().String()).Call(cx, mEcho, nil) // no answer: only the dial matters
	if ip := remoteIP(t, ln); ip != "127.0.0.2" {
		t.Errorf("pool dialled from %s, want 127.0.0.2", ip)
	}

	muxLn, err := net.Listen("tcp", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMux(muxLn, nil, nil)
	m.Serve(NewServer(&testHandler{}, nil), nil)
	defer m.Close()
	go func() {
		if nc, err := m.DialRaft(ln.Addr().String(), time.Second); err == nil {
			nc.Close()
		}
	}()
	if ip := remoteIP(t, ln); ip != "127.0.0.3" {
		t.Errorf("raft dialled from %s, want 127.0.0.3", ip)
	}
}
