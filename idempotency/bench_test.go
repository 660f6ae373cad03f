package idempotency_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/payrail/payrail/idempotency"
	_ "github.com/payrail/payrail/idempotency/memory"
)

// BenchmarkBeginComplete is a request's path through the portable store
// opened by URL: claim a new key, then store its result, with no
// OpenTelemetry SDK installed (the telemetry must cost next to nothing).
func BenchmarkBeginComplete(b *testing.B) {
	ctx := context.Background()
	s, err := idempotency.Open(ctx, "memory://")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	resp := &idempotency.Response{StatusCode: 201, Body: []byte(`{"id":"pay_1"}`)}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r := idempotency.BeginRequest{Merchant: "m", Key: "k" + strconv.Itoa(i), Fingerprint: "fp", ResourceID: "pay_1"}
		res, err := s.Begin(ctx, &r)
		if err != nil || res.Outcome != idempotency.Acquired {
			b.Fatalf("Begin: %v %v", res, err)
		}
		if err := s.Complete(ctx, idempotency.CompleteRequest{Merchant: "m", Key: r.Key, Token: res.Record.Token, Response: resp}); err != nil {
			b.Fatal(err)
		}
	}
}
