package workload

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/elock/elock/testcluster/history"
)

// electState is the election part of a workload: the campaigners' stop,
// the watchers' connections, and every EVENT line, proclaim and leader
// probe for the election checkers.
type electState struct {
	stop     chan struct{} // closed by StopCampaigns
	stopOnce sync.Once
	wg       sync.WaitGroup // campaigners
	wwg      sync.WaitGroup // watchers

	mu        sync.Mutex
	events    []history.Event
	proclaims []history.Proclaim
	probes    []history.Probe
	conns     map[int]net.Conn // watcher id -> its connection now
	done      bool             // watchers stopped
}

// startElection starts the campaigners and watchers of cfg.Election, with
// ids from id on.
func (w *Workload) startElection(id int) {
	cfg := w.cfg
	if cfg.Election == "" {
		return
	}
	w.elect.conns = map[int]net.Conn{}
	for range cfg.Campaigners {
		c := &client{w: w, id: id, rng: rand.New(rand.NewPCG(cfg.Seed, uint64(id)+1)), names: []string{cfg.Election}, mode: history.Exclusive, held: map[string]bool{}, elect: true}
		id++
		w.elect.wg.Add(1)
		w.wg.Add(1) // run's Done
		go func() {
			defer w.elect.wg.Done()
			c.run()
		}()
	}
	for range cfg.Watchers {
		wid := id
		id++
		w.elect.wwg.Add(1)
		go w.watch(wid)
	}
}

func (w *Workload) campaignsStopped() bool {
	select {
	case <-w.elect.stop:
		return true
	default:
		return false
	}
}

// StopCampaigns stops the campaigners, each resigning what it holds if
// its connection lets it. The watchers go on. Call it before Settle.
func (w *Workload) StopCampaigns() {
	w.elect.stopOnce.Do(func() { close(w.elect.stop) })
	w.elect.wg.Wait()
}

func (w *Workload) stopWatchers() {
	w.elect.mu.Lock()
	w.elect.done = true
	for _, nc := range w.elect.conns {
		nc.Close()
	}
	w.elect.mu.Unlock()
	w.elect.wwg.Wait()
}

// campaignStep does one step of a campaigner: campaign, or, as leader,
// proclaim a new value now and then, else resign.
func (c *client) campaignStep() {
	name := c.names[0]
	if c.held[name] {
		if c.rng.IntN(3) == 0 {
			c.proclaim(name)
			time.Sleep(time.Duration(c.rng.Int64N(int64(c.w.cfg.ElectHold))))
			return
		}
		c.unlock(name)
		return
	}
	c.campaigns++
	wait := 1 + c.rng.IntN(max(c.w.cfg.MaxWait, 1))
	c.takeAs(history.Exclusive, name, wait, fmt.Sprintf("c%d-%d", c.id, c.campaigns))
	if c.held[name] {
		time.Sleep(time.Duration(c.rng.Int64N(int64(c.w.cfg.ElectHold))))
	}
	if c.w.campaignsStopped() && c.nc != nil && c.held[name] {
		c.unlock(name) // resign on the way out, so the name settles soon
	}
}

func (c *client) proclaim(name string) {
	c.campaigns++
	v := fmt.Sprintf("c%d-%dp", c.id, c.campaigns)
	call := c.w.rec.Now()
	lines, err := c.do(c.w.cfg.ReplyTimeout, "proclaim "+name+" "+v)
	if err != nil {
		c.drop()
		return
	}
	switch l := lines[0]; {
	case l == "200 OK":
		c.w.elect.mu.Lock()
		c.w.elect.proclaims = append(c.w.elect.proclaims, history.Proclaim{Client: c.id, Session: c.label, Name: name, Value: v, Call: call, Return: c.w.rec.Now()})
		c.w.elect.mu.Unlock()
	case l == "403 not_yours" || l == "403 not_locked":
		// The term ended without the client's unlock (a lost grant, an
		// expiry): not leader any more.
		delete(c.held, name)
	case strings.HasPrefix(l, "503 ") || strings.HasPrefix(l, "504 "):
		c.w.note("proclaim "+name, l)
	default:
		c.w.fail(fmt.Errorf("client %d: proclaim %s: unexpected reply %q", c.id, name, l))
	}
}

// eventsOn asks for session events on every client's new connection:
// campaigners' and lock clients' of every kind, so that lost-events
// checks EVENT lost of exclusive, shared and permit grants alike.
func (c *client) eventsOn() {
	if c.nc == nil {
		return
	}
	lines, err := c.do(c.w.cfg.ReplyTimeout, "events on")
	if err != nil {
		c.drop()
		return
	}
	if lines[0] != "200 events on" {
		c.w.fail(fmt.Errorf("client %d: events on: unexpected reply %q", c.id, lines[0]))
	}
}

// event records an EVENT line read on a client's connection.
func (c *client) event(line string) {
	e, ok := history.ParseEvent(line)
	if !ok {
		c.w.fail(fmt.Errorf("client %d: malformed event %q", c.id, line))
		return
	}
	e.Client, e.Session, e.At = c.id, c.label, c.w.rec.Now()
	c.w.addEvent(e)
}

