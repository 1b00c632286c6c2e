// Package workload drives a running elock cluster with many clients and
// records every operation for the history checkers: each client speaks the
// raw protocol on its own connection, takes and releases hot locks (some
// clients shared locks and semaphores), writes every exclusive grant's
// fencing token to a fenced resource and reads it with every shared one,
// and when its node goes away resumes its session on another node with
// conn_id, as a careful client would.
package workload

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elock/elock/testcluster/history"
)

// Config is what a workload does.
type Config struct {
	// Addrs returns the client addresses to connect to; called on every
	// (re)connect, so it can follow the nodes that are up.
	Addrs   func() []string
	Names   []string // the hot lock names, taken exclusively
	Clients int      // clients of Names
	// Shared are lock names that SharedClients clients take shared
	// (rlock) or, one request in three, exclusively (lock).
	Shared        []string
	SharedClients int
	// Semaphores are semaphore names of Permits permits each, which
	// SemaphoreClients clients take (acquire NAME Permits).
	Semaphores       []string
	Permits          int
	SemaphoreClients int
	// SessionTimeout is each session's set_timeout.
	SessionTimeout time.Duration
	// MaxWait is the largest SECS of a waiting lock; 0 means no waits.
	MaxWait int
	// MaxHold bounds how long a lock is held before its unlock.
	MaxHold time.Duration
	// UnlockAll and Reconnect are the chances of an unlock_all, and of a
	// deliberate disconnect followed by a resume, per operation.
	UnlockAll, Reconnect float64
	// ReplyTimeout bounds the wait for a reply beyond the request's own wait.
	ReplyTimeout time.Duration
	Seed         uint64
	// Every client turns `events on`, and its EVENT lines are recorded.
	// Election is an election name: Campaigners clients campaign for it
	// (recorded as exclusive grants),
	// hold it up to ElectHold, sometimes proclaim, and resign; Watchers
	// clients watch it on their own connections and record every event.
	Election              string
	Campaigners, Watchers int
	ElectHold             time.Duration
}

// Counts are what the clients saw, for availability figures. Shared and
// Permits are the grants, among Acquired, of rlock and of acquire.
type Counts struct {
	Ops, Acquired, Shared, Permits, Unavailable, Unlocked, Refused, Unknown, Errors, Resumes, NewSessions int64
}

// Workload is a running set of clients.
type Workload struct {
	cfg   Config
	rec   *history.Recorder
	fence *history.FencedResource
	stop  chan struct{}
	wg    sync.WaitGroup

	ops, acquired, shared, permits, unavailable, unlocked, refused, unknown, errs, resumes, fresh atomic.Int64

	errMu    sync.Mutex // guards firstErr and notes
	firstErr error
	notes    []string

	ansMu    sync.Mutex
	answered map[string]time.Duration // name -> latest invocation answered definitely

	elect electState
}

// Start starts the clients.
func Start(cfg Config) *Workload {
	if cfg.ReplyTimeout <= 0 {
		cfg.ReplyTimeout = 20 * time.Second
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 10 * time.Second
	}
	if cfg.MaxHold <= 0 {
		cfg.MaxHold = 20 * time.Millisecond
	}
	if cfg.ElectHold <= 0 {
		cfg.ElectHold = 200 * time.Millisecond
	}
	w := &Workload{cfg: cfg, rec: history.NewRecorder(), fence: history.NewFencedResource(), stop: make(chan struct{}), answered: map[string]time.Duration{}}
	w.elect.stop = make(chan struct{})
	// Clients of the exclusive names come first, so that each keeps its
	// id and random stream whatever the other kinds of clients.
	roles := []struct {
		n     int
		names []string
		mode  history.Mode
	}{
		{cfg.Clients, cfg.Names, history.Exclusive},
		{cfg.SharedClients, cfg.Shared, history.Shared},
		{cfg.SemaphoreClients, cfg.Semaphores, history.Permit},
	}
	id := 0
	for _, r := range roles {
		if len(r.names) == 0 {
			continue
		}
		for range r.n {
			c := &client{w: w, id: id, rng: rand.New(rand.NewPCG(cfg.Seed, uint64(id)+1)), names: r.names, mode: r.mode, held: map[string]bool{}}
			id++
			w.wg.Add(1)
			go c.run()
		}
	}
	w.startElection(id)
	return w
}

