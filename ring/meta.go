package ring

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"

	"github.com/hashicorp/memberlist"
)

// MaxMetaSize is the largest encoded Meta memberlist accepts. memberlist
// panics (rather than returning an error) when a delegate hands it more, so
// every path that publishes meta checks this bound first.
const MaxMetaSize = memberlist.MetaMaxSize

// maxIDLen bounds node ids so that a Meta with two host:port addresses stays
// far below MaxMetaSize.
const maxIDLen = 64

// Sentinel errors. They are wrapped with %w; test with errors.Is.
var (
	// ErrMetaTooLarge: the encoded Meta exceeds MaxMetaSize.
	ErrMetaTooLarge = errors.New("ring: node meta too large")
	// ErrInvalidMeta: a Meta field is malformed, or an update touched an
	// immutable field (ID, Nonce, RingHash).
	ErrInvalidMeta = errors.New("ring: invalid node meta")
	// ErrClosed: the Ring has left the cluster or has been shut down.
	ErrClosed = errors.New("ring: closed")
	// ErrBroadcastTimeout: a meta update (or leave) was applied locally, but
	// memberlist did not confirm its broadcast in time. It will still spread
	// by gossip and push/pull; the outcome is unknown, not failed.
	ErrBroadcastTimeout = errors.New("ring: broadcast not confirmed in time")
)

// Meta is what a node publishes about itself in memberlist's node meta. Every
// member sees every other member's latest Meta (see Ring.Members).
//
// The JSON tags are short on purpose: the whole encoding must fit in
// MaxMetaSize bytes.
type Meta struct {
	// ID is the node id and also its memberlist node name. It is unique in
	// the cluster and stable across restarts.
	ID string `json:"id"`
	// Nonce is random per process start (see NewNonce). A member whose Nonce
	// changes under the same ID has restarted: treat it as the death of the
	// old instance, whatever state gossip reports.
	Nonce string `json:"n"`
	// ClientAddr is the elock protocol address (host:port), empty if none.
	ClientAddr string `json:"c,omitempty"`
	// PeerAddr is the internal RPC address (host:port), empty if none.
	PeerAddr string `json:"p,omitempty"`
	// Voter is true when the node was started with -bootstrap-expect.
	Voter bool `json:"v,omitempty"`
	// Expect is the node's bootstrap-expect; 0 exactly when !Voter.
	Expect int `json:"e,omitempty"`
	// RingHash identifies the placement configuration (see RingHash). Peers
	// with another RingHash are refused as members.
	RingHash string `json:"r"`
	// Leaving is set once the node has begun a graceful leave. It also lets
	// peers tell "left" from "dead" (memberlist does not expose which one
	// it saw; see Ring.Members).
	Leaving bool `json:"l,omitempty"`
	// RaftID is the node's raft server id in the control plane: its ID
	// when it keeps raft state on disk, else ID#Nonce, a new server each
	// boot, so that a node that lost its log never votes under the
	// identity that had it.
	RaftID string `json:"rf,omitempty"`
}

// NewNonce returns a fresh random boot nonce (16 hex characters).
func NewNonce() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// Validate reports whether m can be published.
func (m Meta) Validate() error {
	if err := validID(m.ID); err != nil {
		return err
	}
	if m.Nonce == "" {
		return fmt.Errorf("%w: empty nonce", ErrInvalidMeta)
	}
	if m.RingHash == "" {
		return fmt.Errorf("%w: empty ring hash", ErrInvalidMeta)
	}
	for _, a := range []struct{ name, v string }{{"client", m.ClientAddr}, {"peer", m.PeerAddr}} {
		if a.v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			return fmt.Errorf("%w: %s address %q: %v", ErrInvalidMeta, a.name, a.v, err)
		}
	}
	switch {
	case m.Expect < 0:
		return fmt.Errorf("%w: negative expect %d", ErrInvalidMeta, m.Expect)
	case m.Voter && m.Expect == 0:
		return fmt.Errorf("%w: voter without bootstrap-expect", ErrInvalidMeta)
	case !m.Voter && m.Expect != 0:
		return fmt.Errorf("%w: non-voter with bootstrap-expect %d", ErrInvalidMeta, m.Expect)
	}
	return nil
}

// validID accepts 1..64 characters from [A-Za-z0-9._-]. The restriction keeps
// ids printable on the wire (the members command) and in memberlist's log
// lines, which the Ring reads (see logBridge).
func validID(id string) error {
	if id == "" || len(id) > maxIDLen {
		return fmt.Errorf("%w: id must be 1..%d characters, got %d", ErrInvalidMeta, maxIDLen, len(id))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return fmt.Errorf("%w: id %q has character %q outside [A-Za-z0-9._-]", ErrInvalidMeta, id, c)
		}
	}
	return nil
}

// Encode returns the wire form of m. It fails with ErrMetaTooLarge when the
// result would exceed MaxMetaSize; it does not validate the fields.
func (m Meta) Encode() ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("ring: encode meta: %w", err)
	}
	if len(b) > MaxMetaSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMetaTooLarge, len(b), MaxMetaSize)
	}
	return b, nil
}

// DecodeMeta parses b as produced by Meta.Encode and validates it.
func DecodeMeta(b []byte) (Meta, error) {
	var m Meta
	if len(b) > MaxMetaSize {
		return Meta{}, fmt.Errorf("%w: %d bytes, limit %d", ErrMetaTooLarge, len(b), MaxMetaSize)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return Meta{}, fmt.Errorf("%w: %v", ErrInvalidMeta, err)
	}
	if err := m.Validate(); err != nil {
		return Meta{}, err
	}
	return m, nil
}

// State is a member's liveness as this node last saw it. It is a hint from
// gossip, never authority: two nodes may disagree, and a "dead" node may be
// alive and still believe it owns partitions.
type State int

const (
	// Alive: memberlist considers the node a member and we have no local
	// suspicion of it.
	Alive State = iota
	// Suspect: this node's own probes of the member failed recently and
	// memberlist has not yet decided. See Ring.Members for the limits.
	Suspect
	// Dead: memberlist declared the member failed.
	Dead
	// Left: the member announced a graceful leave and then left.
	Left
)

// String returns "alive", "suspect", "dead" or "left". These strings appear
// on the wire in the members command: do not change them.
func (s State) String() string {
	switch s {
	case Alive:
		return "alive"
	case Suspect:
		return "suspect"
	case Dead:
		return "dead"
	case Left:
		return "left"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// Member is one node as seen by this node.
type Member struct {
	Meta
	State State
	// GossipAddr is the member's memberlist address (host:port).
	GossipAddr string
}
