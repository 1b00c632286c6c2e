package testcluster

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"syscall"
)

// Address plan. Each cluster owns a 127.A.B.0/24 block of loopback
// addresses, which Linux routes to lo without configuration: node i
// listens on 127.A.B.(i+1), and nothing else uses those addresses. A
// block is taken by holding a TCP listener on 127.A.B.254 at blockPort,
// which no other cluster can bind while we hold it, whether it runs in
// this test binary or in another one ("go test ./..." runs packages in
// parallel). So clusters never share an address, and the ports a cluster
// picks on its own addresses stay free: the kernel gives ephemeral ports
// of outgoing connections to 127.0.0.1 unless a socket binds to one of
// ours.
const (
	// blockPort is above Linux's default ephemeral range (32768-60999),
	// so no outgoing connection holds it by chance.
	blockPort = 65071
	// maxNodes is how many nodes fit in a block: .1 to .253.
	maxNodes = 253
)

// block is a reserved 127.A.B.0/24 block.
type block struct {
	a, b int
	l    net.Listener // holds the reservation
}

// reserveBlock reserves a random free block.
func reserveBlock() (*block, error) {
	var err error
	for range 200 {
		a, b := 10+rand.IntN(241), rand.IntN(256)
		var l net.Listener
		l, err = net.Listen("tcp", net.JoinHostPort(fmt.Sprintf("127.%d.%d.254", a, b), strconv.Itoa(blockPort)))
		if err == nil {
			return &block{a: a, b: b, l: l}, nil
		}
	}
	return nil, fmt.Errorf("no free 127.A.B.0/24 block: %w", err)
}

// ip returns node i's address.
func (b *block) ip(i int) string { return fmt.Sprintf("127.%d.%d.%d", b.a, b.b, i+1) }

func (b *block) String() string { return fmt.Sprintf("127.%d.%d.0/24", b.a, b.b) }

func (b *block) release() { b.l.Close() }

// nodeAddrs are a node's three addresses.
type nodeAddrs struct {
	client, gossip, peer string
}

// pickAddrs finds three distinct ports on ip: two free for TCP (client
// and peer RPC) and one free for both TCP and UDP (memberlist uses both
// on the gossip port). It holds every probe socket until all three are
// found, so the kernel cannot hand out the same port twice, and then
// releases them for the node to bind.
//
// A port picked this way can still be busy for a moment when the node
// binds it: a child forked while a probe socket is open holds a copy of
// it until it execs, since close-on-exec acts only then. Measured with
// another goroutine forking in a loop, 4% of the ports failed to bind
// right after pickAddrs. Holding syscall.ForkLock for reading, which Go
// takes for writing around each fork, brings that under 0.05%, and
// awaitServing retries a start that finds its port taken.
func pickAddrs(ip string) (nodeAddrs, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	var held []interface{ Close() error }
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	tcp := func() (string, error) {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return "", err
		}
		held = append(held, l)
		return l.Addr().String(), nil
	}
	client, err := tcp()
	if err != nil {
		return nodeAddrs{}, err
	}
	peer, err := tcp()
	if err != nil {
		return nodeAddrs{}, err
	}
	for range 100 {
		addr, err := tcp()
		if err != nil {
			return nodeAddrs{}, err
		}
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			continue // the TCP probe stays held, so the next one differs
		}
		held = append(held, u)
		return nodeAddrs{client: client, gossip: addr, peer: peer}, nil
	}
	return nodeAddrs{}, errors.New("no port free for both TCP and UDP on " + ip)
}
