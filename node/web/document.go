package web

import (
	"context"
	"time"
)

// Document is /status.json, what the status page renders. Its field
// names are a contract with status.js and with whoever scripts against
// it.
type Document struct {
	// Time is when the document was made, in Unix milliseconds: the page
	// computes refusal rates between two documents with it.
	Time     int64       `json:"time"`
	Node     Self        `json:"node"`
	Ready    bool        `json:"ready"`
	NotReady string      `json:"not_ready,omitempty"`
	Leader   string      `json:"leader"`
	Members  []Member    `json:"members"`
	Parts    []Partition `json:"partitions"`
	// Counts is nil when they are not available (CountsError says why).
	Counts      *Counts   `json:"counts"`
	CountsError string    `json:"counts_error,omitempty"`
	Busiest     Busiest   `json:"busiest"`
	Refusals    []Refusal `json:"refusals"`
}

// Self is this node.
type Self struct {
	ID            string  `json:"id"`
	Version       string  `json:"version"`
	Started       int64   `json:"started"` // Unix milliseconds
	UptimeSeconds float64 `json:"uptime_seconds"`
	ClientAddr    string  `json:"client_addr"`
	GossipAddr    string  `json:"gossip_addr,omitempty"`
	PeerAddr      string  `json:"peer_addr,omitempty"`
}

// Member is one member of the cluster.
type Member struct {
	ID    string `json:"id"`
	Addr  string `json:"addr"`
	State string `json:"state"`
	Voter bool   `json:"voter"`
}

// Partition is one partition of the table. Synced is null where this
// node neither owns nor replicates it, and cannot know.
type Partition struct {
	Owner   string `json:"owner"`
	Replica string `json:"replica"`
	Epoch   uint64 `json:"epoch"`
	Mode    string `json:"mode"`
	Synced  *bool  `json:"synced"`
}

// Busiest are the names held longest and those with the longest queues.
type Busiest struct {
	Available bool       `json:"available"`
	Error     string     `json:"error,omitempty"`
	Held      []BusyName `json:"held"`
	Queued    []BusyName `json:"queued"`
	// Hidden counts the names left out because the identity may not
	// read them.
	Hidden int `json:"hidden"`
}

// BusyName is one of the busiest names.
type BusyName struct {
	Name    string `json:"name"`
	HeldMS  int64  `json:"held_ms"`
	Waiters int    `json:"waiters"`
	Label   string `json:"label,omitempty"`
}

// Refusal is the running total of one refusal counter
// (elock_refusals_total{code,reason}).
type Refusal struct {
	Code   string  `json:"code"`
	Reason string  `json:"reason"`
	Total  float64 `json:"total"`
}

// RefusalsMetric is the counter family the page computes refusal rates
// from.
const RefusalsMetric = "elock_refusals_total"

func (h *handler) document(ctx context.Context, id string, identified bool) Document {
	now := time.Now()
	ready, reason := h.cfg.Ready()
	o := h.cfg.Overview()
	d := Document{
		Time: now.UnixMilli(), Ready: ready, NotReady: reason, Leader: o.Leader,
		Node: Self{ID: o.ID, Version: h.cfg.Version, Started: h.cfg.Started.UnixMilli(),
			UptimeSeconds: now.Sub(h.cfg.Started).Seconds(),
			ClientAddr:    o.ClientAddr, GossipAddr: o.GossipAddr, PeerAddr: o.PeerAddr},
		Members:  []Member{},
		Parts:    []Partition{},
		Refusals: h.refusals(),
	}
	for _, m := range o.Members {
		d.Members = append(d.Members, Member{ID: m.ID, Addr: m.Addr, State: m.State, Voter: m.Voter})
	}
	for _, p := range o.Partitions {
		d.Parts = append(d.Parts, Partition{Owner: p.Owner, Replica: p.Replica, Epoch: p.Epoch, Mode: p.Mode, Synced: p.Synced})
	}
	if h.cfg.Counts != nil {
		if c, err := h.cfg.Counts(ctx); err != nil {
			d.CountsError = err.Error()
		} else {
			d.Counts = &c
		}
	}
	d.Busiest = h.busiest(ctx, id, identified)
	return d
}

// busiest lists the busiest names this identity may read.
func (h *handler) busiest(ctx context.Context, id string, identified bool) Busiest {
	b := Busiest{Held: []BusyName{}, Queued: []BusyName{}}
	if h.cfg.Busiest == nil {
		return b
	}
	b.Available = true
	for _, byWaiters := range []bool{false, true} {
		list, err := h.cfg.Busiest(ctx, byWaiters, BusiestLimit)
		if err != nil {
			b.Error = err.Error()
			continue
		}
		out := &b.Held
		if byWaiters {
			out = &b.Queued
		}
		for _, e := range list {
			if h.cfg.ACL != nil && (!identified || !h.cfg.ACL.MayRead(id, []byte(e.Name))) {
				b.Hidden++
				continue
			}
			*out = append(*out, BusyName{Name: e.Name, HeldMS: e.HeldFor.Milliseconds(), Waiters: e.Waiters, Label: e.Label})
		}
	}
	return b
}

// refusals reads the refusal counters from the gatherer.
func (h *handler) refusals() []Refusal {
	out := []Refusal{}
	mfs, err := h.cfg.Gatherer.Gather()
	if err != nil && len(mfs) == 0 {
		return out
	}
	for _, mf := range mfs {
		if mf.GetName() != RefusalsMetric {
			continue
		}
		for _, m := range mf.GetMetric() {
			r := Refusal{Total: m.GetCounter().GetValue()}
			for _, lp := range m.GetLabel() {
				switch lp.GetName() {
				case "code":
					r.Code = lp.GetValue()
				case "reason":
					r.Reason = lp.GetValue()
				}
			}
			out = append(out, r)
		}
	}
	return out
}
