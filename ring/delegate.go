package ring

import (
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate implements memberlist's delegate interfaces for a Ring. It is a
// separate type so that these callbacks are not part of Ring's API.
//
// memberlist calls NotifyAlive, NotifyJoin, NotifyLeave, NotifyUpdate and
// NotifyConflict while holding its node lock: none of them may call into
// memberlist (they take r.mu only; see the lock order on Ring). Events are
// delivered one at a time, so r.members sees them in memberlist's order.
type delegate struct{ r *Ring }

var (
	_ memberlist.Delegate         = delegate{}
	_ memberlist.EventDelegate    = delegate{}
	_ memberlist.AliveDelegate    = delegate{}
	_ memberlist.MergeDelegate    = delegate{}
	_ memberlist.PingDelegate     = delegate{}
	_ memberlist.ConflictDelegate = delegate{}
)

// NodeMeta returns our encoded meta. The slice is never mutated after it is
// published (updates replace it), so memberlist may keep it.
func (d delegate) NodeMeta(limit int) []byte {
	d.r.mu.Lock()
	defer d.r.mu.Unlock()
	if len(d.r.metaBytes) > limit {
		// Unreachable: Encode enforces MaxMetaSize, which is memberlist's
		// limit. Returning nothing beats memberlist's panic.
		return nil
	}
	return d.r.metaBytes
}

// The ring gossips nothing but membership.
func (delegate) NotifyMsg([]byte)                {}
func (delegate) GetBroadcasts(int, int) [][]byte { return nil }
func (delegate) LocalState(bool) []byte          { return nil }
func (delegate) MergeRemoteState([]byte, bool)   {}

// NotifyAlive admits a peer only if its meta decodes, names the peer
// itself, and carries our RingHash. Returning an error makes memberlist
// ignore the alive message, so a refused peer never becomes a member.
func (d delegate) NotifyAlive(n *memberlist.Node) error {
	return d.r.admit(n.Name, n.Meta)
}

// NotifyMerge refuses a join (either direction) when any live node of the
// other side would be refused by NotifyAlive: the two sides are different
// clusters. Dead and left nodes of the other side are not checked; they
// cannot become members without an alive message, which NotifyAlive vets.
func (d delegate) NotifyMerge(peers []*memberlist.Node) error {
	for _, n := range peers {
		if n.State != memberlist.StateAlive && n.State != memberlist.StateSuspect {
			continue // here, unlike in events, memberlist does fill State in
		}
		if err := d.r.admit(n.Name, n.Meta); err != nil {
			return err
		}
	}
	return nil
}

func (d delegate) NotifyJoin(n *memberlist.Node)   { d.r.observe(n, false) }
func (d delegate) NotifyUpdate(n *memberlist.Node) { d.r.observe(n, false) }
func (d delegate) NotifyLeave(n *memberlist.Node)  { d.r.observe(n, true) }

// AckPayload: our acks carry nothing.
func (delegate) AckPayload() []byte { return nil }

// NotifyPingComplete reports a successful direct probe of other: it clears
// our local suspicion of it.
func (d delegate) NotifyPingComplete(other *memberlist.Node, _ time.Duration, _ []byte) {
	r := d.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if m, ok := r.members[other.Name]; ok && m.State == Suspect {
		m.State = Alive
		r.setMemberLocked(m)
	}
}

// NotifyConflict: two live nodes claim one ID. memberlist keeps the first;
// it is a misconfiguration (or a restart on a new address before the old
// instance was declared dead), worth a warning once per address.
func (d delegate) NotifyConflict(existing, other *memberlist.Node) {
	r := d.r
	r.mu.Lock()
	defer r.mu.Unlock()
	r.warnOnceLocked("conflict/"+other.Name, other.Address(), "ring: two nodes claim one id",
		"id", r.self, "member", other.Name, "known_addr", existing.Address(), "other_addr", other.Address())
}

// admit decides whether a node may be a member; see NotifyAlive.
func (r *Ring) admit(name string, raw []byte) error {
	m, err := DecodeMeta(raw)
	var reason string
	switch {
	case err != nil:
		reason = err.Error()
	case m.ID != name:
		reason = fmt.Sprintf("meta id %q differs from node name", m.ID)
	case m.RingHash != r.cfg.Meta.RingHash:
		reason = fmt.Sprintf("ring hash %s differs from ours (%s)", m.RingHash, r.cfg.Meta.RingHash)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	key := "refuse/" + name
	if reason == "" {
		delete(r.warned, key) // a later refusal of this name is news again
		return nil
	}
	r.warnOnceLocked(key, reason, "ring: refused peer", "id", r.self, "member", name, "reason", reason)
	return fmt.Errorf("ring: refused peer %s: %s", name, reason)
}

// observe records an event about n. For a removal (gone), memberlist does
// not say whether n failed or left (Node.State is never filled in for
// events), so we call it Left only if its last meta announced Leaving and
// our own probes had not found it failing.
func (r *Ring) observe(n *memberlist.Node, gone bool) {
	meta, err := DecodeMeta(n.Meta)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		// Unreachable for peers (NotifyAlive vetted this meta).
		r.warnOnceLocked("decode/"+n.Name, err.Error(), "ring: undecodable member meta", "id", r.self, "member", n.Name, "err", err)
		return
	}
	st := Alive
	if gone {
		st = Dead
		if old, ok := r.members[n.Name]; meta.Leaving && (!ok || old.State != Suspect) {
			st = Left
		}
	}
	if n.Name != r.self && !gone {
		r.joined.Store(true)
	}
	r.setMemberLocked(Member{Meta: meta, State: st, GossipAddr: n.Address()})
}
