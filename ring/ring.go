// Package ring is membership and placement for the elock mesh.
//
// Membership: a Ring runs a hashicorp/memberlist instance and tracks every
// node it has ever seen with its latest Meta and liveness State. Placement:
// Place maps partitions to an owner and a replica with buraksezer/consistent
// over xxhash, as a pure function of the member set.
//
// The ring is a hint. It decides nothing: gossip views differ between nodes,
// lag reality by seconds, and declare paused or cut-off nodes dead while they
// still run. Ownership authority (epochs, leases) lives in the control plane;
// the ring only feeds it candidates and routes requests on a best-effort
// basis. Keep lock logic out of this package.
package ring

import (
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Config configures a Ring. Start from DefaultConfig and set BindAddr, Meta
// and Join.
type Config struct {
	// BindAddr is the gossip address, host:port, for both UDP and TCP. The
	// host must be an IP literal ("0.0.0.0" binds all interfaces and then
	// advertises a private IP). Port 0 lets the OS choose; Ring.GossipAddr
	// reports the result.
	BindAddr string
	// Meta is what this node publishes. ID, Nonce and RingHash are fixed
	// for the Ring's life; the rest may change through UpdateMeta.
	Meta Meta
	// Join lists gossip addresses (host:port) of existing members. New
	// returns without waiting: a background loop retries them every
	// RetryJoinInterval until one join succeeds, like Consul's retry-join.
	// Failing to join is never fatal. Empty means "start a new cluster"
	// (others join this node).
	Join []string
	// RetryJoinInterval is the pause between initial join attempts.
	RetryJoinInterval time.Duration
	// RejoinInterval is the period, after the first successful join, of
	// re-joining the Join list plus every known member that is not alive.
	// memberlist alone never re-merges the two sides of a partition that
	// lasted more than about 20 s (each side has declared the other dead and
	// stops gossiping to it), so this loop is what heals them.
	RejoinInterval time.Duration
	// BroadcastTimeout bounds how long UpdateMeta waits for memberlist to
	// confirm that the new meta went out.
	BroadcastTimeout time.Duration
	// Keys encrypt and authenticate gossip (AES-GCM, memberlist's
	// keyring): the first encrypts what this node sends, every one is
	// tried on what it receives, so keys rotate by rolling restarts (add
	// the new key second, then make it first, then drop the old one). A
	// node without a key of the ring cannot join it or read its gossip.
	// Each is 16, 24 or 32 bytes. Empty: gossip in clear.
	Keys [][]byte
	// Logger receives the Ring's logs; memberlist's own log goes to it at
	// debug level. nil discards everything.
	Logger *slog.Logger
}

// DefaultConfig returns a Config with every default filled in. BindAddr is
// memberlist's customary port on all interfaces; Meta and Join are left for
// the caller. memberlist's own timings are always
// memberlist.DefaultLocalConfig() (crash detection ~4-6 s on loopback).
func DefaultConfig() Config {
	return Config{
		BindAddr:          "0.0.0.0:7946",
		RetryJoinInterval: time.Second,
		RejoinInterval:    10 * time.Second,
		BroadcastTimeout:  5 * time.Second,
	}
}

// Validate reports whether c can start a Ring.
func (c Config) Validate() error {
	if _, _, err := splitBindAddr(c.BindAddr); err != nil {
		return err
	}
	if err := c.Meta.Validate(); err != nil {
		return err
	}
	if _, err := c.Meta.Encode(); err != nil {
		return err
	}
	for i, k := range c.Keys {
		if err := ValidateKey(k); err != nil {
			return fmt.Errorf("ring: gossip key %d: %w", i+1, err)
		}
	}
	for _, j := range c.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			return fmt.Errorf("ring: join address %q: %w", j, err)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"RetryJoinInterval", c.RetryJoinInterval}, {"RejoinInterval", c.RejoinInterval}, {"BroadcastTimeout", c.BroadcastTimeout}} {
		if d.v <= 0 {
			return fmt.Errorf("ring: %s must be positive, got %v", d.name, d.v)
		}
	}
	return nil
}

// ValidateKey reports whether k can be a gossip key: 16, 24 or 32 bytes
// (AES-128, -192 or -256).
func ValidateKey(k []byte) error { return memberlist.ValidateKey(k) }

func splitBindAddr(s string) (host string, port int, err error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("ring: bind address %q: %w", s, err)
	}
	if h == "" {
		h = "0.0.0.0"
	}
	if _, err := netip.ParseAddr(h); err != nil {
		return "", 0, fmt.Errorf("ring: bind address %q: host must be an IP literal", s)
	}
	port, err = strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("ring: bind address %q: bad port", s)
	}
	return h, port, nil
}

