package bus_test

import (
	"bytes"
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/payrail/payrail/bus"
	_ "github.com/payrail/payrail/bus/inmemory"
)

// goroutineID is the running goroutine's id, from its stack trace's header
// ("goroutine 42 [running]:"): tests only.
func goroutineID() int64 {
	var b [64]byte
	s := b[:runtime.Stack(b[:], false)]
	s = bytes.TrimPrefix(s, []byte("goroutine "))
	id, _ := strconv.ParseInt(string(s[:bytes.IndexByte(s, ' ')]), 10, 64)
	return id
}

// Handlers run on kept goroutines, not one started per message: a
// subscription handling one message after another runs them all on as
// many goroutines as its concurrency at most (the old receiver started a
// goroutine per message: a stack grown anew for every handler, and a
// goroutine churn that starved a saturated one-core server's connections).
// Once Receive returns, none of them is left.
func TestHandlersReuseGoroutines(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const name, n, concurrency = "inmemory://handlers-reuse", 200, 4
	topic, err := bus.OpenTopic(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	defer topic.Close()
	sub, err := bus.OpenSubscription(ctx, name, bus.WithConcurrency(concurrency))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	before := runtime.NumGoroutine()
	handled := make(chan int64)
	rctx, stop := context.WithCancel(ctx)
	recvErr := make(chan error, 1)
	go func() {
		recvErr <- sub.Receive(rctx, func(ctx context.Context, m *bus.Message) error {
			handled <- goroutineID()
			return nil
		})
	}()
	ids := map[int64]bool{}
	for i := range n {
		if err := topic.Publish(ctx, &bus.Message{Body: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
		select {
		case id := <-handled:
			ids[id] = true
		case <-ctx.Done():
			t.Fatalf("message %d was not handled", i)
		}
	}
	stop()
	if err := <-recvErr; err != nil {
		t.Fatalf("Receive: %v", err)
	}
	if len(ids) > concurrency {
		t.Errorf("%d messages, one at a time, ran on %d goroutines; want at most %d", n, len(ids), concurrency)
	}
	// Receive waited for its handler goroutines: none outlives it (the
	// in-memory driver's own goroutines may take a moment to go).
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after Receive returned, %d before it", runtime.NumGoroutine(), before)
		}
	}
}