func (w *Workload) addEvent(e history.Event) {
	w.elect.mu.Lock()
	w.elect.events = append(w.elect.events, e)
	w.elect.mu.Unlock()
}

// watch is a watcher: it watches the election on one connection after
// another, recording every event with its stream, until stopWatchers.
func (w *Workload) watch(id int) {
	defer w.elect.wwg.Done()
	rng := rand.New(rand.NewPCG(w.cfg.Seed, uint64(id)+1))
	for stream := 1; ; stream++ {
		w.elect.mu.Lock()
		done := w.elect.done
		w.elect.mu.Unlock()
		if done {
			return
		}
		addrs := w.cfg.Addrs()
		if len(addrs) == 0 {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		nc, err := net.DialTimeout("tcp", addrs[rng.IntN(len(addrs))], 2*time.Second)
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		w.elect.mu.Lock()
		if w.elect.done {
			w.elect.mu.Unlock()
			nc.Close()
			return
		}
		w.elect.conns[id] = nc
		w.elect.mu.Unlock()
		w.watchOn(id, stream, nc)
		nc.Close()
		time.Sleep(50 * time.Millisecond)
	}
}

// watchOn reads one watch stream until the connection fails. A watch
// with no change says nothing, so there is no read deadline: a node that
// went away ends the stream by the connection's failure, and a partition
// is what the agreement check is about.
func (w *Workload) watchOn(id, stream int, nc net.Conn) {
	r := bufio.NewReader(nc)
	nc.SetWriteDeadline(time.Now().Add(w.cfg.ReplyTimeout))
	if _, err := nc.Write([]byte("watch " + w.cfg.Election + "\r\n")); err != nil {
		return
	}
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return
		}
		l = strings.TrimSuffix(l, "\r\n")
		switch {
		case strings.HasPrefix(l, "EVENT "):
			e, ok := history.ParseEvent(l)
			if !ok {
				w.fail(fmt.Errorf("watcher %d: malformed event %q", id, l))
				return
			}
			e.Client, e.Stream, e.At = id, stream, w.rec.Now()
			w.addEvent(e)
		case l == "200 watching":
		case strings.HasPrefix(l, "503 ") || strings.HasPrefix(l, "504 "):
			w.note("watch "+w.cfg.Election, l)
			return
		default:
			w.fail(fmt.Errorf("watcher %d: unexpected line %q", id, l))
			return
		}
	}
}

// Settle asks `leader NAME` of the election every probe interval until
// every watcher's latest event agrees with two answers in a row, or bound
// has passed; it records every answer for CheckElection. Call it after
// StopCampaigns and before Stop.
func (w *Workload) Settle(bound time.Duration) {
	if w.cfg.Election == "" {
		return
	}
	deadline := time.Now().Add(bound)
	var nc net.Conn
	var r *bufio.Reader
	defer func() {
		if nc != nil {
			nc.Close()
		}
	}()
	for {
		if nc == nil {
			if addrs := w.cfg.Addrs(); len(addrs) > 0 {
				if c, err := net.DialTimeout("tcp", addrs[0], 2*time.Second); err == nil {
					nc, r = c, bufio.NewReader(c)
				}
			}
		}
		if nc != nil {
			if p, ok := w.probe(nc, r); ok {
				w.elect.mu.Lock()
				w.elect.probes = append(w.elect.probes, p)
				_, agreed := history.Agreement(w.cfg.Election, w.elect.events, w.elect.probes)
				w.elect.mu.Unlock()
				if agreed {
					return
				}
			} else {
				nc.Close()
				nc = nil
			}
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (w *Workload) probe(nc net.Conn, r *bufio.Reader) (history.Probe, bool) {
	p := history.Probe{Name: w.cfg.Election, Call: w.rec.Now()}
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := nc.Write([]byte("leader " + w.cfg.Election + "\r\n")); err != nil {
		return p, false
	}
	l, err := r.ReadString('\n')
	if err != nil {
		return p, false
	}
	p.Return = w.rec.Now()
	f := strings.Fields(strings.TrimSuffix(l, "\r\n"))
	switch {
	case len(f) == 4 && f[0] == "200" && f[1] == "LEADER":
		t, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			return p, false
		}
		p.Held, p.Token, p.Value = true, t, f[3]
		return p, true
	case len(f) >= 2 && f[0] == "409":
		return p, true
	}
	return p, false // 503, 504: ask again
}

// CheckElection runs the election checkers: watch-tokens, watch-agreement
// (since is when the campaigns stopped after the last fault, bound the
// failover time) and lost-events. None if the workload had no election.
func (w *Workload) CheckElection(h []history.Operation, since, bound time.Duration) []history.Verdict {
	if w.cfg.Election == "" {
		return nil
	}
	w.elect.mu.Lock()
	defer w.elect.mu.Unlock()
	return []history.Verdict{
		history.CheckWatchTokens(w.elect.events),
		history.CheckWatchAgreement(w.cfg.Election, w.elect.events, w.elect.probes, since, bound),
		history.CheckLostEvents(h, w.elect.events, w.elect.proclaims),
	}
}
