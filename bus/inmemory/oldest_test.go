package inmemory

import (
	"context"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/payrail/payrail/bus/driver"
)

// openPair opens a topic and an unordered subscription of a new broker.
func openPair(t testing.TB, name string) (driver.Topic, *subHandle) {
	t.Helper()
	ctx := context.Background()
	b := NewBroker()
	u, _ := url.Parse("inmemory://" + name)
	dt, err := b.OpenTopic(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	su, _ := url.Parse("inmemory://" + name + "?ordered=false")
	ds, err := b.OpenSubscription(ctx, su)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dt.Close(); _ = ds.Close() })
	return dt, ds.(*subHandle)
}

func sendN(t testing.TB, dt driver.Topic, prefix string, n int) {
	t.Helper()
	ms := make([]*driver.Message, n)
	for i := range ms {
		ms[i] = &driver.Message{ID: prefix + strconv.Itoa(i), Body: []byte("x")}
	}
	if err := dt.SendBatch(context.Background(), ms); err != nil {
		t.Fatal(err)
	}
}

// receiveAck receives up to max messages from h, acks them and returns
// how many there were.
func receiveAck(t testing.TB, h *subHandle, max int) int {
	t.Helper()
	ctx := context.Background()
	ms, err := h.ReceiveBatch(ctx, max)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if err := h.Ack(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	return len(ms)
}

// OldestAge is the age of the oldest message still in circulation, read
// without a scan: a message kept in flight at the head while thousands
// published after it are acked keeps the age, the acked ones do not stay
// listed behind it, and once it goes the age is that of the next oldest; a
// redriven dead letter, older than everything queued, counts with its own
// publish time.
func TestOldestAgeFollowsCirculation(t *testing.T) {
	ctx := context.Background()
	dt, h := openPair(t, "oldest")
	s := h.s
	age := func() time.Duration {
		st, err := h.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.OldestAge
	}
	if a := age(); a != 0 {
		t.Fatalf("empty: OldestAge %v, want 0", a)
	}
	sendN(t, dt, "old", 1)
	time.Sleep(50 * time.Millisecond)
	stuck, err := h.ReceiveBatch(ctx, 1) // in flight for the rest of the test
	if err != nil || len(stuck) != 1 {
		t.Fatal(stuck, err)
	}
	const n = 5000
	for round := range 5 {
		sendN(t, dt, "new"+strconv.Itoa(round)+"-", n/5)
		for got := 0; got < n/5; {
			got += receiveAck(t, h, 100)
		}
	}
	if a := age(); a < 50*time.Millisecond {
		t.Errorf("with the first message in flight: OldestAge %v, want its age (≥ 50ms)", a)
	}
	s.mu.Lock()
	listed := s.age.len()
	s.mu.Unlock()
	if listed > 200 {
		t.Errorf("%d entries listed for OldestAge with 1 in circulation: the acked ones behind the stuck one were kept", listed)
	}

	// The stuck one goes (dead-lettered); a newer message is the oldest.
	sendN(t, dt, "young", 1)
	if err := h.DeadLetter(ctx, stuck[0], "poison"); err != nil {
		t.Fatal(err)
	}
	if a := age(); a >= 50*time.Millisecond || a <= 0 {
		t.Errorf("after the oldest left: OldestAge %v, want the young message's (> 0, < 50ms)", a)
	}
	// Redriven, the dead letter is the oldest again.
	if got, err := h.Redrive(ctx, 0); err != nil || got != 1 {
		t.Fatalf("Redrive = %d, %v", got, err)
	}
	if a := age(); a < 50*time.Millisecond {
		t.Errorf("after the redrive: OldestAge %v, want the redriven message's (≥ 50ms)", a)
	}
	// Drain: age 0, and the list is empty.
	for {
		st, _ := h.Stats(ctx)
		if st.Backlog == 0 && st.InFlight == 0 {
			break
		}
		receiveAck(t, h, 10)
	}
	if a := age(); a != 0 {
		t.Errorf("drained: OldestAge %v, want 0", a)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.age.len() != 0 || s.ageUnsorted {
		t.Errorf("drained: %d entries still listed (unsorted %v)", s.age.len(), s.ageUnsorted)
	}
}

// BenchmarkStatsWithBacklog reads Stats of a subscription holding a
// backlog, as the processor's async admission does on every request: its
// cost must not grow with the backlog.
func BenchmarkStatsWithBacklog(b *testing.B) {
	for _, backlog := range []int{10, 100_000} {
		b.Run("backlog="+strconv.Itoa(backlog), func(b *testing.B) {
			dt, h := openPair(b, "stats")
			sendN(b, dt, "m", backlog)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := h.Stats(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
