package mesh

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elock/elock/node"
	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/node/peer"
	"github.com/elock/elock/replication"
)

// home is the Backend of a mesh node: it carries out the commands of this
// node's clients, each at the owner of its partition (which may be this
// node, in which case the call stays in the process), and keeps the
// sessions attached here alive (homeSessions).
type home struct {
	self     replication.Incarnation
	rt       *router
	table    Table
	call     Caller
	sessions *homeSessions
	log      *slog.Logger
	// members lists the gossip members, for the members command; status
	// returns this node's own stat lines.
	members func() []node.Member
	status  func() []node.StatLine
	// work runs the waits, which end with the mesh.
	work    *workers
	nextReq atomic.Uint64
	watches homeWatches
}

var (
	_ node.Backend  = (*home)(nil)
	_ node.Topology = (*home)(nil)
	_ node.Lister   = (*home)(nil)
	_ node.Watcher  = (*home)(nil)
)

// Attach implements node.Backend: the session's owner records it; if the
// session is attached to another home, it is taken over once that home
// confirms the session's connection is gone or its renewals stop.
func (h *home) Attach(ctx context.Context, id string) (locktable.Attachment, error) {
	return h.sessions.attach(ctx, id)
}

// Detach implements node.Backend.
func (h *home) Detach(ctx context.Context, s node.SessionRef) error {
	return h.sessions.detach(ctx, s)
}

// SetTimeout implements node.Backend.
func (h *home) SetTimeout(ctx context.Context, s node.SessionRef, d time.Duration) error {
	var e peer.Enc
	e.Str(s.ID)
	e.Int(int64(d))
	_, err := h.rt.route(ctx, h.rt.partOf([]byte(s.ID)), peer.SetTimeout, e.B, true)
	if err == nil {
		h.sessions.setTimeout(s.ID, d)
	}
	return err
}

// errSessionMoved refuses a request from a home whose attachment of the
// session is no longer current: the same refusal as the partition set's
// for a lock a later attachment was told of.
var errSessionMoved = partition.ErrLaterAttachment

// Lock implements node.Backend. A lock without a wait is one round trip to
// the owner; it is safe to send again after a lost reply, because a lock
// the session already holds is granted again with the same token. A
// waiting lock returns at once as Queued and is carried by a goroutine
// that follows the partition to its new owner, minus the time already
// waited (wait.go).
func (h *home) Lock(ctx context.Context, s node.SessionRef, name []byte, want locktable.Want, wait time.Duration, done partition.Done) (locktable.Result, node.Wait, error) {
	if !h.sessions.current(s) {
		return locktable.Result{}, nil, errSessionMoved
	}
	if wait <= 0 {
		b, err := h.rt.route(ctx, h.rt.partOf(name), peer.Lock, wantPayload(s, name, want, 0, ""), true)
		if err != nil {
			return locktable.Result{}, nil, err
		}
		res, err := decodeResult(b)
		if err == nil && res.Status == locktable.Granted {
			h.sessions.held(s.ID, string(name), true)
		}
		return res, nil, err
	}
	w := &meshWait{h: h, s: s, name: string(name), want: want, done: done, deadline: time.Now().Add(wait)}
	if !h.work.start(ctx, w.run) {
		return locktable.Result{}, nil, errClosed
	}
	return locktable.Result{Status: locktable.Queued}, w, nil
}

