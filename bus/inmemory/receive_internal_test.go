package inmemory

import (
	"context"
	"runtime"
	"strconv"
	"testing"
)

// A receiver that keeps up with its publisher is not woken by each
// publish. On one processor, a publisher that yields between messages, as
// HTTP handlers do on a saturated core, alternates with a receiver that
// takes each message as it comes. A receiver that blocked whenever it found
// nothing ready had to be woken by nearly every publish, and each wake-up
// took the publisher's next-to-run slot from net/http's connection
// goroutines (see receiveSpins): 1967 wake-ups for 2000 messages here.
func TestKeepingUpReceiverIsNotWokenByEachPublish(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	dt, h := openPair(t, "keeping-up")
	const n = 2000
	ctx := context.Background()
	errc := make(chan error, 1)
	go func() {
		for got := 0; got < n; {
			ms, err := h.ReceiveBatch(ctx, 16)
			if err != nil {
				errc <- err
				return
			}
			for _, m := range ms {
				if err := h.Ack(ctx, m); err != nil {
					errc <- err
					return
				}
			}
			got += len(ms)
		}
		errc <- nil
	}()
	for i := range n {
		sendN(t, dt, "m"+strconv.Itoa(i)+"-", 1)
		runtime.Gosched()
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	h.s.mu.Lock()
	wakes := h.s.wakes
	h.s.mu.Unlock()
	if wakes > n/10 {
		t.Fatalf("publishing %d messages to a receiver keeping up woke it %d times, want at most %d", n, wakes, n/10)
	}
	t.Logf("%d messages, %d wake-ups", n, wakes)
}
