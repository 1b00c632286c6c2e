// Command meshfloor is the floor under what a mesh of three elock nodes
// written in Go can cost per lock on one machine. It is three processes
// that speak just enough of the text protocol for ../shared/bench's
// lockbench (`lock NAME [WAIT]`, `unlock NAME`) and pass every request
// through the hops of elock's mesh: the client's node (its home) to the
// name's owner, the owner to its replica and back, the owner to the home,
// the home to the client; a request whose home owns the name stays in
// that process until its replica's hop, as in elock.
//
// It keeps only what the hops need: which names are held and who waits,
// at the owner. No sessions, epochs, tokens, wait timeouts (WAIT is read
// and ignored), leases, failure handling or durability. Where it moves
// bytes, it does so at least as cheaply as elock: every frame one node
// sends another goes on one connection with one batching writer (elock
// has two per direction, a caller's sender and the reply sender of the
// connection the other node dialed), and every answer is written to its
// client by the goroutine that learns it (elock does so for the grant
// after a wait; other replies go through the connection's goroutine). So
// what elock's mesh costs above this floor is the cost of its own work,
// and what this floor costs is what the hops cost in Go on the machine
// it runs on.
//
// Node i (0, 1 or 2) listens for clients on IP.(i+1):PORT and for peers
// on IP.(i+1):PORT+1, and runs until it is killed:
//
//	meshfloor -node 0 -ip 127.0.24 -port 11400
//
// -direct writes each peer frame from the goroutine that sends it instead
// of batching; -chain has the replica answer the home itself, one hop
// less than elock (one change of elock's replication protocol that
// would save a hop); -plumbed adds elock's two goroutine hand-offs per
// request (see node.plumbed); -split uses two connections per pair and
// direction as elock does (see node.split); -pprof serves
// net/http/pprof. .ci/bench-floor runs
// the three beside a single elockd, an elock mesh and a null server, in
// one run.
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	_ "net/http/pprof" // -pprof, to profile the floor beside elockd's -debug-addr
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
)

const nodes = 3

// Frame kinds. A request goes home to owner, a replicate owner to
// replica, an ack replica to owner, a result owner to home.
const (
	kRequest byte = iota
	kReplicate
	kAck
	kResult
)

// Request ops and results.
const (
	opLock byte = iota
	opLockWait
	opUnlock
)

const (
	resAcquired byte = iota
	resUnlocked
	resUnavailable
	resNotHeld
)

var replies = [...][]byte{
	resAcquired:    []byte("200 Acquired\r\n"),
	resUnlocked:    []byte("200 Unlocked\r\n"),
	resUnavailable: []byte("409 Unavailable\r\n"),
	resNotHeld:     []byte("403 not_locked\r\n"),
}

// frame header: length of the rest (u16), kind, home node, op or result,
// request id (u64); a request's name follows.
const headerLen = 2 + 1 + 1 + 1 + 8

type frame struct {
	kind, home, arg byte
	id              uint64
	name            []byte
}

func (f frame) append(b []byte) []byte {
	var h [headerLen]byte
	binary.BigEndian.PutUint16(h[0:2], uint16(headerLen-2+len(f.name)))
	h[2], h[3], h[4] = f.kind, f.home, f.arg
	binary.BigEndian.PutUint64(h[5:13], f.id)
	return append(append(b, h[:]...), f.name...)
}

// sender writes one peer connection's frames in batches from one
// goroutine, as node/peer's sender does, or (direct) each frame at once
// from the goroutine that sends it, whichever costs less at a load.
type sender struct {
	mu     sync.Mutex
	buf    []byte
	wake   chan struct{}
	nc     net.Conn
	direct bool
}

