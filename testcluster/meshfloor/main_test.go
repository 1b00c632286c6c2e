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
func floor(t *testing.T, direct, chain, plumbed, split bool) ([nodes]*node, [nodes]string) {
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
		ns[i] = newNode(i, direct, chain, plumbed, split, pl)
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

// modes are the floor's ways of sending.
var modes = []struct {
	name                          string
	direct, chain, plumbed, split bool
}{
	{name: "batched"}, {name: "direct", direct: true}, {name: "chain", chain: true},
	{name: "plumbed", plumbed: true}, {name: "split", split: true},
}

// The floor answers as elock does through every hop: a name held by a
// client of one node is refused to a client of another, queues a waiter,
// and passes to it when its holder unlocks, whichever node owns it.
func TestTheFloorHandsALockOverAcrossNodes(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			ns, addrs := floor(t, mode.direct, mode.chain, mode.plumbed, mode.split)
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
				if r := holder.do("unlock " + name); r != "403 not_locked" {
					t.Fatalf("owner %d: unlock of a free name -> %q", o, r)
				}
			}
		})
	}
}

// A lock takes elock's hops, and its answer waits for the replica: from
// each of the three nodes as home, the frames each node read by the time
// the client has its answer (and, for the owner's acknowledgement in
// -chain, soon after) are exactly those of elock's mesh.
func TestALockTakesTheMeshsHops(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			ns, addrs := floor(t, mode.direct, mode.chain, mode.plumbed, mode.split)
			counts := func() (c [nodes][kResult + 1]uint64) {
				for i := range ns {
					for k := range c[i] {
						c[i][k] = ns[i].frames[k].Load()
					}
				}
				return c
			}
			for o, name := range namesByOwner() {
				r := (o + 1) % nodes
				for _, h := range []int{o, r, (o + 2) % nodes} {
					before := counts()
					want := before
					if h != o {
						want[o][kRequest]++
					}
					want[r][kReplicate]++
					if !mode.chain && h != o {
						want[h][kResult]++ // from the owner, after the ack
					}
					if mode.chain && h != r {
						want[h][kResult]++ // from the replica
					}
					now := want // what must be read before the answer
					want[o][kAck]++
					if !mode.chain {
						now = want
					}
					c := dial(t, addrs[h])
					if got := c.do("lock " + name); got != "200 Acquired" {
						t.Fatalf("owner %d, home %d: lock -> %q", o, h, got)
					}
					if got := counts(); got != now && got != want {
						t.Fatalf("owner %d, home %d: frames read by the answer %v, want %v", o, h, got, now)
					}
					wait.Seen(t, 5*time.Second, "the owner's acknowledgement", nil, func() (bool, string) {
						got := counts()
						return got == want, fmt.Sprint(got)
					})
					if got := c.do("unlock " + name); got != "200 Unlocked" {
						t.Fatalf("owner %d, home %d: unlock -> %q", o, h, got)
					}
					wait.For(t, 5*time.Second, "the unlock's frames", func() bool {
						got := counts()
						return got[o][kAck] == want[o][kAck]+1 && got[r][kReplicate] == want[r][kReplicate]+1
					})
				}
			}
		})
	}
}