// Stop stops the clients and returns the history.
func (w *Workload) Stop() []history.Operation {
	w.StopCampaigns()
	close(w.stop)
	w.wg.Wait()
	w.stopWatchers()
	return w.rec.History()
}

// UnansweredSince returns those of names for which no operation invoked
// at or after since (on the history's clock) has had a definite answer:
// a grant, a 409, or an unlock's 200 or 403.
func (w *Workload) UnansweredSince(since time.Duration, names []string) (missing []string) {
	w.ansMu.Lock()
	defer w.ansMu.Unlock()
	for _, n := range names {
		if at, ok := w.answered[n]; !ok || at < since {
			missing = append(missing, n)
		}
	}
	return missing
}

func (w *Workload) answer(name string, p *history.Pending) {
	w.ansMu.Lock()
	w.answered[name] = max(w.answered[name], p.Call())
	w.ansMu.Unlock()
}

// Now is the history's clock: the time since the workload started.
func (w *Workload) Now() time.Duration { return w.rec.Now() }

// Fence is the fenced resource every grant was written to.
func (w *Workload) Fence() *history.FencedResource { return w.fence }

// maxNotes bounds how many refusals and unknown outcomes are kept.
const maxNotes = 20

// note keeps the first refusals and unknown outcomes, with their reasons,
// for a test to show when it counted more than it allows.
func (w *Workload) note(req, reply string) {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	if len(w.notes) < maxNotes {
		w.notes = append(w.notes, fmt.Sprintf("%v %s: %s", w.rec.Now().Round(time.Millisecond), req, reply))
	}
}

// Notes returns the first refusals and unknown outcomes the clients saw,
// each stamped with the history's clock.
func (w *Workload) Notes() []string {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return slices.Clone(w.notes)
}

// Counts returns what the clients saw so far.
func (w *Workload) Counts() Counts {
	return Counts{
		Ops: w.ops.Load(), Acquired: w.acquired.Load(), Shared: w.shared.Load(), Permits: w.permits.Load(),
		Unavailable: w.unavailable.Load(), Unlocked: w.unlocked.Load(),
		Refused: w.refused.Load(), Unknown: w.unknown.Load(), Errors: w.errs.Load(), Resumes: w.resumes.Load(), NewSessions: w.fresh.Load(),
	}
}

// Err returns the first protocol error a client saw (a reply that is not
// one the protocol allows), or nil.
func (w *Workload) Err() error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.firstErr
}

func (w *Workload) fail(err error) {
	w.errs.Add(1)
	w.errMu.Lock()
	if w.firstErr == nil {
		w.firstErr = err
	}
	w.errMu.Unlock()
}

func (w *Workload) stopping() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

// client is one session, carried by one connection at a time.
type client struct {
	w   *Workload
	id  int
	rng *rand.Rand
	// names are the names it takes; mode says how: Exclusive (lock),
	// Shared (rlock, sometimes lock) or Permit (acquire).
	names []string
	mode  history.Mode
	nc    net.Conn
	r     *bufio.Reader
	addr  string

	sid     string // the protocol's session id
	label   string // the session as the history names it: id plus incarnation
	incarn  int
	held    map[string]bool
	lastAns time.Duration // invoke time of the last request answered on this connection
	// drops are grants the server may release because the connection that
	// waited for them was lost; a resume closes their window.
	drops []*history.Pending
	// elect: the client campaigns for cfg.Election; campaigns counts its
	// campaigns, for unique values.
	elect     bool
	campaigns int
}

var errConn = errors.New("connection lost")

func (c *client) run() {
	defer c.w.wg.Done()
	defer func() {
		if c.nc != nil {
			c.nc.Close()
		}
		for _, d := range c.drops {
			d.Unknown()
		}
	}()
	for !c.w.stopping() && !(c.elect && c.w.campaignsStopped()) {
		if c.nc == nil {
			if !c.connect() {
				continue
			}
		}
		c.step()
	}
	if c.elect && c.nc != nil {
		// Resign on the way out, so that the name settles soon.
		for name := range c.held {
			c.unlock(name)
		}
	}
}

