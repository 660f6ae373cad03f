package payments

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"
)

// The lazy gateway-attempt context reports what context.WithDeadline
// would, whether or not Done was ever asked for.
func TestDeadlineCtxBehavesLikeWithDeadline(t *testing.T) {
	t.Run("deadline passes, Done never asked", func(t *testing.T) {
		c := withDeadline(context.Background(), time.Now().Add(20*time.Millisecond))
		defer c.stop()
		if err := c.Err(); err != nil {
			t.Fatalf("Err before the deadline = %v", err)
		}
		time.Sleep(30 * time.Millisecond)
		if err := c.Err(); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Err after the deadline = %v, want DeadlineExceeded", err)
		}
		select {
		case <-c.Done():
		case <-time.After(time.Second):
			t.Fatal("Done not closed after the deadline")
		}
		if err := context.Cause(c); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Cause = %v", err)
		}
	})
	t.Run("deadline passes while waiting on Done", func(t *testing.T) {
		c := withDeadline(context.Background(), time.Now().Add(20*time.Millisecond))
		defer c.stop()
		select {
		case <-c.Done():
		case <-time.After(time.Second):
			t.Fatal("Done not closed at the deadline")
		}
		if err := c.Err(); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Err = %v", err)
		}
	})
	t.Run("stop cancels", func(t *testing.T) {
		c := withDeadline(context.Background(), time.Now().Add(time.Hour))
		c.stop()
		if err := c.Err(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Err after stop = %v", err)
		}
		select {
		case <-c.Done():
		default:
			t.Fatal("Done open after stop")
		}
		c.stop() // idempotent
	})
	t.Run("stop after Done", func(t *testing.T) {
		c := withDeadline(context.Background(), time.Now().Add(time.Hour))
		done := c.Done()
		c.stop()
		select {
		case <-done:
		case <-time.After(time.Second):
			t.Fatal("Done not closed by stop")
		}
		if err := c.Err(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Err = %v", err)
		}
	})
	t.Run("parent cancellation", func(t *testing.T) {
		parent, cancel := context.WithCancelCause(context.Background())
		c := withDeadline(parent, time.Now().Add(time.Hour))
		defer c.stop()
		boom := errors.New("boom")
		cancel(boom)
		if err := c.Err(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Err = %v", err)
		}
		<-c.Done()
		if err := context.Cause(c); !errors.Is(err, boom) {
			t.Fatalf("Cause = %v, want the parent's", err)
		}
	})
	t.Run("parent's earlier deadline", func(t *testing.T) {
		parent, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		pd, _ := parent.Deadline()
		c := withDeadline(parent, time.Now().Add(time.Hour))
		defer c.stop()
		if d, ok := c.Deadline(); !ok || !d.Equal(pd) {
			t.Fatalf("Deadline = %v %v, want the parent's %v", d, ok, pd)
		}
	})
	t.Run("values pass through", func(t *testing.T) {
		type key struct{}
		c := withDeadline(context.WithValue(context.Background(), key{}, "v"), time.Now().Add(time.Hour))
		defer c.stop()
		if c.Value(key{}) != "v" {
			t.Fatal("value lost")
		}
		if c.real.Load() != nil {
			t.Fatal("Value materialised the context")
		}
	})
	t.Run("derived contexts follow it without a goroutine", func(t *testing.T) {
		c := withDeadline(context.Background(), time.Now().Add(30*time.Millisecond))
		defer c.stop()
		before := runtime.NumGoroutine()
		child, cancel := context.WithCancel(c)
		defer cancel()
		fired := make(chan struct{})
		stopAF := context.AfterFunc(c, func() { close(fired) })
		defer stopAF()
		if n := runtime.NumGoroutine(); n > before {
			t.Errorf("deriving started %d goroutines", n-before)
		}
		select {
		case <-child.Done():
		case <-time.After(time.Second):
			t.Fatal("derived context not cancelled at the deadline")
		}
		if err := child.Err(); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("child Err = %v", err)
		}
		select {
		case <-fired:
		case <-time.After(time.Second):
			t.Fatal("AfterFunc did not run at the deadline")
		}
	})
	t.Run("one allocation while Done is not asked for", func(t *testing.T) {
		if raceEnabled {
			t.Skip("allocation counts differ under the race detector")
		}
		ctx := context.Background()
		d := time.Now().Add(time.Hour)
		if n := testing.AllocsPerRun(100, func() {
			c := withDeadline(ctx, d)
			_ = c.Err()
			c.stop()
		}); n != 1 {
			t.Errorf("%v allocations, want 1", n)
		}
	})
}

func TestCancelCtxKeyCaptured(t *testing.T) {
	if cancelCtxKey == nil {
		t.Fatal("the context package's cancellation key was not captured")
	}
	// A real cancellable context answers the key with itself.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if ctx.Value(cancelCtxKey) == nil {
		t.Fatal("the captured key is not the one cancellable contexts answer")
	}
}