// send queues f, or writes it at once when direct. A broken connection
// drops frames: the floor measures the hops, not failures.
func (s *sender) send(f frame) {
	s.mu.Lock()
	if s.direct && s.nc != nil {
		s.buf = f.append(s.buf[:0])
		_, _ = s.nc.Write(s.buf)
		s.mu.Unlock()
		return
	}
	if s.direct { // not connected yet: connect writes what is queued
		s.buf = f.append(s.buf)
		s.mu.Unlock()
		return
	}
	s.buf = f.append(s.buf)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// loop writes what is queued until the connection breaks (closing it
// ends the loop).
func (s *sender) loop() {
	var out []byte
	for range s.wake {
		runtime.Gosched() // let frames that are ready join this write
		s.mu.Lock()
		out, s.buf = s.buf, out[:0]
		s.mu.Unlock()
		if len(out) > 0 {
			if _, err := s.nc.Write(out); err != nil {
				return
			}
		}
	}
}

type waiter struct {
	home byte
	id   uint64
}

type lockState struct {
	held  bool
	queue []waiter
}

type node struct {
	self  byte
	peers [nodes]*sender
	// chain: the replica answers the home itself, one hop less than
	// elock's owner-answers (a change of protocol elock has not made).
	chain bool
	// plumbed adds elock's two goroutine hand-offs per request: a reply
	// goes to the client's goroutine, which writes it, and a replicate
	// goes to a link goroutine, which sends it (replication/stream.go).
	plumbed bool
	// split sends answers (acks, results) back on the connection the
	// other node dialed, and requests and replicates on the one this node
	// dialed: elock's two connections per pair and direction.
	split bool
	back  [nodes]atomic.Pointer[sender] // split: a writer on each accepted connection
	// frames counts the peer frames read here, by kind.
	frames [kResult + 1]atomic.Uint64

	nextID  atomic.Uint64
	pmu     sync.Mutex
	pending map[uint64]*client // requests of this node's clients

	omu   sync.Mutex
	locks map[string]*lockState // names this node owns

	lmu   sync.Mutex // guards linkq
	linkq []frame    // replicates for the link goroutine (plumbed)
	lwake chan struct{}
}

// link sends the replicates queued for it, as elock's link goroutine
// does, until the process ends.
func (n *node) link() {
	var q []frame
	for range n.lwake {
		n.lmu.Lock()
		q, n.linkq = n.linkq, q[:0]
		n.lmu.Unlock()
		for _, f := range q {
			n.peers[(n.self+1)%nodes].send(f)
		}
	}
}

type client struct {
	mu      sync.Mutex
	nc      net.Conn
	results chan byte // plumbed: the client's goroutine writes the reply
}

func (c *client) reply(res byte) {
	if c.results != nil {
		c.results <- res
		return
	}
	c.mu.Lock()
	_, _ = c.nc.Write(replies[res])
	c.mu.Unlock()
}

func ownerOf(name []byte) byte { return byte(xxhash.Sum64(name) % nodes) }

// respond sends an answer (an ack or a result) to node to.
func (n *node) respond(to byte, f frame) {
	if s := n.back[to].Load(); n.split && s != nil {
		s.send(f)
		return
	}
	// Not split, or to has not called yet (only -chain answers a node
	// that has sent it nothing).
	n.peers[to].send(f)
}

// answer hands result res of request id to its home's client.
func (n *node) answer(home byte, id uint64, res byte) {
	if home != n.self {
		n.respond(home, frame{kind: kResult, home: home, arg: res, id: id})
		return
	}
	n.pmu.Lock()
	c := n.pending[id]
	delete(n.pending, id)
	n.pmu.Unlock()
	if c != nil {
		c.reply(res)
	}
}

// replicate sends a decided result to the owner's replica; the answer
// goes out when the replica acknowledges it.
func (n *node) replicate(home byte, id uint64, res byte) {
	if n.plumbed {
		n.lmu.Lock()
		n.linkq = append(n.linkq, frame{kind: kReplicate, home: home, arg: res, id: id})
		n.lmu.Unlock()
		select {
		case n.lwake <- struct{}{}:
		default:
		}
		return
	}
	n.peers[(n.self+1)%nodes].send(frame{kind: kReplicate, home: home, arg: res, id: id})
}

// own serves a request at the name's owner.
func (n *node) own(home byte, id uint64, op byte, name []byte) {
	n.omu.Lock()
	st := n.locks[string(name)]
	if st == nil {
		st = &lockState{}
		n.locks[string(name)] = st
	}
	switch op {
	case opLock, opLockWait:
		switch {
		case !st.held:
			st.held = true
			n.omu.Unlock()
			n.replicate(home, id, resAcquired)
		case op == opLockWait:
			st.queue = append(st.queue, waiter{home, id})
			n.omu.Unlock()
		default:
			n.omu.Unlock()
			n.answer(home, id, resUnavailable)
		}
	case opUnlock:
		switch {
		case !st.held:
			delete(n.locks, string(name))
			n.omu.Unlock()
			n.answer(home, id, resNotHeld)
		case len(st.queue) > 0:
			w := st.queue[0]
			st.queue = st.queue[1:]
			n.omu.Unlock()
			n.replicate(home, id, resUnlocked)
			n.replicate(w.home, w.id, resAcquired)
		default:
			delete(n.locks, string(name))
			n.omu.Unlock()
			n.replicate(home, id, resUnlocked)
		}
	}
}

// readPeer serves the frames of one peer connection until it breaks.
func (n *node) readPeer(nc net.Conn, r *bufio.Reader) {
	defer nc.Close()
	var h [headerLen]byte
	buf := make([]byte, 0, 256)
	for {
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return
		}
		rest := int(binary.BigEndian.Uint16(h[0:2])) - (headerLen - 2)
		if rest < 0 {
			return
		}
		buf = slices.Grow(buf[:0], rest)[:rest]
		if _, err := io.ReadFull(r, buf); err != nil {
			return
		}
		kind, home, arg, id := h[2], h[3], h[4], binary.BigEndian.Uint64(h[5:13])
		if kind > kResult {
			return
		}
		n.frames[kind].Add(1)
		switch kind {
		case kRequest:
			n.own(home, id, arg, buf)
		case kReplicate:
			// The replica would apply the change here.
			n.respond((n.self+nodes-1)%nodes, frame{kind: kAck, home: home, arg: arg, id: id})
			if n.chain {
				n.answer(home, id, arg)
			}
		case kAck:
			if !n.chain {
				n.answer(home, id, arg)
			}
		case kResult:
			n.answer(n.self, id, arg)
		}
	}
}

