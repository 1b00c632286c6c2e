package node

import (
	"context"
	"strconv"

	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/node/wire"
)

// Version is reported by "stats" and "elockd -version".
const Version = "0.1.0"

// Member is one line of the members command.
type Member struct {
	ID    string
	Addr  string // client address
	State string // alive, suspect, dead or left
	Voter bool
}

// Placement is the answer of the where command.
type Placement struct {
	Partition int
	Owner     string
	Replica   string // "-" when there is none
	Epoch     uint64
}

// Topology is implemented by backends that can describe the cluster:
// the members and where commands.
type Topology interface {
	Members(ctx context.Context) ([]Member, error)
	Where(ctx context.Context, name []byte) (Placement, error)
}

// Members lists this single node.
func (l *Local) Members(context.Context) ([]Member, error) {
	return []Member{{ID: l.Home, Addr: l.Addr, State: "alive", Voter: true}}, nil
}

// Where places name in its partition on this node, which has no replica.
func (l *Local) Where(_ context.Context, name []byte) (Placement, error) {
	p := partition.Of(name, l.Set.Partitions())
	return Placement{Partition: p, Owner: l.Home, Replica: "-", Epoch: l.Set.Epoch(p)}, nil
}

var _ Topology = (*Local)(nil)

func (c *conn) topology() Topology {
	t, _ := c.s.backend.(Topology)
	return t
}

func (c *conn) cmdMembers() {
	t := c.topology()
	if t == nil {
		c.out = wire.AppendUnknown(c.out, c.req.Verb)
		return
	}
	ms, err := t.Members(c.s.ctx)
	if err != nil {
		c.fail(err)
		return
	}
	c.out = append(c.out, wire.MembersHead...)
	for _, m := range ms {
		role := "member"
		if m.Voter {
			role = "voter"
		}
		c.out = append(c.out, "MEMBER "...)
		c.out = append(c.out, m.ID...)
		c.out = append(c.out, ' ')
		c.out = append(c.out, m.Addr...)
		c.out = append(c.out, ' ')
		c.out = append(c.out, m.State...)
		c.out = append(c.out, ' ')
		c.out = append(c.out, role...)
		c.out = append(c.out, '\r', '\n')
	}
	c.out = append(c.out, wire.End...)
}

func (c *conn) cmdWhere() {
	name := c.req.Args[0]
	if !c.name(name) {
		return
	}
	t := c.topology()
	if t == nil {
		c.out = wire.AppendUnknown(c.out, c.req.Verb)
		return
	}
	pl, err := t.Where(c.s.ctx, name)
	if err != nil {
		c.fail(err)
		return
	}
	c.out = append(c.out, wire.WhereHeader...)
	c.out = wire.AppendStat(c.out, "partition", int64(pl.Partition))
	c.out = wire.AppendStatText(c.out, "owner", pl.Owner)
	c.out = wire.AppendStatText(c.out, "replica", pl.Replica)
	c.out = wire.AppendStatText(c.out, "epoch", strconv.FormatUint(pl.Epoch, 10))
	c.out = append(c.out, wire.End...)
}