// connect opens a connection, and takes the session back if there is one.
func (c *client) connect() bool {
	addrs := c.w.cfg.Addrs()
	if len(addrs) == 0 {
		time.Sleep(50 * time.Millisecond)
		return false
	}
	addr := addrs[c.rng.IntN(len(addrs))]
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		time.Sleep(50 * time.Millisecond)
		return false
	}
	c.nc, c.r, c.addr = nc, bufio.NewReader(nc), addr
	if c.sid == "" {
		c.newSession("")
		return c.nc != nil
	}
	// Resume: conn_id ID, then session says whether the locks survived.
	p := c.w.rec.Invoke(history.Op{Client: c.id, Session: c.label, Kind: history.Resume})
	lines, err := c.do(c.w.cfg.ReplyTimeout, "conn_id "+c.sid, "session")
	switch {
	case err != nil:
		p.Unknown()
		c.drop()
		return false
	case lines[0] == "403 cannot set conn id":
		p.Return(history.Result{Status: history.Refused})
		c.nc.Close()
		c.nc = nil
		time.Sleep(100 * time.Millisecond)
		return false
	case lines[0] != "200 conn id set":
		p.Return(history.Result{Status: history.Refused})
		c.nc.Close()
		c.nc = nil
		time.Sleep(100 * time.Millisecond)
		return false
	}
	if strings.Contains(strings.Join(lines, "\n"), "STAT resumed 1") {
		p.Return(history.Result{Status: history.OK})
		for _, d := range c.drops {
			d.Return(history.Result{Status: history.OK})
		}
		c.drops = nil
		c.w.resumes.Add(1)
		c.setTimeout()
		c.eventsOn()
		return c.nc != nil
	}
	// The session had expired: this is a new one under the same id.
	p.Return(history.Result{Status: history.Refused})
	c.newSession(c.sid)
	return c.nc != nil
}

// newSession starts a session (a new incarnation if id is reused).
func (c *client) newSession(id string) {
	for _, d := range c.drops {
		d.Unknown() // the old session's expiry covers them
	}
	c.drops = nil
	c.incarn++
	clear(c.held)
	if id == "" {
		lines, err := c.do(c.w.cfg.ReplyTimeout, "conn_id")
		if err != nil || !strings.HasPrefix(lines[0], "200 ") {
			c.drop()
			return
		}
		id = strings.TrimPrefix(lines[0], "200 ")
	}
	c.sid = id
	c.label = fmt.Sprintf("c%d/%s/%d", c.id, id, c.incarn)
	c.w.fresh.Add(1)
	c.setTimeout()
	c.eventsOn()
}

func (c *client) setTimeout() {
	ms := strconv.FormatInt(int64(c.w.cfg.SessionTimeout/time.Millisecond), 10)
	if _, err := c.do(c.w.cfg.ReplyTimeout, "set_timeout "+ms); err != nil {
		c.drop()
	}
}

// drop forgets a broken connection. The server may have noticed the break
// as soon as the last request was answered, so the session may expire a
// timeout after that.
func (c *client) drop() {
	if c.nc != nil {
		c.nc.Close()
		c.nc = nil
	}
	if c.label != "" {
		c.w.rec.Detach(c.id, c.label, c.lastAns, c.w.cfg.SessionTimeout)
	}
}

// do sends request lines in one write and reads one reply line each.
func (c *client) do(timeout time.Duration, lines ...string) ([]string, error) {
	invoked := c.w.rec.Now()
	c.nc.SetDeadline(time.Now().Add(timeout))
	if _, err := c.nc.Write([]byte(strings.Join(lines, "\r\n") + "\r\n")); err != nil {
		return nil, errConn
	}
	out := make([]string, 0, len(lines))
	for len(out) < len(lines) {
		l, err := c.r.ReadString('\n')
		if err != nil {
			return nil, errConn
		}
		l = strings.TrimSuffix(l, "\r\n")
		if strings.HasPrefix(l, "EVENT ") {
			// Events come between replies: record, and read on.
			c.event(l)
			continue
		}
		if l == "200 SESSION" { // a block: keep its lines
			for {
				m, err := c.r.ReadString('\n')
				if err != nil {
					return nil, errConn
				}
				m = strings.TrimSuffix(m, "\r\n")
				l += "\n" + m
				if m == "END" {
					break
				}
			}
		}
		out = append(out, l)
	}
	c.lastAns = invoked
	return out, nil
}