// Ring is this node's membership view. All methods are safe for concurrent
// use.
//
// Lock order: lifeMu, then memberlist's internal locks, then mu. memberlist
// calls our delegates (which take mu) while holding its node lock, so no code
// may call into memberlist while holding mu.
type Ring struct {
	cfg  Config
	self string
	log  *slog.Logger
	// ml is set once in New before any goroutine of ours starts; our
	// delegates, which memberlist may call during memberlist.Create, never
	// touch it.
	ml *memberlist.Memberlist

	// lifeMu serialises UpdateMeta, Leave and Shutdown, so that memberlist
	// never sees UpdateNode or Leave after Shutdown (Leave then panics).
	lifeMu sync.Mutex
	left   bool // guarded by lifeMu
	shut   bool // guarded by lifeMu

	// The join loop is the only goroutine the Ring owns. stopLoop closes
	// stop and waits for it.
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	joined atomic.Bool

	mu        sync.Mutex
	meta      Meta                       // guarded by mu; our current meta
	metaBytes []byte                     // guarded by mu; meta encoded, <= MaxMetaSize
	members   map[string]Member          // guarded by mu; every node ever seen, by ID
	warned    map[string]string          // guarded by mu; key -> last warning logged for it (log-once)
	subs      map[chan struct{}]struct{} // guarded by mu
}

// New validates cfg, starts memberlist on cfg.BindAddr and the background
// join loop, and returns. It does not wait for a join: see Joined.
func New(cfg Config) (*Ring, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	metaBytes, _ := cfg.Meta.Encode() // checked by Validate
	host, port, _ := splitBindAddr(cfg.BindAddr)
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	cfg.Join = slices.Clone(cfg.Join)
	r := &Ring{
		cfg:       cfg,
		self:      cfg.Meta.ID,
		log:       lg,
		stop:      make(chan struct{}),
		meta:      cfg.Meta,
		metaBytes: metaBytes,
		members:   make(map[string]Member),
		warned:    make(map[string]string),
		subs:      make(map[chan struct{}]struct{}),
	}

	mc := memberlist.DefaultLocalConfig()
	mc.Name = cfg.Meta.ID
	mc.Logger = log.New(&logBridge{log: lg, onSuspect: r.localSuspect}, "", 0)
	tr, err := newTransport(host, port, mc.Logger)
	if err != nil {
		return nil, err
	}
	if port == 0 {
		port = tr.GetAutoBindPort()
	}
	mc.Transport = tr
	mc.BindAddr = host
	mc.BindPort = port
	mc.AdvertisePort = port // with AdvertiseAddr empty memberlist advertises the bound port anyway
	d := delegate{r}
	mc.Delegate = d
	mc.Events = d
	mc.Alive = d
	mc.Merge = d
	mc.Ping = d
	mc.Conflict = d
	if len(cfg.Keys) > 0 {
		kr, err := memberlist.NewKeyring(cfg.Keys, cfg.Keys[0])
		if err != nil {
			tr.Shutdown()
			return nil, fmt.Errorf("ring: gossip keys: %w", err)
		}
		// Both checks on: a node with the key neither sends nor accepts
		// anything in clear.
		mc.Keyring, mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = kr, true, true
	}

	ml, err := memberlist.Create(mc)
	if err != nil {
		tr.Shutdown()
		return nil, fmt.Errorf("ring: start memberlist on %s: %w", cfg.BindAddr, err)
	}
	r.ml = ml
	if len(cfg.Join) == 0 {
		r.joined.Store(true)
	}
	r.log.Info("ring started", "id", r.self, "gossip", r.GossipAddr(), "join", cfg.Join)

	r.wg.Add(1)
	go r.joinLoop()
	return r, nil
}

// Members returns every node this Ring has ever seen, itself included, with
// its latest Meta and State, sorted by ID.
//
// States are this node's view:
//   - Alive and Dead follow memberlist's join/leave events.
//   - Left is reported for a member that memberlist removed while its last
//     Meta had Leaving set and we did not suspect it. memberlist does not
//     say whether a removal was a failure or a graceful leave, so a node
//     that crashes after setting Leaving may show as Left, and one whose
//     leave message overtook its Leaving meta shows as Dead.
//   - Suspect covers only this node's own failed probes, not suspicion
//     heard by gossip, and it clears on the next successful direct probe or
//     alive event (which may take one probe round, ~members seconds, after
//     the peer refuted).
//
// A member is never removed: a restart under the same ID replaces its entry
// (with the new Nonce), and dead members stay listed as dead.
func (r *Ring) Members() []Member {
	r.mu.Lock()
	out := make([]Member, 0, len(r.members))
	for _, m := range r.members {
		out = append(out, m)
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// Self returns this node's own entry: its current Meta, Alive (Left after
// Leave) and its gossip address.
func (r *Ring) Self() Member {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.members[r.self]
}

// GossipAddr returns the address (host:port) memberlist advertises for this
// node: the bound port, and the bound IP unless that is 0.0.0.0.
func (r *Ring) GossipAddr() string {
	return r.ml.LocalNode().Address()
}

// Joined reports whether this node has exchanged state with at least one
// other member: a join of ours succeeded, or another node's alive message
// reached us. It is true from the start when Config.Join is empty. Once
// true it stays true, even if every peer dies later.
func (r *Ring) Joined() bool { return r.joined.Load() }

// Subscribe returns a channel that receives a value whenever a member's
// Meta or State changes or a new member appears, and a function that ends the
// subscription. The channel has capacity 1 and sends never block: signals
// coalesce, so a receiver must re-read Members rather than count signals. A
// signal may be spurious. The channel is never closed; the returned function
// is idempotent.
func (r *Ring) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	r.mu.Lock()
	r.subs[ch] = struct{}{}
	r.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			r.mu.Lock()
			delete(r.subs, ch)
			r.mu.Unlock()
		})
	}
}