// Unlock implements node.Backend. If the reply is lost and the new owner
// says the lock is free or another's, the first request was carried out,
// if the home knew the session held the lock when it sent it. If it did
// not know (an earlier unlock or drop of the name ended with its outcome
// unknown, so the lock may have gone then), the answer is unknown too:
// "unlocked" would claim a release the session may not have made, while
// another session held the lock (found by the fault suite, full run 34
// seed 26).
func (h *home) Unlock(ctx context.Context, s node.SessionRef, name []byte) (locktable.Result, error) {
	if !h.sessions.current(s) {
		return locktable.Result{}, errSessionMoved
	}
	sure := h.sessions.holds(s.ID, string(name))
	payload := lockPayload(s, name, 0, "")
	b, err := h.rt.route(ctx, h.rt.partOf(name), peer.Unlock, payload, false)
	if errors.Is(err, errIndeterminate) {
		b, err = h.rt.route(ctx, h.rt.partOf(name), peer.Unlock, payload, true)
		switch {
		case err == nil:
			if res, derr := decodeResult(b); derr == nil && res.Status != locktable.Unlocked {
				if !sure {
					err = failure.Unknown(failure.Unavailable, "unlock "+string(name)+": the request may have been carried out, and the session may not have held the lock when it was sent; outcome unknown")
					break
				}
				b = encodeResult(locktable.Result{Status: locktable.Unlocked})
			}
		case failure.ClassOf(err) != failure.Indeterminate:
			// The second request failing says nothing of the first, which
			// may have released the lock: "nothing happened" (503) would
			// let the client believe it still holds it.
			err = failure.Unknown(failure.Unavailable, "unlock "+string(name)+": the request may have been carried out and asking again failed ("+failure.Text(err)+"); outcome unknown")
		}
	}
	if err != nil {
		h.unsure(s.ID, string(name), err)
		return locktable.Result{}, err
	}
	res, err := decodeResult(b)
	if err == nil && res.Status != locktable.Granted {
		// Unlocked, or not the session's (not_yours, not_locked): either
		// way it holds the lock no more.
		h.sessions.held(s.ID, string(name), false)
	}
	return res, err
}

// unsure forgets that the session holds name after a release of it whose
// outcome is unknown: it may hold the lock or not, and a later unlock
// must not count on it (see Unlock).
func (h *home) unsure(id, name string, err error) {
	if failure.ClassOf(err) == failure.Indeterminate {
		h.sessions.held(id, name, false)
	}
}

// Drop implements node.Backend. It asks again through a lost reply:
// taking back the same grant twice finds it gone the second time.
func (h *home) Drop(ctx context.Context, s node.SessionRef, name []byte, token uint64) (locktable.Result, error) {
	var e peer.Enc
	e.Str(s.ID)
	e.Uint(s.Epoch)
	e.Uint(s.Born)
	e.Bytes(name)
	e.Uint(token)
	b, err := h.rt.route(ctx, h.rt.partOf(name), peer.Drop, e.B, true)
	if err != nil {
		h.unsure(s.ID, string(name), err)
		return locktable.Result{}, err
	}
	res, err := decodeResult(b)
	if err == nil && res.Status == locktable.Unlocked {
		h.sessions.held(s.ID, string(name), false)
	}
	return res, err
}

// UnlockAll implements node.Backend: every owner releases the session's
// locks, up to this attachment's epoch: arriving late, after the session
// was resumed at another home, it leaves what that resume listed and
// what was granted since.
func (h *home) UnlockAll(ctx context.Context, s node.SessionRef) error {
	if !h.sessions.current(s) {
		return errSessionMoved
	}
	if err := h.rt.releaseEverywhere(ctx, s.ID, s.Epoch); err != nil {
		if failure.ClassOf(err) == failure.Indeterminate {
			h.sessions.forgetHeld(s.ID) // some may be gone: none is sure
		}
		return err
	}
	h.sessions.forgetHeld(s.ID)
	return nil
}

// Token implements node.Backend.
func (h *home) Token(ctx context.Context, s node.SessionRef, name []byte) (uint64, locktable.Status, error) {
	b, err := h.rt.route(ctx, h.rt.partOf(name), peer.Token, lockPayload(s, name, 0, ""), true)
	if err != nil {
		return 0, 0, err
	}
	res, err := decodeResult(b)
	return res.Token, res.Status, err
}

