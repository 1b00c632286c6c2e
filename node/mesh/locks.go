package mesh

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/elock/elock/node"
	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/peer"
	"github.com/elock/elock/replication"
)

// The locks command across the mesh: the node a client asks gathers the
// held locks from every partition's owner (List), then the labels of
// their holders from every member, where the holders' connections are
// (Labels). Session ids travel only between nodes: the answer carries
// labels.

// maxListBytes bounds one owner's answer to List, well under
// peer.MaxFrame: with long names a limit's worth of locks may not fit,
// and the owner cuts its answer short and says it is truncated.
const maxListBytes = 4 << 20

// labelBatch is how many session ids one Labels request asks about, to
// keep a request far under peer.MaxFrame.
const labelBatch = 4096

// labelTimeout bounds the wait for a member's labels: a label is a
// courtesy, and a member that does not answer in time shows none.
const labelTimeout = time.Second

// maxListing bounds the List requests an owner serves at once; more are
// refused as retryable (errListBusy), and the asker tries again until its
// deadline.
const maxListing = 4

var errListBusy = failure.Retry(failure.Busy, "too many lock listings in progress; retry")

// listCallTimeout bounds one List call to an owner; the gathering as a
// whole is bounded by routeTimeout and the caller's context.
const listCallTimeout = 3 * time.Second

// list is an owner's side of List: the held locks of the requested
// partitions it serves, the first limit in the order asked, and the
// partitions it does not serve (the asker finds their owner again).
func (o *lockOwner) list(_ context.Context, b []byte) ([]byte, error) {
	select {
	case o.listing <- struct{}{}:
		defer func() { <-o.listing }()
	default:
		return nil, errListBusy
	}
	d := peer.Dec{B: b}
	prefix := d.Bytes()
	limit, order := d.Uint(), d.Uint()
	n := d.Len()
	if n > o.set.Partitions() {
		return nil, peer.ErrMalformed
	}
	parts := make([]int, n)
	for i := range parts {
		parts[i] = int(d.Uint())
	}
	if err := d.End(); err != nil {
		return nil, err
	}
	if len(prefix) > o.lim.maxName || limit < 1 || limit > node.MaxLockLimit || order > uint64(locktable.ListByWaiters) {
		return nil, peer.ErrMalformed
	}
	seen := make([]bool, o.set.Partitions())
	for _, p := range parts {
		if p < 0 || p >= len(seen) || seen[p] {
			return nil, peer.ErrMalformed // out of range, or asked twice
		}
		seen[p] = true
	}
	ls, truncated, missed := o.set.List(parts, prefix, int(limit), locktable.ListOrder(order))
	budget := o.lim.listBytes
	if budget == 0 {
		budget = maxListBytes
	}
	var e, body peer.Enc
	kept := 0
	for _, x := range ls {
		if kept > 0 && len(body.B)+len(x.Name)+len(x.Session) > budget {
			truncated = true
			break
		}
		body.Str(x.Name)
		body.Uint(x.Token)
		body.Int(int64(x.HeldFor))
		body.Uint(uint64(x.Waiters))
		body.Str(x.Session)
		kept++
	}
	e.Uint(uint64(kept))
	e.B = append(e.B, body.B...)
	e.Bool(truncated)
	e.Uint(uint64(len(missed)))
	for _, p := range missed {
		e.Uint(uint64(p))
	}
	return e.B, nil
}

// listed is one owner's answer to List.
type listed struct {
	locks     []locktable.Listed
	truncated bool
	missed    []int
}

// decodeListed reads an owner's answer to a List of the partitions
// asked. What it relays to a client is checked as a client's own input
// would be: a name that could break the reply's line, or a partition
// that was not asked about, makes the answer malformed.
func decodeListed(b []byte, asked []int) (listed, error) {
	d := peer.Dec{B: b}
	var out listed
	n := d.Count(5)
	out.locks = make([]locktable.Listed, 0, n)
	for range n {
		x := locktable.Listed{Name: d.Str(), Token: d.Uint(), HeldFor: time.Duration(d.Int()), Waiters: int(d.Uint()), Session: d.Str()}
		if x.Name == "" || strings.ContainsAny(x.Name, " \r\n") {
			return listed{}, peer.ErrMalformed
		}
		out.locks = append(out.locks, x)
	}
	out.truncated = d.Bool()
	m := d.Len()
	for range m {
		p := int(d.Uint())
		if !slices.Contains(asked, p) || slices.Contains(out.missed, p) {
			return listed{}, peer.ErrMalformed
		}
		out.missed = append(out.missed, p)
	}
	return out, d.End()
}

// labels is a home's side of Labels: the labels of those of the sessions
// asked about that are attached here and set one.
func (s *homeSessions) labels(_ context.Context, _ peer.Method, b []byte, reply func([]byte, error)) {
	d := peer.Dec{B: b}
	n := d.Count(1)
	if n > labelBatch {
		reply(nil, peer.ErrMalformed)
		return
	}
	ids := make([]string, 0, n)
	for range n {
		ids = append(ids, d.Str())
	}
	if err := d.End(); err != nil {
		reply(nil, err)
		return
	}
	got := s.clients.Labels(ids)
	var e peer.Enc
	e.Uint(uint64(len(got)))
	for id, l := range got {
		e.Str(id)
		e.Str(l)
	}
	reply(e.B, nil)
}

