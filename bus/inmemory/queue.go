package inmemory

// ring is a FIFO queue backed by a power-of-two circular buffer. It grows as
// needed and shrinks again once it is mostly empty, so a burst does not pin
// its peak memory forever. The zero value is an empty queue.
type ring[T any] struct {
	buf  []T
	head int
	n    int
}

// minRingCap is the smallest buffer a ring allocates, and the size below
// which it never shrinks.
const minRingCap = 16

func (r *ring[T]) len() int { return r.n }

func (r *ring[T]) push(v T) {
	if r.n == len(r.buf) {
		r.resize(max(2*len(r.buf), minRingCap))
	}
	r.buf[(r.head+r.n)&(len(r.buf)-1)] = v
	r.n++
}

// pop removes and returns the oldest element; ok is false if r is empty.
func (r *ring[T]) pop() (v T, ok bool) {
	if r.n == 0 {
		return v, false
	}
	var zero T
	v = r.buf[r.head]
	r.buf[r.head] = zero // drop the reference for the garbage collector
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
	if len(r.buf) > minRingCap && r.n < len(r.buf)/4 {
		r.resize(len(r.buf) / 2)
	}
	return v, true
}

// at returns the i-th oldest element; 0 <= i < r.len().
func (r *ring[T]) at(i int) T { return r.buf[(r.head+i)&(len(r.buf)-1)] }

// each calls f for every element, oldest first.
func (r *ring[T]) each(f func(T)) {
	for i := range r.n {
		f(r.at(i))
	}
}

func (r *ring[T]) resize(size int) {
	buf := make([]T, size)
	for i := range r.n {
		buf[i] = r.at(i)
	}
	r.buf, r.head = buf, 0
}

// timedHeap is a min-heap of entries ordered by due time: in-flight entries
// (due when their lease expires) and delayed entries (due when a nack delay
// ends). Each entry records its index so that it can be removed or re-keyed
// in O(log n) when it is settled or extended.
type timedHeap []*entry

func (h timedHeap) less(i, j int) bool { return h[i].due < h[j].due }

func (h timedHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}

func (h *timedHeap) push(e *entry) {
	e.idx = len(*h)
	*h = append(*h, e)
	h.up(e.idx)
}

// remove deletes e, which must be in h.
func (h *timedHeap) remove(e *entry) {
	i := e.idx
	last := len(*h) - 1
	if i != last {
		h.swap(i, last)
	}
	(*h)[last] = nil
	*h = (*h)[:last]
	e.idx = -1
	if i != last {
		h.fix(i)
	}
	if c := cap(*h); c > 4*minRingCap && len(*h) < c/4 {
		*h = append(make(timedHeap, 0, c/2), *h...)
	}
}

// popMin removes and returns the entry with the earliest due time; h must
// not be empty.
func (h *timedHeap) popMin() *entry {
	e := (*h)[0]
	h.remove(e)
	return e
}

// fix restores the heap order after the due time of the entry at i changed.
func (h timedHeap) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h timedHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

// down sifts the entry at i towards the leaves and reports whether it moved.
func (h timedHeap) down(i int) bool {
	start := i
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		c := l
		if r := l + 1; r < n && h.less(r, l) {
			c = r
		}
		if !h.less(c, i) {
			break
		}
		h.swap(i, c)
		i = c
	}
	return i > start
}