// serveClient reads one client's commands; answers are written by
// whichever goroutine learns them.
func (n *node) serveClient(nc net.Conn) {
	defer nc.Close()
	c := &client{nc: nc}
	if n.plumbed {
		c.results = make(chan byte, 1)
	}
	r := bufio.NewReaderSize(nc, 4096)
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		fields := bytes.Fields(line)
		var op byte
		switch {
		case len(fields) == 2 && string(fields[0]) == "lock":
			op = opLock
		case len(fields) == 3 && string(fields[0]) == "lock":
			op = opLockWait
		case len(fields) == 2 && string(fields[0]) == "unlock":
			op = opUnlock
		default:
			c.mu.Lock()
			_, _ = nc.Write([]byte("400 meshfloor knows lock NAME [WAIT] and unlock NAME\r\n"))
			c.mu.Unlock()
			continue
		}
		name := fields[1]
		id := n.nextID.Add(1)
		n.pmu.Lock()
		n.pending[id] = c
		n.pmu.Unlock()
		if o := ownerOf(name); o != n.self {
			n.peers[o].send(frame{kind: kRequest, home: n.self, arg: op, id: id, name: name})
		} else {
			n.own(n.self, id, op, name)
		}
		if c.results != nil {
			// elock's connection goroutine waits for a plain answer and
			// writes it (a wait's grant too, here: one hand-off more than
			// elock, where whoever learns of the grant writes it).
			_, _ = nc.Write(replies[<-c.results])
		}
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "meshfloor:", err)
	os.Exit(1)
}

