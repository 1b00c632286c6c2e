package testcluster

import (
	"errors"
	"fmt"
	"strings"
)

// What WaitConverged asks of each node, in mesh mode:
//
//	stats   -> "STAT node_ready 1" and "STAT cluster_index N", N the same
//	           on every live node;
//	members -> "MEMBER <id> <client-addr> <alive|suspect|dead|left>
//	           <voter|member>" lines, listing every live node alive at
//	           its client address, and no other node alive or suspect.
//
// A standalone node (no mesh flags) only has to answer stats.

// member is one line of a "members" reply.
type member struct {
	id, addr, status, role string
}

// view is what one node says about the cluster.
type view struct {
	stats   map[string]string
	members []member
}

// parseMembers parses the body of a "members" reply.
func parseMembers(body []string) ([]member, error) {
	ms := make([]member, 0, len(body))
	for _, l := range body {
		f := strings.Fields(l)
		if len(f) != 5 || f[0] != "MEMBER" {
			return nil, fmt.Errorf("bad members line %q", l)
		}
		ms = append(ms, member{id: f[1], addr: f[2], status: f[3], role: f[4]})
	}
	return ms, nil
}

// probe asks the node at addr for its stats and, in mesh mode, its
// members, on one connection.
func probe(addr string, mesh bool) (view, error) {
	c, err := DialConn(nil, addr)
	if err != nil {
		return view{}, err
	}
	defer c.Close()
	h, body, err := c.Lines("stats")
	if err != nil {
		return view{}, err
	}
	if h != "200 STATS" {
		return view{}, fmt.Errorf("stats answered %q", h)
	}
	v := view{stats: statMap(body)}
	if !mesh {
		return v, nil
	}
	h, body, err = c.Lines("members")
	if err != nil {
		return view{}, err
	}
	if h != "200 MEMBERS" {
		return view{}, fmt.Errorf("members answered %q", h)
	}
	if v.members, err = parseMembers(body); err != nil {
		return view{}, err
	}
	return v, nil
}

// checkConverged checks the views of the live nodes (views[i] is live[i]'s)
// against what the harness knows: live are running, down are killed,
// stopped or paused. It returns the common cluster index, or an error
// that lists every reason the cluster has not converged.
func checkConverged(live, down []*Node, views []view) (string, error) {
	var why []string
	index := ""
	sameIndex := true
	for i, n := range live {
		v := views[i]
		if r := v.stats["node_ready"]; r != "1" {
			if r == "" {
				r = "missing"
			}
			why = append(why, fmt.Sprintf("%s: node_ready %s (lease %s, unsynced %s, index %s, leader %s)", n.ID, r,
				v.stats["node_lease"], v.stats["node_partitions_unsynced"], v.stats["cluster_index"], v.stats["cluster_leader"]))
		}
		ix, ok := v.stats["cluster_index"]
		switch {
		case !ok:
			why = append(why, n.ID+": no cluster_index")
		case i == 0:
			index = ix
		case ix != index:
			sameIndex = false
		}
		seen := make(map[string]member, len(v.members))
		for _, m := range v.members {
			seen[m.id] = m
		}
		for _, o := range live {
			m, ok := seen[o.ID]
			switch {
			case !ok:
				why = append(why, fmt.Sprintf("%s: does not list %s", n.ID, o.ID))
			case m.status != "alive":
				why = append(why, fmt.Sprintf("%s: lists %s as %s", n.ID, o.ID, m.status))
			case m.addr != o.ClientAddr:
				why = append(why, fmt.Sprintf("%s: lists %s at %s, not %s", n.ID, o.ID, m.addr, o.ClientAddr))
			}
			delete(seen, o.ID)
		}
		for _, o := range down {
			if m, ok := seen[o.ID]; ok && (m.status == "alive" || m.status == "suspect") {
				why = append(why, fmt.Sprintf("%s: lists %s, which is down, as %s", n.ID, o.ID, m.status))
			}
			delete(seen, o.ID)
		}
		for _, m := range v.members {
			if _, unknown := seen[m.id]; unknown && (m.status == "alive" || m.status == "suspect") {
				why = append(why, fmt.Sprintf("%s: lists unknown node %s (%s) as %s", n.ID, m.id, m.addr, m.status))
			}
		}
	}
	if !sameIndex {
		ixs := make([]string, len(live))
		for i, n := range live {
			ixs[i] = n.ID + "=" + views[i].stats["cluster_index"]
		}
		why = append(why, "cluster_index differs: "+strings.Join(ixs, " "))
	}
	if len(why) > 0 {
		return "", errors.New(strings.Join(why, "; "))
	}
	return index, nil
}