// UpdateMeta applies fn to a copy of this node's Meta and publishes the
// result. ID, Nonce and RingHash must not change (ErrInvalidMeta); a result
// that does not validate or encodes to more than MaxMetaSize is refused
// (ErrInvalidMeta, ErrMetaTooLarge) and nothing changes.
//
// On success the new Meta is in effect locally (Self, Members, Subscribe) and
// UpdateMeta waited up to Config.BroadcastTimeout for memberlist to finish
// broadcasting it. ErrBroadcastTimeout means the meta is in effect but its
// spread is unconfirmed; gossip carries it on regardless. After Leave or
// Shutdown it returns ErrClosed.
func (r *Ring) UpdateMeta(fn func(*Meta)) error {
	r.lifeMu.Lock()
	defer r.lifeMu.Unlock()
	if r.left || r.shut {
		return ErrClosed
	}
	return r.updateMetaLocked(fn, r.cfg.BroadcastTimeout)
}

// updateMetaLocked is UpdateMeta with lifeMu held and an explicit timeout.
func (r *Ring) updateMetaLocked(fn func(*Meta), timeout time.Duration) error {
	r.mu.Lock()
	old := r.meta
	r.mu.Unlock()
	next := old
	fn(&next)
	if next.ID != old.ID || next.Nonce != old.Nonce || next.RingHash != old.RingHash {
		return fmt.Errorf("%w: ID, Nonce and RingHash are immutable", ErrInvalidMeta)
	}
	if err := next.Validate(); err != nil {
		return err
	}
	b, err := next.Encode()
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.meta, r.metaBytes = next, b
	r.mu.Unlock()
	// UpdateNode re-reads our meta through delegate.NodeMeta, bumps our
	// incarnation and gossips an alive message; NotifyUpdate then records
	// the new meta in r.members.
	if err := r.ml.UpdateNode(timeout); err != nil {
		return fmt.Errorf("%w: %v", ErrBroadcastTimeout, err)
	}
	return nil
}

// Leave gracefully leaves the cluster within timeout (which must be
// positive). It stops the join loop for good, publishes Meta.Leaving (so
// peers report this node as Left rather than Dead), then broadcasts
// memberlist's leave. It does not shut memberlist down: call Shutdown next.
//
// ErrBroadcastTimeout means the leave went out unconfirmed; peers that miss
// it will see this node as dead after Shutdown. Leave is idempotent and
// returns ErrClosed after Shutdown.
func (r *Ring) Leave(timeout time.Duration) error {
	if timeout <= 0 {
		return fmt.Errorf("ring: Leave timeout must be positive, got %v", timeout)
	}
	r.lifeMu.Lock()
	defer r.lifeMu.Unlock()
	if r.shut {
		return ErrClosed
	}
	if r.left {
		return nil
	}
	deadline := time.Now().Add(timeout)
	r.stopLoop()
	metaErr := r.updateMetaLocked(func(m *Meta) { m.Leaving = true }, timeout/2)
	if metaErr != nil && !errors.Is(metaErr, ErrBroadcastTimeout) {
		return metaErr // unreachable: setting Leaving keeps Meta valid
	}
	r.left = true
	rest := max(time.Until(deadline), time.Millisecond)
	if err := r.ml.Leave(rest); err != nil {
		return fmt.Errorf("%w: %v", ErrBroadcastTimeout, err)
	}
	r.log.Info("ring left", "id", r.self)
	return metaErr
}

