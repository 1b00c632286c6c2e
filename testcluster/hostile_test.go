package testcluster

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elock/elock/node/peer"
	"github.com/elock/elock/testcluster/certs"
	"github.com/elock/elock/testcluster/wait"
)

// rssLimit is the resident memory a node may reach under the hostile
// input below: a few times what a node with a handful of locks uses.
// Resident memory does not show a buffer allocated for a declared length
// and never written (the kernel maps its pages only when touched); that
// a declared length costs nothing until its bytes arrive is shown by
// node/peer's TestAFrameIsReadAsItsBytesArrive, which counts allocation.
const rssLimit = 256 << 20

// frame encodes one peer frame: u32 payload length, u8 kind, u64 id.
func frame(kind byte, id uint64, payload []byte) []byte {
	b := make([]byte, 13, 13+len(payload))
	binary.BigEndian.PutUint32(b[0:4], uint32(len(payload)))
	b[4] = kind
	binary.BigEndian.PutUint64(b[5:13], id)
	return append(b, payload...)
}

// rss reads a process's resident memory from /proc.
func rss(t *testing.T, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS for %d", pid)
	return 0
}

// Hostile input on every node's peer port (garbage, frames that declare
// the largest size and send a few bytes, every method with random
// payloads and counts, garbage on the raft protocol) leaves every node
// serving, each within rssLimit, and a bystander's lock held with the
// same token. This mesh runs without peer TLS, where any caller is
// trusted, so the payloads are random, not forged: they check that no
// input crashes a node or costs memory it did not send.
func TestHostilePeerInputLeavesTheMeshServing(t *testing.T) {
	c := New(t, Options{Nodes: 3})
	ctx := context.Background()
	holder := c.Client(t, 0)
	tok, err := holder.TryLock(ctx, "bystander")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var held []net.Conn // kept open until the checks: each declared a frame it never finished
	defer func() {
		for _, nc := range held {
			nc.Close()
		}
	}()
	var mu sync.Mutex
	for i := range 3 {
		addr := c.Node(i).PeerAddr
		dial := func(proto byte) net.Conn {
			nc, err := net.DialTimeout("tcp", addr, IOTimeout)
			if err != nil {
				t.Fatalf("node %d: %v", i, err)
			}
			nc.SetWriteDeadline(time.Now().Add(IOTimeout))
			nc.Write([]byte{proto})
			return nc
		}
		// Frames that declare the largest size and send little of it.
		for range 40 {
			nc := dial(peer.ProtoRPC)
			hdr := frame(byte(peer.Replicate), 2, nil)
			binary.BigEndian.PutUint32(hdr[0:4], peer.MaxFrame)
			nc.Write(hdr)
			nc.Write(make([]byte, 1000))
			mu.Lock()
			held = append(held, nc)
			mu.Unlock()
		}
		// Garbage, on both protocols.
		for _, proto := range []byte{peer.ProtoRPC, peer.ProtoRaft} {
			nc := dial(proto)
			junk := make([]byte, 64<<10)
			for j := range junk {
				junk[j] = byte(rng.Uint32())
			}
			nc.Write(junk)
			nc.Close()
		}
		// Every method, with random payloads of random sizes, and counts
		// that claim more than the payload holds.
		nc := dial(peer.ProtoRPC)
		for n := range 3000 {
			m := peer.Methods()[n%len(peer.Methods())]
			p := make([]byte, rng.IntN(256))
			for j := range p {
				p[j] = byte(rng.Uint32())
			}
			if n%3 == 0 && len(p) > 0 {
				p[0] = 0xff // a varint count that runs on
			}
			if _, err := nc.Write(frame(byte(m), uint64(n), p)); err != nil {
				break // the node may close a connection that sent nonsense
			}
		}
		nc.Close()
	}
	for i := range 3 {
		n := c.Node(i)
		if !n.Process.Alive() {
			t.Fatalf("node %d died:\n%s", i, n.Process.Log())
		}
		if got := rss(t, n.Process.Pid()); got > rssLimit {
			t.Errorf("node %d holds %d MiB, above %d MiB", i, got>>20, rssLimit>>20)
		}
	}
	if err := c.WaitConverged(ConvergeTimeout); err != nil {
		t.Fatalf("the mesh did not settle after the hostile input: %v", err)
	}
	wait.For(t, 30*time.Second, "the bystander's lock to be answered", func() bool {
		got, err := holder.Token(ctx, "bystander")
		if err != nil {
			return false
		}
		if got != tok {
			t.Fatalf("the bystander's token is %d, was %d", got, tok)
		}
		return true
	})
	if _, err := c.Client(t, 1).TryLock(ctx, "bystander"); err == nil {
		t.Fatal("another session took the bystander's lock")
	}
}

