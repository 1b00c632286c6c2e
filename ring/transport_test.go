package ring

import (
	"net"
	"testing"
	"time"
)

// Gossip's TCP dials must come from the gossip IP, like its UDP packets.
func TestTransportDialsFromGossipIP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, tc := range []struct{ host, want string }{
		{"127.0.0.9", "127.0.0.9"},
		{"0.0.0.0", "127.0.0.1"}, // every interface: the kernel's choice
	} {
		tr, err := newTransport(tc.host, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tr.GetAutoBindPort() == 0 {
			t.Errorf("%s: no port picked", tc.host)
		}
		go func() {
			if c, err := tr.DialTimeout(ln.Addr().String(), time.Second); err == nil {
				c.Close()
			}
		}()
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if ip := c.RemoteAddr().(*net.TCPAddr).IP.String(); ip != tc.want {
			t.Errorf("bound to %s: dialled from %s, want %s", tc.host, ip, tc.want)
		}
		c.Close()
		tr.Shutdown()
	}
}