// Shutdown stops and joins the join loop, then shuts memberlist down without
// a leave message (peers will detect a failure unless Leave came first). It
// is idempotent.
//
// memberlist does not join its own goroutines: a probe in flight at Shutdown
// may finish up to about one ProbeInterval (1 s) later and report its result
// to the Ring's delegate. That only updates the (now frozen) member table.
func (r *Ring) Shutdown() error {
	r.lifeMu.Lock()
	defer r.lifeMu.Unlock()
	if r.shut {
		return nil
	}
	r.shut = true
	r.stopLoop()
	// After the loop is joined no Join can race with memberlist's shutdown.
	if err := r.ml.Shutdown(); err != nil {
		return fmt.Errorf("ring: memberlist shutdown: %w", err)
	}
	r.log.Info("ring shut down", "id", r.self)
	return nil
}

// stopLoop signals the join loop to stop and waits for it. An in-flight
// memberlist Join is not interruptible; it ends within about two memberlist
// TCPTimeouts (1 s each in DefaultLocalConfig).
func (r *Ring) stopLoop() {
	r.stopOnce.Do(func() { close(r.stop) })
	r.wg.Wait()
}

// joinLoop retries Config.Join until one join succeeds, then re-joins
// periodically. Owned by the Ring: started in New, stopped by stopLoop.
func (r *Ring) joinLoop() {
	defer r.wg.Done()
	if len(r.cfg.Join) > 0 {
		for attempt := 1; ; attempt++ {
			if r.joinEach(r.cfg.Join) > 0 && r.ml.NumMembers() > 1 {
				r.joined.Store(true)
				r.log.Info("ring joined", "id", r.self, "attempts", attempt, "members", r.ml.NumMembers())
				break
			}
			if attempt == 1 {
				r.log.Info("ring join failed, retrying", "id", r.self, "join", r.cfg.Join, "every", r.cfg.RetryJoinInterval)
			}
			if !r.sleep(r.cfg.RetryJoinInterval) {
				return
			}
		}
	}
	t := time.NewTicker(r.cfg.RejoinInterval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.joinEach(r.rejoinTargets())
		}
	}
}

// rejoinTargets is the Join list plus the gossip address of every known
// member, other than ourselves, that is not alive.
func (r *Ring) rejoinTargets() []string {
	targets := slices.Clone(r.cfg.Join)
	r.mu.Lock()
	for id, m := range r.members {
		if id != r.self && m.State != Alive && m.GossipAddr != "" {
			targets = append(targets, m.GossipAddr)
		}
	}
	r.mu.Unlock()
	slices.Sort(targets)
	return slices.Compact(targets)
}

// joinEach joins the addresses one at a time, checking for stop between
// them so that Shutdown waits for at most one Join. It skips our own address
// and returns how many joins succeeded. Failures are expected (peers not up
// yet, or gone) and logged at debug.
func (r *Ring) joinEach(addrs []string) int {
	self := r.GossipAddr()
	ok := 0
	for _, a := range addrs {
		select {
		case <-r.stop:
			return ok
		default:
		}
		if a == self {
			continue
		}
		if _, err := r.ml.Join([]string{a}); err != nil {
			r.log.Debug("ring join attempt failed", "id", r.self, "addr", a, "err", err)
			continue
		}
		ok++
	}
	return ok
}

// sleep waits d or until stop; it reports false on stop.
func (r *Ring) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-r.stop:
		return false
	case <-t.C:
		return true
	}
}

// notifyLocked signals every subscriber without blocking. mu must be held.
func (r *Ring) notifyLocked() {
	for ch := range r.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// setMemberLocked records m and signals subscribers if anything changed.
func (r *Ring) setMemberLocked(m Member) {
	old, seen := r.members[m.ID]
	if seen && old == m {
		return
	}
	r.members[m.ID] = m
	r.notifyLocked()
	switch {
	case !seen:
		r.log.Info("ring member seen", "id", r.self, "member", m.ID, "state", m.State, "addr", m.GossipAddr)
	case old.Nonce != m.Nonce:
		r.log.Info("ring member restarted", "id", r.self, "member", m.ID, "state", m.State, "old_nonce", old.Nonce, "nonce", m.Nonce)
	case old.State != m.State:
		r.log.Info("ring member state", "id", r.self, "member", m.ID, "from", old.State, "to", m.State)
	default:
		r.log.Debug("ring member meta", "id", r.self, "member", m.ID, "leaving", m.Leaving)
	}
}

// warnOnceLocked logs msg at warn unless detail is what was last logged for
// key, so a condition that memberlist reports on every gossip message is
// logged once. mu must be held.
func (r *Ring) warnOnceLocked(key, detail, msg string, args ...any) {
	if d, ok := r.warned[key]; ok && d == detail {
		return
	}
	r.warned[key] = detail
	r.log.Warn(msg, args...)
}

// localSuspect marks an alive member Suspect after our own probe failed
// (see logBridge). It never overrides Dead or Left.
func (r *Ring) localSuspect(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m, ok := r.members[name]; ok && m.State == Alive && name != r.self {
		m.State = Suspect
		r.setMemberLocked(m)
	}
}