// newNode is node self, serving peers on peerLn at once (a peer may send
// before this node has dialed it).
func newNode(self int, direct, chain, plumbed, split bool, peerLn net.Listener) *node {
	n := &node{self: byte(self), chain: chain, plumbed: plumbed, split: split, pending: map[uint64]*client{}, locks: map[string]*lockState{}}
	if plumbed {
		n.lwake = make(chan struct{}, 1)
		go n.link()
	}
	go func() {
		for {
			nc, err := peerLn.Accept()
			if err != nil {
				return
			}
			go n.accepted(nc, direct)
		}
	}()
	for i := range n.peers {
		n.peers[i] = &sender{wake: make(chan struct{}, 1), direct: direct}
	}
	return n
}

// accepted serves a connection another node dialed: its first byte
// names that node.
func (n *node) accepted(nc net.Conn, direct bool) {
	r := bufio.NewReaderSize(nc, 64<<10)
	from, err := r.ReadByte()
	if err != nil || int(from) >= nodes {
		nc.Close()
		return
	}
	if n.split {
		s := &sender{wake: make(chan struct{}, 1), nc: nc, direct: direct}
		if !direct {
			go s.loop()
		}
		n.back[from].Store(s)
	}
	n.readPeer(nc, r)
}

// connect gives node i's sender its connection. Every frame this node
// sends to i goes on it (with split, every request and replicate), and
// i reads it on the one it accepted.
func (n *node) connect(i int, nc net.Conn) {
	s := n.peers[i]
	s.mu.Lock()
	s.nc = nc
	_, _ = nc.Write([]byte{n.self}) // who is calling
	if s.direct && len(s.buf) > 0 {
		_, _ = nc.Write(s.buf)
	}
	s.mu.Unlock()
	if !s.direct {
		go s.loop()
	}
	if n.split {
		go n.readPeer(nc, bufio.NewReaderSize(nc, 64<<10)) // the answers
	}
}

// serveClients accepts clients until ln is closed.
func (n *node) serveClients(ln net.Listener) error {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return err
		}
		go n.serveClient(nc)
	}
}

func main() {
	self := flag.Int("node", 0, "this node: 0, 1 or 2")
	ip := flag.String("ip", "127.0.24", "the first three octets; node i is IP.(i+1)")
	port := flag.Int("port", 11400, "client port; peers use PORT+1")
	direct := flag.Bool("direct", false, "write each peer frame at once instead of batching")
	chain := flag.Bool("chain", false, "the replica answers the home (one hop less than elock)")
	split := flag.Bool("split", false, "answers go back on the connection the other node dialed, as in elock")
	plumbed := flag.Bool("plumbed", false, "add elock's goroutine hand-offs: replies via the client's goroutine, replicates via a link goroutine")
	pprof := flag.String("pprof", "", "serve net/http/pprof on this address")
	flag.Parse()
	if *self < 0 || *self >= nodes {
		fatal(fmt.Errorf("-node %d: want 0, 1 or 2", *self))
	}
	if *pprof != "" {
		go func() { fatal(http.ListenAndServe(*pprof, nil)) }()
	}
	addr := func(i, p int) string { return net.JoinHostPort(*ip+"."+strconv.Itoa(i+1), strconv.Itoa(p)) }
	pl, err := net.Listen("tcp", addr(*self, *port+1))
	if err != nil {
		fatal(err)
	}
	n := newNode(*self, *direct, *chain, *plumbed, *split, pl)
	for i := range nodes {
		if i == *self {
			continue
		}
		var nc net.Conn
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if nc, err = net.Dial("tcp", addr(i, *port+1)); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			fatal(err)
		}
		n.connect(i, nc)
	}
	cl, err := net.Listen("tcp", addr(*self, *port))
	if err != nil {
		fatal(err)
	}
	fmt.Fprintf(os.Stderr, "meshfloor node %d serving clients on %s\n", *self, cl.Addr())
	fatal(n.serveClients(cl))
}