// Proclaim implements node.Backend. Asking again after a lost reply is
// safe: setting a value twice sets it once.
func (h *home) Proclaim(ctx context.Context, s node.SessionRef, name []byte, value string) (locktable.Result, error) {
	if !h.sessions.current(s) {
		return locktable.Result{}, errSessionMoved
	}
	b, err := h.rt.route(ctx, h.rt.partOf(name), peer.Proclaim, wantPayload(s, name, locktable.Want{Value: value}, 0, ""), true)
	if err != nil {
		return locktable.Result{}, err
	}
	return decodeResult(b)
}

// Leader implements node.Backend.
func (h *home) Leader(ctx context.Context, name []byte) (uint64, string, bool, error) {
	b, err := h.rt.route(ctx, h.rt.partOf(name), peer.Leader, lockPayload(node.SessionRef{}, name, 0, ""), true)
	if err != nil {
		return 0, "", false, err
	}
	d := peer.Dec{B: b}
	ok, tok, value := d.Bool(), d.Uint(), d.Str()
	return tok, value, ok, d.End()
}

// Info implements node.Backend.
func (h *home) Info(ctx context.Context, s node.SessionRef, name []byte) (locktable.Info, error) {
	b, err := h.rt.route(ctx, h.rt.partOf(name), peer.Info, lockPayload(s, name, 0, ""), true)
	if err != nil {
		return locktable.Info{}, err
	}
	d := peer.Dec{B: b}
	in := locktable.Info{Held: d.Bool(), Mine: d.Bool(), Token: d.Uint(), HeldFor: time.Duration(d.Int()), Waiters: int(d.Uint())}
	if len(d.B) > 0 {
		in.Kind, in.Mode = locktable.Kind(min(d.Uint(), 1)), locktable.Mode(min(d.Uint(), uint64(locktable.Permit)))
		in.Holders, in.Limit = int(min(d.Uint(), math.MaxInt32)), uint32(min(d.Uint(), math.MaxUint32))
	}
	return in, d.End()
}

// HeldBy implements node.Backend, from the locks the home knows the
// session holds (rebuilt from the owners when the session is resumed
// here).
func (h *home) HeldBy(_ context.Context, s node.SessionRef) (int, error) {
	return h.sessions.count(s.ID), nil
}

// Stats implements node.Backend: clients and locks of the whole cluster,
// the sum of every live node's own figures, and this node's own lines.
func (h *home) Stats(ctx context.Context, _ int) (node.Stats, error) {
	st := h.table.State()
	var (
		mu  sync.Mutex
		sum node.Stats
		wg  sync.WaitGroup
	)
	for _, n := range st.Nodes {
		if n.Leaving && n.ID != h.self.ID {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			b, err := callNode(cctx, h.call, n, peer.NodeStat, nil)
			if err != nil {
				return
			}
			d := peer.Dec{B: b}
			c, l, w, s, g := d.Uint(), d.Uint(), d.Uint(), d.Uint(), d.Uint()
			if d.End() != nil {
				return
			}
			mu.Lock()
			sum.Clients += int(c)
			sum.Locks += int(l)
			sum.Waiters += int(w)
			sum.Sessions += int(s)
			sum.Grants += g
			mu.Unlock()
		}()
	}
	wg.Wait()
	sum.Extra = h.status()
	return sum, nil
}

// Members implements node.Topology.
func (h *home) Members(context.Context) ([]node.Member, error) { return h.members(), nil }

// Where implements node.Topology.
func (h *home) Where(_ context.Context, name []byte) (node.Placement, error) {
	p := h.rt.partOf(name)
	part := h.table.State().Part(p)
	return node.Placement{Partition: p, Owner: orDash(part.Owner), Replica: orDash(part.Replica), Epoch: part.Epoch}, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// newReq names a queued lock request uniquely across the mesh: this
// incarnation and a counter.
func (h *home) newReq() string {
	return h.self.ID + "/" + h.self.Nonce + "/" + strconv.FormatUint(h.nextReq.Add(1), 10)
}
