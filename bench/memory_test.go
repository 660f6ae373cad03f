package bench_test

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/mock"
	"github.com/payrail/payrail/idempotency"
	"github.com/payrail/payrail/idempotency/memory"
	"github.com/payrail/payrail/payments"
)

// liveHeap returns the bytes of live heap objects after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC() // a second cycle frees what the first's finalizers released
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkRetained measures what the default stores (memory payment
// store, memory idempotency store) keep for each payment: b.N sync
// payments through Processor.Authorize, each with its own idempotency key
// and metadata map (the memory idempotency store opened by URL with room
// for them all), then the heap that stays live. Run it at the size to
// report:
//
//	go test -run '^$' -bench Retained -benchtime 1000000x ./bench
//
// Metrics: heap-MB (live heap held by the processor after b.N payments),
// B/payment (all of it per payment), B/stored-payment (what the memory
// payment store keeps per payment: the same payments, captured, stored in
// a fresh store) and B/idem-record (the difference: the completed
// idempotency record with its stored response, and anything else the
// processor keeps per payment).
func BenchmarkRetained(b *testing.B) {
	ctx := context.Background()
	n := b.N
	// The default idempotency store is memory:// bounded at 1,000,000
	// records (spread over shards, so that a few keys are refused just
	// before it holds a million): opened here, as the server opens it, with
	// room for b.N. The bound does not change what a record costs.
	idem, err := idempotency.Open(ctx, "memory://?max_entries="+strconv.Itoa(max(memory.DefaultMaxEntries, 2*n)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = idem.Close() })
	g, err := gateway.New("mock", mock.New())
	if err != nil {
		b.Fatal(err)
	}
	p, err := payments.New(payments.WithGateway(g), payments.WithIdempotencyStore(idem))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Close() })
	base := liveHeap()
	var seq atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			req := payments.AuthorizeRequest{Merchant: "merchant-a", Amount: 1999, Currency: "EUR",
				PaymentMethod: "pm_card_visa", Origin: "web", IdempotencyKey: "order-" + strconv.FormatInt(i, 10),
				Metadata: map[string]string{"order": strconv.FormatInt(i, 10)}}
			if _, err := p.Authorize(ctx, req); err != nil {
				b.Errorf("Authorize: %v", err)
				return
			}
		}
	})
	b.StopTimer()
	held := float64(liveHeap() - base)
	total, heapMB := held/float64(n), held/(1<<20)
	runtime.KeepAlive(p)

	// The same payments, as the processor leaves them, in a fresh store.
	s, err := payments.OpenStore(ctx, "memory://")
	if err != nil {
		b.Fatal(err)
	}
	base = liveHeap()
	now := time.Now()
	for i := range n {
		id := "pay_" + strconv.FormatInt(int64(i), 10) + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:26-len(strconv.FormatInt(int64(i), 10))]
		pay := &payments.Payment{ID: id, Merchant: "merchant-a", Amount: 1999, Currency: "EUR",
			PaymentMethod: "pm_card_visa", Origin: "web", CaptureMethod: payments.CaptureAutomatic,
			Status: payments.StatusProcessing, Gateway: "mock", Refunds: []payments.Refund{},
			Metadata: map[string]string{"order": strconv.Itoa(i)}, CreatedAt: now, UpdatedAt: now}
		if err := s.Create(ctx, pay); err != nil {
			b.Fatal(err)
		}
		pay.Status, pay.AmountCaptured, pay.GatewayReference = payments.StatusCaptured, 1999, "pi_mock_"+strconv.Itoa(i)
		if err := s.Update(ctx, pay); err != nil {
			b.Fatal(err)
		}
	}
	stored := float64(liveHeap()-base) / float64(n)
	runtime.KeepAlive(s)

	b.ReportMetric(heapMB, "heap-MB")
	b.ReportMetric(total, "B/payment")
	b.ReportMetric(stored, "B/stored-payment")
	b.ReportMetric(total-stored, "B/idem-record")
}
