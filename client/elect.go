package client

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/elock/elock/node/wire"
)

// Campaign makes the session the leader of name: it takes name
// exclusively, waiting as long as ctx allows, as Lock does, and publishes
// value for Leader to tell. It returns the leadership term: the grant's
// fencing token, which grows with every new leader.
//
// Leadership is an exclusive lock in every other way: it is held,
// checked after a resume and reported lost as one, and the published
// value is kept by the server with the grant, so it survives a resume
// with it. A Campaign of a name the session leads already returns at
// once with the same term and publishes value. Resign (or Unlock) gives
// leadership up.
//
// value must be non-empty, must not be "-" and must not contain a space,
// CR or LF (ErrInvalidValue); a value longer than the server's limit is
// a *ServerError 413. If the session holds name shared, Campaign returns
// ErrNoUpgrade, and if name is a semaphore ErrKindMismatch (both inside a
// *ServerError).
func (c *Client) Campaign(ctx context.Context, name, value string) (uint64, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	if err := checkValue(value); err != nil {
		return 0, err
	}
	return c.take(ctx, grant{verb: "campaign", name: name, value: value, exclusive: true}, true)
}

// TryCampaign is Campaign without waiting for the leader to go: it
// returns ErrUnavailable if another session leads (or holds) name.
func (c *Client) TryCampaign(ctx context.Context, name, value string) (uint64, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	if err := checkValue(value); err != nil {
		return 0, err
	}
	return c.take(ctx, grant{verb: "campaign", name: name, value: value, exclusive: true}, false)
}

// Proclaim changes the value the session publishes while it leads name.
// It returns ErrNotYours if another session leads, or if this session
// holds name only shared, and ErrNotLocked if nobody holds it. value is
// checked as for Campaign.
func (c *Client) Proclaim(ctx context.Context, name, value string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := checkValue(value); err != nil {
		return err
	}
	// Sending it again after a 503 or 504 is safe: a second proclaim of
	// the same value changes nothing.
	return c.call(ctx, "proclaim "+strconv.Quote(name), func(ctx context.Context, cn *conn) error {
		return cn.ask("proclaim " + name + " " + value)
	})
}

// Resign gives up the leadership of name; it is Unlock, under the name
// elections use.
func (c *Client) Resign(ctx context.Context, name string) error {
	return c.Unlock(ctx, name)
}

// LeaderInfo is who leads a name, as Leader tells it. It never reveals
// which session leads.
type LeaderInfo struct {
	// Token is the leadership term: the leader's fencing token.
	Token uint64
	// Value is what the leader published; empty if it published none,
	// as a session holding name with a plain Lock does.
	Value string
}

// Leader returns the leader of name: the session that holds it
// exclusively, whether it took it with Campaign or Lock. It returns
// ErrNoLeader if nobody does, including while name is held only shared
// or is a semaphore.
func (c *Client) Leader(ctx context.Context, name string) (LeaderInfo, error) {
	if err := checkName(name); err != nil {
		return LeaderInfo{}, err
	}
	var li LeaderInfo
	err := c.call(ctx, "leader "+strconv.Quote(name), func(ctx context.Context, cn *conn) error {
		if err := cn.send("leader " + name); err != nil {
			return err
		}
		r, err := cn.read()
		if err != nil {
			return err
		}
		if r.code == wire.CodeUnavailable {
			// leader's only 409: not ErrUnavailable, which is about a
			// request of this session.
			return ErrNoLeader
		}
		if !r.ok() {
			return r.err()
		}
		li, err = parseLeader(r)
		return err
	})
	return li, err
}

// parseLeader reads "200 LEADER <token> <value>", value "-" for none.
func parseLeader(r resp) (LeaderInfo, error) {
	rest, ok := strings.CutPrefix(r.text, "LEADER ")
	tok, v, ok2 := strings.Cut(rest, " ")
	t, err := strconv.ParseUint(tok, 10, 64)
	if !ok || !ok2 || err != nil || v == "" {
		// The reply was one line, so the stream is still in step: an
		// error of this call, not of the connection, or exec would ask
		// again until ctx ends.
		return LeaderInfo{}, fmt.Errorf("%w: bad leader reply %q", errProtocol, r.text)
	}
	if v == "-" {
		v = ""
	}
	return LeaderInfo{Token: t, Value: v}, nil
}
