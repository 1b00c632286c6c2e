package main

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/elock/elock/testcluster/wait"
)

// floor starts three nodes in this process on ports the OS picks and
// returns their client addresses.
func floor(t *testing.T, direct, chain bool) ([nodes]*node, [nodes]string) {
	t.Helper()
	var ns [nodes]*node
	var peerAddrs, clientAddrs [nodes]string
	for i := range nodes {
		pl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pl.Close() })
		peerAddrs[i] = pl.Addr().String()
		ns[i] = newNode(i, direct, chain, pl)
	}
	for i := range nodes {
		for j := range nodes {
			if i == j {
				continue
			}
			nc, err := net.Dial("tcp", peerAddrs[j])
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { nc.Close() })
			ns[i].connect(j, nc)
		}
		cl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		clientAddrs[i] = cl.Addr().String()
		go func() { _ = ns[i].serveClients(cl) }()
	}
	return ns, clientAddrs
}

type conn struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dial(t *testing.T, addr string) *conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &conn{t, nc, bufio.NewReader(nc)}
}

func (c *conn) send(line string) {
	c.t.Helper()
	if _, err := c.nc.Write([]byte(line + "\r\n")); err != nil {
		c.t.Fatal(err)
	}
}

func (c *conn) read() string {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("reading a reply: %v", err)
	}
	return strings.TrimRight(line, "\r\n")
}

func (c *conn) do(line string) string {
	c.t.Helper()
	c.send(line)
	return c.read()
}

// A name owned by each node, so that every request below crosses to
// another node from at least two of the three homes.
func namesByOwner() [nodes]string {
	var names [nodes]string
	for k := 0; ; k++ {
		name := fmt.Sprintf("name-%d", k)
		if o := ownerOf([]byte(name)); names[o] == "" {
			names[o] = name
		}
		if names[0] != "" && names[1] != "" && names[2] != "" {
			return names
		}
	}
}

// The floor answers as elock does through every hop: a name held by a
// client of one node is refused to a client of another, queues a waiter,
// and passes to it when its holder unlocks, whichever node owns it.
func TestTheFloorHandsALockOverAcrossNodes(t *testing.T) {
	for _, mode := range []struct {
		name          string
		direct, chain bool
	}{{"batched", false, false}, {"direct", true, false}, {"chain", false, true}} {
		t.Run(mode.name, func(t *testing.T) {
			ns, addrs := floor(t, mode.direct, mode.chain)
			for o, name := range namesByOwner() {
				holder := dial(t, addrs[(o+1)%nodes])
				other := dial(t, addrs[(o+2)%nodes])
				if r := holder.do("lock " + name); r != "200 Acquired" {
					t.Fatalf("owner %d: lock -> %q", o, r)
				}
				if r := other.do("lock " + name); r != "409 Unavailable" {
					t.Fatalf("owner %d: lock of a held name from another node -> %q", o, r)
				}
				other.send("lock " + name + " 5")
				wait.For(t, 5*time.Second, "the waiter queued at the owner", func() bool {
					ns[o].omu.Lock()
					defer ns[o].omu.Unlock()
					st := ns[o].locks[name]
					return st != nil && len(st.queue) == 1
				})
				if r := holder.do("unlock " + name); r != "200 Unlocked" {
					t.Fatalf("owner %d: unlock -> %q", o, r)
				}
				if r := other.read(); r != "200 Acquired" {
					t.Fatalf("owner %d: the waiter got %q, want the hand-over", o, r)
				}
				if r := other.do("unlock " + name); r != "200 Unlocked" {
					t.Fatalf("owner %d: the waiter's unlock -> %q", o, r)
				}
				if r := holder.do("unlock " + name); r != "403 not held" {
					t.Fatalf("owner %d: unlock of a free name -> %q", o, r)
				}
			}
		})
	}
}

// A lock takes elock's hops: from a home that is neither owner nor
// replica, one request to the owner, one replicate to the replica, one
// acknowledgement back, one result to the home.
func TestALockTakesTheMeshsHops(t *testing.T) {
	for _, chain := range []bool{false, true} {
		t.Run(fmt.Sprintf("chain=%v", chain), func(t *testing.T) {
			ns, addrs := floor(t, false, chain)
			for o, name := range namesByOwner() {
				replica, home := (o+1)%nodes, (o+2)%nodes
				before := func(i int, kind byte) uint64 { return ns[i].frames[kind].Load() }
				want := map[[2]int]uint64{
					{o, int(kRequest)}: before(o, kRequest) + 1, {replica, int(kReplicate)}: before(replica, kReplicate) + 1,
					{o, int(kAck)}: before(o, kAck) + 1, {home, int(kResult)}: before(home, kResult) + 1,
				}
				if r := dial(t, addrs[home]).do("lock " + name); r != "200 Acquired" {
					t.Fatalf("owner %d: lock -> %q", o, r)
				}
				wait.For(t, 5*time.Second, "every hop's frame", func() bool {
					for k, n := range want {
						if ns[k[0]].frames[k[1]].Load() != n {
							return false
						}
					}
					return true
				})
			}
		})
	}
}
