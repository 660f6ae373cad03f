package snssqs

import (
	"context"
	"sync"
	"time"

	"github.com/payrail/payrail/bus/driver"
)

// maxBatch is the most entries SQS and SNS take in one batch request.
const maxBatch = 10

// item is one entry of a batch request: a message to publish, a receipt
// handle to delete, a visibility change. The sender sets err.
type item[T any] struct {
	v    T
	size int // bytes the entry adds to the request's payload limit
	err  error
}

// chunk is a caller's run of entries that fits one request; it is the unit
// queued in a batcher, so that a caller's batch is never split further.
type chunk[T any] struct {
	items []*item[T]
	size  int
	ctx   context.Context // the caller's: a chunk whose caller gave up is dropped
	done  chan struct{}   // closed once every item has its result
}

// batcher coalesces concurrent operations into batch requests, "natural
// batching" with no added latency: each sender goroutine takes the first
// waiting chunk and, without waiting, every other one already queued that
// still fits (maxBatch entries, maxBytes of payload), and sends them in one
// request. An idle batcher therefore sends a single entry at once, alone;
// under load entries queue up while the senders are busy and requests fill.
// A caller's own entries are cut into full chunks first, so a batch of 25
// takes three requests.
//
// A batcher has one or more shards, each with its own queue and senders;
// an entry goes to the shard its key picks. FIFO publishing uses shards
// with one sender each, keyed by message group, so that the entries of a
// group are sent one request after another, in order.
type batcher[T any] struct {
	shards   []chan *chunk[T]
	maxBytes int
	send     func(ctx context.Context, batch []*item[T])
	timeout  time.Duration // bound on each batch request
	wg       sync.WaitGroup

	mu     sync.RWMutex // held for reading while enqueueing, for writing by close
	closed bool
}

// newBatcher starts shards × senders goroutines; send performs one batch
// request and records each entry's error.
func newBatcher[T any](shards, senders, maxBytes int, timeout time.Duration, send func(ctx context.Context, batch []*item[T])) *batcher[T] {
	b := &batcher[T]{maxBytes: maxBytes, send: send, timeout: timeout}
	for range shards {
		ch := make(chan *chunk[T], 4*senders)
		b.shards = append(b.shards, ch)
		for range senders {
			b.wg.Add(1)
			go b.run(ch)
		}
	}
	return b
}

// enqueue queues the entries (entry i to shard shard(i), in order) and
// waits until every one was sent or ctx is done. It returns the entries'
// errors, in order; a nil slice means all succeeded.
func (b *batcher[T]) enqueue(ctx context.Context, vs []T, sizes []int, shard func(i int) int) ([]error, error) {
	items := make([]*item[T], len(vs))
	perShard := make([][]*item[T], len(b.shards))
	for i, v := range vs {
		it := &item[T]{v: v}
		if sizes != nil {
			it.size = sizes[i]
		}
		items[i] = it
		s := 0
		if shard != nil {
			s = shard(i) % len(b.shards)
		}
		perShard[s] = append(perShard[s], it)
	}
	var chunks []*chunk[T]
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return nil, driver.ErrClosed
	}
	for s, its := range perShard {
		for len(its) > 0 {
			c := &chunk[T]{ctx: ctx, done: make(chan struct{})}
			for len(its) > 0 && len(c.items) < maxBatch && (len(c.items) == 0 || b.maxBytes <= 0 || c.size+its[0].size <= b.maxBytes) {
				c.items = append(c.items, its[0])
				c.size += its[0].size
				its = its[1:]
			}
			select {
			case b.shards[s] <- c:
				chunks = append(chunks, c)
			case <-ctx.Done():
				b.mu.RUnlock()
				// Chunks already queued are still sent (unless their
				// context is done first): the caller cannot know which.
				return nil, ctx.Err()
			}
		}
	}
	b.mu.RUnlock()
	for _, c := range chunks {
		select {
		case <-c.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	var errs []error
	for i, it := range items {
		if it.err != nil {
			if errs == nil {
				errs = make([]error, len(items))
			}
			errs[i] = it.err
		}
	}
	return errs, nil
}

// do enqueues one entry and returns its error.
func (b *batcher[T]) do(ctx context.Context, v T, size int, shard int) error {
	errs, err := b.enqueue(ctx, []T{v}, []int{size}, func(int) int { return shard })
	if err != nil {
		return err
	}
	if errs != nil {
		return errs[0]
	}
	return nil
}

func (b *batcher[T]) run(ch chan *chunk[T]) {
	defer b.wg.Done()
	var carry *chunk[T] // a chunk that did not fit the previous request
	for {
		first := carry
		carry = nil
		if first == nil {
			var ok bool
			if first, ok = <-ch; !ok {
				return // closed and drained
			}
		}
		chunks := []*chunk[T]{first}
		n, size := len(first.items), first.size
	fill:
		for n < maxBatch {
			select {
			case c, ok := <-ch:
				if !ok {
					break fill
				}
				if n+len(c.items) > maxBatch || (b.maxBytes > 0 && size+c.size > b.maxBytes) {
					carry = c
					break fill
				}
				chunks = append(chunks, c)
				n, size = n+len(c.items), size+c.size
			default:
				break fill
			}
		}
		var batch []*item[T]
		live := chunks[:0]
		for _, c := range chunks {
			if err := c.ctx.Err(); err != nil {
				for _, it := range c.items {
					it.err = err
				}
				close(c.done)
				continue
			}
			live = append(live, c)
			batch = append(batch, c.items...)
		}
		if len(batch) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
			b.send(ctx, batch)
			cancel()
			for _, c := range live {
				close(c.done)
			}
		}
	}
}

// close stops accepting entries, lets the senders send the ones already
// queued, and waits for them to finish.
func (b *batcher[T]) close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	for _, ch := range b.shards {
		close(ch)
	}
	b.mu.Unlock()
	b.wg.Wait()
}