// step does one operation.
func (c *client) step() {
	cfg := c.w.cfg
	if c.elect {
		c.campaignStep()
		return
	}
	switch x := c.rng.Float64(); {
	case x < cfg.Reconnect:
		c.drop()
		return
	case x < cfg.Reconnect+cfg.UnlockAll:
		c.unlockAll()
		return
	}
	// Mostly release what is held soon, so that hot locks change hands
	// often; sometimes keep a lock and take another.
	if len(c.held) > 0 && c.rng.Float64() < 0.8 {
		for name := range c.held {
			c.unlock(name)
			return
		}
	}
	name := c.names[c.rng.IntN(len(c.names))]
	if c.held[name] {
		c.unlock(name)
		return
	}
	wait := 0
	if cfg.MaxWait > 0 && c.rng.IntN(2) == 0 {
		wait = 1 + c.rng.IntN(cfg.MaxWait)
	}
	mode := c.mode
	if mode == history.Shared && c.rng.IntN(3) == 0 {
		// Writers among the readers: an exclusive request waits for
		// every shared holder, and holds back the shared ones after it.
		mode = history.Exclusive
	}
	c.take(mode, name, wait)
	if c.held[name] {
		time.Sleep(time.Duration(c.rng.Int64N(int64(cfg.MaxHold))))
	}
}

// take asks for name in mode, waiting up to wait seconds.
func (c *client) take(mode history.Mode, name string, wait int) {
	c.takeAs(mode, name, wait, "")
}

// takeAs is take, as `campaign NAME VALUE` instead of `lock NAME` when
// value is set: a campaign is an exclusive grant that publishes a value.
func (c *client) takeAs(mode history.Mode, name string, wait int, value string) {
	op := history.Op{Client: c.id, Session: c.label, Name: name, Wait: wait}
	var waiting history.Kind
	var req string
	switch mode {
	case history.Exclusive:
		op.Kind, waiting, req = history.Lock, history.LockWait, "lock "+name
	case history.Shared:
		op.Kind, waiting, req = history.RLock, history.RLockWait, "rlock "+name
	case history.Permit:
		op.Kind, waiting, req = history.Acquire, history.AcquireWait, fmt.Sprintf("acquire %s %d", name, c.w.cfg.Permits)
		op.Limit = c.w.cfg.Permits
	}
	if value != "" {
		req = "campaign " + name + " " + value
	}
	if wait > 0 {
		op.Kind = waiting
		req += " " + strconv.Itoa(wait)
	}
	c.w.ops.Add(1)
	p := c.w.rec.Invoke(op)
	lines, err := c.do(c.w.cfg.ReplyTimeout+time.Duration(wait)*time.Second, req, "token "+name)
	if err != nil {
		c.w.unknown.Add(1)
		c.w.note(req, err.Error())
		p.Unknown()
		// A grant made as the connection was lost may be released by the
		// server, which cannot deliver it, before a resume completes.
		c.drops = append(c.drops, c.w.rec.InvokeAt(history.Op{Client: c.id, Session: c.label, Kind: history.Drop, Name: name}, p.Call()))
		c.drop()
		return
	}
	switch {
	case lines[0] == "200 Acquired" || value != "" && lines[0] == "200 Elected":
		tok, _ := strconv.ParseUint(strings.TrimPrefix(lines[1], "200 "), 10, 64)
		if !strings.HasPrefix(lines[1], "200 ") {
			tok = 0 // lost before we could ask; the checker allows that
		}
		c.w.acquired.Add(1)
		c.w.answer(name, p)
		p.Return(history.Result{Status: history.Acquired, Token: tok})
		c.held[name] = true
		// Exclusive holders write the fenced resource and shared ones
		// read it; permits exclude nobody, so nothing fences them.
		switch mode {
		case history.Exclusive:
			if tok != 0 {
				c.w.fence.Write(name, tok)
			}
		case history.Shared:
			c.w.shared.Add(1)
			if tok != 0 {
				c.w.fence.Read(name, tok)
			}
		case history.Permit:
			c.w.permits.Add(1)
		}
	case lines[0] == "409 Unavailable":
		c.w.unavailable.Add(1)
		c.w.answer(name, p)
		p.Return(history.Result{Status: history.Unavailable})
	case mode == history.Exclusive && strings.HasPrefix(lines[0], "400 no upgrade"):
		// The session holds the name shared: it was granted by a request
		// whose outcome the client did not learn. Release it.
		c.w.answer(name, p)
		p.Return(history.Result{Status: history.NoUpgrade})
		c.held[name] = true
	case strings.HasPrefix(lines[0], "503 "):
		c.w.refused.Add(1)
		c.w.note(req, lines[0])
		p.Return(history.Result{Status: history.Refused})
	case strings.HasPrefix(lines[0], "504 "):
		c.w.unknown.Add(1)
		c.w.note(req, lines[0])
		p.Unknown()
		c.held[name] = true // maybe: release it to be sure
	default:
		c.w.fail(fmt.Errorf("client %d: %s: unexpected reply %q", c.id, req, lines[0]))
		p.Return(history.Result{Status: history.Refused})
	}
}