// On a mesh with peer TLS, a well-formed request that would free a
// bystander's lock (a Release of its session in the lock's partition,
// sent to the lock's owner) is carried out only for a registered node:
// a certificate of the mesh's CA for a node id the table never
// registered, or a client's certificate from the same CA, gets its
// connection closed unanswered. The same frame sent with a registered
// node's certificate does release the lock, so the request is no
// malformed one that anybody would have refused.
func TestForgedRequestsOverTLSAreRefused(t *testing.T) {
	ca := certs.New(t)
	for i := range 3 {
		ca.Issue(t, fmt.Sprintf("n%d", i))
	}
	c := New(t, Options{Nodes: 3, NodeFlags: func(n *Node) []string {
		return []string{"-peer-cert", filepath.Join(ca.Dir, n.ID+".pem"), "-peer-key", filepath.Join(ca.Dir, n.ID+"-key.pem"), "-peer-ca", ca.CA}
	}})
	holder := c.Raw(0)
	if r := holder.Do("lock bystander"); r != "200 Acquired" {
		t.Fatal(r)
	}
	id, ok := strings.CutPrefix(holder.Do("conn_id"), "200 ")
	if !ok {
		t.Fatal("no session id")
	}
	p, owner, _, epoch := c.Where("bystander")
	var e peer.Enc
	e.Uint(uint64(p))
	e.Uint(epoch)
	e.Str(id)
	e.Uint(uint64(p))
	e.Uint(math.MaxUint64)
	release := e.B
	ownerAddr := c.Node(c.IndexOf(owner)).PeerAddr

	send := func(sec *peer.TLS) error {
		pool := peer.NewPool(IOTimeout, nil, sec)
		defer pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), IOTimeout)
		defer cancel()
		_, err := pool.Get(ownerAddr).Call(ctx, peer.Release, release)
		return err
	}
	load := func(id string, client bool) *peer.TLS {
		cert, key := ca.Issue(t, id)
		if client {
			cert, key = ca.IssueClient(t, id)
		}
		sec, err := peer.LoadTLS(cert, key, ca.CA, id)
		if err != nil {
			t.Fatal(err)
		}
		return sec
	}
	for _, who := range []struct {
		name string
		sec  *peer.TLS
	}{
		{"a certificate for an unregistered node", load("n9", false)},
		{"a client's certificate", load("app1", true)},
	} {
		if err := send(who.sec); err == nil {
			t.Errorf("%s: the release was answered", who.name)
		}
		if r := c.Raw(1).Do("lock bystander 0"); r != "409 Unavailable" {
			t.Fatalf("after a release sent with %s, another session's lock: %q", who.name, r)
		}
	}
	if !c.Node(0).Process.Alive() {
		t.Fatal("node 0 died")
	}
	// The control: the same frame from a registered node is carried out.
	other := c.Node((c.IndexOf(owner) + 1) % 3).ID
	if err := send(load(other, false)); err != nil {
		t.Fatalf("the release from registered node %s: %v", other, err)
	}
	wait.For(t, 10*time.Second, "the lock to be free after the registered node's release", func() bool {
		return c.Raw(1).Do("lock bystander 0") == "200 Acquired"
	})
}
