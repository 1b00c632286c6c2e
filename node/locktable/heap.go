package locktable

// deadlined is an entry of a deadlineHeap: it knows its deadline and keeps
// its own position, so removal is O(log n) without a search.
type deadlined[T any] interface {
	comparable
	when() Time
	index() *int
	// before orders entries with equal deadlines, so that the heap's
	// shape, and the order of expiries, depend only on its entries.
	before(T) bool
}

// deadlineHeap is a binary min-heap on deadlines. Index -1 means "not in
// the heap".
type deadlineHeap[T deadlined[T]] struct{ items []T }

func (h *deadlineHeap[T]) min() (Time, bool) {
	if len(h.items) == 0 {
		return 0, false
	}
	return h.items[0].when(), true
}

func (h *deadlineHeap[T]) peek() (T, bool) {
	if len(h.items) == 0 {
		var zero T
		return zero, false
	}
	return h.items[0], true
}

func (h *deadlineHeap[T]) push(x T) {
	*x.index() = len(h.items)
	h.items = append(h.items, x)
	h.up(len(h.items) - 1)
}

func (h *deadlineHeap[T]) remove(x T) {
	i := *x.index()
	if i < 0 || i >= len(h.items) || h.items[i] != x {
		return
	}
	last := len(h.items) - 1
	if i != last {
		h.swap(i, last)
	}
	var zero T
	h.items[last] = zero
	h.items = h.items[:last]
	*x.index() = -1
	if i != last {
		h.down(i)
		h.up(i)
	}
}

func (h *deadlineHeap[T]) swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	*h.items[i].index() = i
	*h.items[j].index() = j
}

func (h *deadlineHeap[T]) less(i, j int) bool {
	a, b := h.items[i], h.items[j]
	if a.when() != b.when() {
		return a.when() < b.when()
	}
	return a.before(b)
}

func (h *deadlineHeap[T]) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h *deadlineHeap[T]) down(i int) {
	n := len(h.items)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			return
		}
		h.swap(i, m)
		i = m
	}
}
