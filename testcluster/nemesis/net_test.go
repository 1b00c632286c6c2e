package nemesis

import (
	"net"
	"testing"
	"time"
)

func TestNetRefusesOutsideItsNamespace(t *testing.T) {
	t.Setenv(envInNetns, "")
	if _, err := NewNet(); err == nil {
		t.Fatal("NewNet changed a firewall outside the private namespace")
	}
}

func TestNetCutsAndHeals(t *testing.T) {
	n, err := NewNet()
	if err != nil {
		t.Fatal(err)
	}
	defer n.Heal()
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	dial := func(from string) error {
		d := net.Dialer{Timeout: 300 * time.Millisecond, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", ln.Addr().String())
		if err == nil {
			c.Close()
		}
		return err
	}
	// udp reports whether a datagram from one address reaches another.
	udp := func(from, to string) bool {
		rc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(to)})
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		sc, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(from)}, rc.LocalAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		sc.Write([]byte("x"))
		rc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, _, err = rc.ReadFrom(make([]byte, 8))
		return err == nil
	}
	steps := []struct {
		name  string
		do    func() error
		tcpOK map[string]bool    // source -> may it connect to 127.0.0.2
		udpOK map[[2]string]bool // from, to -> delivered
	}{
		{"open", func() error { return nil },
			map[string]bool{"127.0.0.3": true, "127.0.0.4": true},
			map[[2]string]bool{{"127.0.0.2", "127.0.0.4"}: true, {"127.0.0.4", "127.0.0.2"}: true}},
		{"cut 3 from 2", func() error { return n.Cut([]string{"127.0.0.3"}, []string{"127.0.0.2"}) },
			map[string]bool{"127.0.0.3": false, "127.0.0.4": true},
			map[[2]string]bool{{"127.0.0.2", "127.0.0.3"}: false, {"127.0.0.3", "127.0.0.2"}: false, {"127.0.0.2", "127.0.0.4"}: true}},
		{"heal", n.Heal,
			map[string]bool{"127.0.0.3": true, "127.0.0.4": true},
			map[[2]string]bool{{"127.0.0.2", "127.0.0.3"}: true, {"127.0.0.3", "127.0.0.2"}: true}},
		{"drop 2 to 4, one way", func() error { return n.Drop("127.0.0.2", "127.0.0.4") },
			map[string]bool{"127.0.0.3": true, "127.0.0.4": false}, // the handshake's reply is lost
			map[[2]string]bool{{"127.0.0.2", "127.0.0.4"}: false, {"127.0.0.4", "127.0.0.2"}: true}},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		for from, ok := range st.tcpOK {
			if err := dial(from); (err == nil) != ok {
				t.Errorf("%s: TCP from %s: err %v, want connected %v", st.name, from, err, ok)
			}
		}
		for pair, ok := range st.udpOK {
			if got := udp(pair[0], pair[1]); got != ok {
				t.Errorf("%s: UDP %s -> %s delivered %v, want %v", st.name, pair[0], pair[1], got, ok)
			}
		}
	}
}
