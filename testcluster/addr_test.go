package testcluster

import (
	"net"
	"strings"
	"testing"
	"time"
)

func TestReserveBlockUnique(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	var blocks []*block
	defer func() {
		for _, b := range blocks {
			b.release()
		}
	}()
	for range 100 {
		b, err := reserveBlock()
		if err != nil {
			t.Fatal(err)
		}
		blocks = append(blocks, b)
		if seen[b.String()] {
			t.Fatalf("block %s reserved twice", b)
		}
		seen[b.String()] = true
		if b.a < 10 || b.a > 250 {
			t.Errorf("block %s: second octet outside 10..250", b)
		}
	}
	// A reserved block cannot be reserved again, by this process or another.
	b := blocks[0]
	if l, err := net.Listen("tcp", b.l.Addr().String()); err == nil {
		l.Close()
		t.Fatalf("block %s: reservation %s bound twice", b, b.l.Addr())
	}
	if got, want := b.ip(0), strings.TrimSuffix(b.String(), "0/24")+"1"; got != want {
		t.Errorf("ip(0) = %s, want %s", got, want)
	}
	if got := b.ip(maxNodes - 1); !strings.HasSuffix(got, ".253") {
		t.Errorf("ip(%d) = %s, want .253", maxNodes-1, got)
	}
}

func TestPickAddrs(t *testing.T) {
	t.Parallel()
	b, err := reserveBlock()
	if err != nil {
		t.Fatal(err)
	}
	defer b.release()
	for i := range 30 {
		ip := b.ip(i % 3)
		a, err := pickAddrs(ip)
		if err != nil {
			t.Fatal(err)
		}
		ports := map[string]bool{}
		for _, addr := range []string{a.client, a.gossip, a.peer} {
			host, port, err := net.SplitHostPort(addr)
			if err != nil || host != ip || port == "0" {
				t.Fatalf("address %q: host %q port %q err %v, want a port on %s", addr, host, port, err, ip)
			}
			if ports[port] {
				t.Fatalf("%+v: port %s given twice", a, port)
			}
			ports[port] = true
		}
		// Every port is free again, all at once, as a node binds them,
		// and the gossip port on both TCP and UDP. A child that another
		// test forks may hold a copy of a probe for a moment (see
		// pickAddrs), so a bind may take a few tries.
		var held []interface{ Close() error }
		for _, addr := range []string{a.client, a.gossip, a.peer} {
			l, err := retryBind(func() (interface{ Close() error }, error) { return net.Listen("tcp", addr) })
			if err != nil {
				t.Fatalf("TCP %s: %v", addr, err)
			}
			held = append(held, l)
		}
		u, err := retryBind(func() (interface{ Close() error }, error) { return net.ListenPacket("udp", a.gossip) })
		if err != nil {
			t.Fatalf("UDP %s: %v", a.gossip, err)
		}
		held = append(held, u)
		for _, c := range held {
			c.Close()
		}
	}
}

func retryBind(bind func() (interface{ Close() error }, error)) (interface{ Close() error }, error) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		c, err := bind()
		if err == nil || time.Now().After(deadline) {
			return c, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}