func (c *client) unlock(name string) {
	c.w.ops.Add(1)
	p := c.w.rec.Invoke(history.Op{Client: c.id, Session: c.label, Kind: history.Unlock, Name: name})
	lines, err := c.do(c.w.cfg.ReplyTimeout, "unlock "+name)
	if err != nil {
		c.w.unknown.Add(1)
		c.w.note("unlock "+name, err.Error())
		p.Unknown()
		c.drop()
		return
	}
	switch l := lines[0]; {
	case l == "200 Unlocked":
		c.w.unlocked.Add(1)
		c.w.answer(name, p)
		p.Return(history.Result{Status: history.Unlocked})
		delete(c.held, name)
	case l == "403 not_locked":
		c.w.answer(name, p)
		p.Return(history.Result{Status: history.NotLocked})
		delete(c.held, name)
	case l == "403 not_yours":
		c.w.answer(name, p)
		p.Return(history.Result{Status: history.NotYours})
		delete(c.held, name)
	case strings.HasPrefix(l, "503 "):
		c.w.refused.Add(1)
		c.w.note("unlock "+name, l)
		p.Return(history.Result{Status: history.Refused})
	case strings.HasPrefix(l, "504 "):
		c.w.unknown.Add(1)
		c.w.note("unlock "+name, l)
		p.Unknown()
	default:
		c.w.fail(fmt.Errorf("client %d: unlock %s: unexpected reply %q", c.id, name, l))
		p.Return(history.Result{Status: history.Refused})
	}
}

func (c *client) unlockAll() {
	c.w.ops.Add(1)
	p := c.w.rec.Invoke(history.Op{Client: c.id, Session: c.label, Kind: history.UnlockAll})
	lines, err := c.do(c.w.cfg.ReplyTimeout, "unlock_all")
	if err != nil {
		c.w.unknown.Add(1)
		c.w.note("unlock_all", err.Error())
		p.Unknown()
		c.drop()
		return
	}
	switch l := lines[0]; {
	case l == "200 OK":
		p.Return(history.Result{Status: history.OK})
		clear(c.held)
	case strings.HasPrefix(l, "503 "):
		c.w.refused.Add(1)
		c.w.note("unlock_all", l)
		p.Return(history.Result{Status: history.Refused})
	case strings.HasPrefix(l, "504 "):
		c.w.unknown.Add(1)
		c.w.note("unlock_all", l)
		p.Unknown()
	default:
		c.w.fail(fmt.Errorf("client %d: unlock_all: unexpected reply %q", c.id, l))
		p.Return(history.Result{Status: history.Refused})
	}
}

// Check runs every checker on a history and the fence; it returns a
// summary and whether all passed. On failure it saves a report in dir.
//
// extra are verdicts checked elsewhere (the election's), reported and
// saved with the others.
func Check(ctx context.Context, h []history.Operation, fence *history.FencedResource, dir string, extra ...history.Verdict) (string, bool, error) {
	// Long faulted histories with many unknown outcomes take porcupine
	// minutes; a timeout reports Unknown, which fails the test.
	verdicts, err := history.CheckAll(h, 5*time.Minute)
	if err != nil {
		return "", false, err
	}
	verdicts = append(verdicts, fence.Check())
	verdicts = append(verdicts, extra...)
	ok := history.AllOK(verdicts)
	sum := history.Summary(h, verdicts...)
	if !ok && dir != "" {
		if err := history.SaveReport(dir, h, verdicts...); err != nil {
			return sum, ok, err
		}
	}
	return sum, ok, nil
}