// Locks implements node.Lister: it asks the owner of every partition, in
// parallel, one request per owner, for its first q.Limit held locks under
// q.Prefix, and merges them. A partition its owner does not serve (it
// moved, or the owner is unreachable) is asked of its owner in a newer
// table, until every partition has answered or routeTimeout (or ctx)
// ends: then the whole command fails, never with part of the list.
func (h *home) Locks(ctx context.Context, q node.LockQuery) (node.LockList, error) {
	deadline := time.Now().Add(routeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	order := q.Order.ListOrder()
	var (
		all       []locktable.Listed
		truncated bool
		// bound is the last lock an owner listed of a truncated answer:
		// what it left out comes after it, so the merge is exact only up
		// to the earliest such lock.
		bound *locktable.Listed
		last  error
	)
	pending := make([]int, h.rt.parts)
	for p := range pending {
		pending[p] = p
	}
	for {
		st := h.table.State()
		var again []int
		if !st.Initialized() {
			again, last = pending, fmt.Errorf("the partition table is not ready")
		} else {
			byOwner := map[replication.Node][]int{}
			for _, p := range pending {
				part := st.Part(p)
				n, ok := st.Node(part.Owner)
				if !ok || n.Nonce != part.ONonce {
					again = append(again, p)
					last = fmt.Errorf("%s has no reachable owner", failure.Partition(p))
					continue
				}
				byOwner[n] = append(byOwner[n], p)
			}
			var (
				mu sync.Mutex // guards what the goroutines below add to
				wg sync.WaitGroup
			)
			for n, parts := range byOwner {
				wg.Add(1)
				go func() {
					defer wg.Done()
					d := time.Now().Add(listCallTimeout)
					if deadline.Before(d) {
						d = deadline
					}
					cctx, cancel := context.WithDeadline(ctx, d)
					defer cancel()
					b, err := callNode(cctx, h.call, n, peer.List, encodeList(q, parts))
					var got listed
					if err == nil {
						got, err = decodeListed(b, parts)
					}
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						again, last = append(again, parts...), fmt.Errorf("node %s: %w", n.ID, err)
						return
					}
					all = append(all, got.locks...)
					if got.truncated {
						truncated = true
						if k := len(got.locks); k > 0 && (bound == nil || order.Compare(got.locks[k-1], *bound) < 0) {
							bound = &got.locks[k-1]
						}
					}
					if len(got.missed) > 0 {
						again = append(again, got.missed...)
						last = fmt.Errorf("%s moved from node %s", failure.Partition(got.missed[0]), n.ID)
					}
				}()
			}
			wg.Wait()
		}
		if len(again) == 0 {
			break
		}
		if ctx.Err() != nil || !time.Now().Before(deadline) {
			slices.Sort(again)
			return node.LockList{}, failure.Retry(failure.Unavailable, fmt.Sprintf("%s unavailable (%s)", failure.Partition(again[0]), failure.Text(last)))
		}
		pending = again
		wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		waitNewer(wctx, h.table, st.Index)
		cancel()
	}
	slices.SortFunc(all, order.Compare)
	if bound != nil {
		cut, _ := slices.BinarySearchFunc(all, *bound, order.Compare)
		all = all[:min(cut+1, len(all))]
	}
	if len(all) > q.Limit {
		all, truncated = all[:q.Limit], true
	}
	return node.Entries(all, truncated, h.labels(ctx, node.Holders(all))), nil
}

// encodeList is the body of a List request for parts.
func encodeList(q node.LockQuery, parts []int) []byte {
	var e peer.Enc
	e.Bytes(q.Prefix)
	e.Uint(uint64(q.Limit))
	e.Uint(uint64(q.Order.ListOrder()))
	e.Uint(uint64(len(parts)))
	for _, p := range parts {
		e.Uint(uint64(p))
	}
	return e.B
}

// labels asks every member of the table, in parallel, for the labels of
// the sessions ids attached to it. A member that does not answer within
// labelTimeout shows no labels: the listing does not wait on a courtesy.
func (h *home) labels(ctx context.Context, ids []string) map[string]string {
	out := map[string]string{}
	if len(ids) == 0 {
		return out
	}
	var (
		mu sync.Mutex // guards out
		wg sync.WaitGroup
	)
	// Only members gossip sees alive: a dead one would cost every
	// listing the whole labelTimeout, and has no connections anyway.
	alive := map[string]bool{}
	for _, m := range h.members() {
		alive[m.ID] = m.State == "alive"
	}
	for _, n := range h.table.State().Nodes {
		if !alive[n.ID] {
			continue
		}
		for batch := range slices.Chunk(ids, labelBatch) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cctx, cancel := context.WithTimeout(ctx, labelTimeout)
				defer cancel()
				var e peer.Enc
				e.Uint(uint64(len(batch)))
				for _, id := range batch {
					e.Str(id)
				}
				b, err := callNode(cctx, h.call, n, peer.Labels, e.B)
				if err != nil {
					return
				}
				d := peer.Dec{B: b}
				k := d.Count(2)
				got := make(map[string]string, k)
				for range k {
					id, l := d.Str(), d.Str()
					if node.ValidLabel([]byte(l)) == "" { // relayed to clients: checked as theirs
						got[id] = l
					}
				}
				if d.End() != nil {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				for id, l := range got {
					out[id] = l
				}
			}()
		}
	}
	wg.Wait()
	return out
}
