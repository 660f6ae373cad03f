package routing_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/driver"
	"github.com/payrail/payrail/gateway/mock"
	"github.com/payrail/payrail/gateway/routing"
	"github.com/payrail/payrail/payments"
)

// faulty is the mock gateway (a real, stateful, idempotent provider
// simulation) with failures injected in front of it:
//
//   - down: calls fail like a refused connection, before reaching the
//     provider (transient, not processed);
//   - lost: the provider processes the authorization but the answer is lost
//     (a timeout after sending: transient, ambiguous);
//   - lookupDown: Lookup fails transiently;
//   - softPM: authorizations with this payment method are soft-declined
//     ("try_again_later") by the provider.
type faulty struct {
	*mock.Mock
	down, lost, lookupDown atomic.Bool
	softPM                 string
	reached                atomic.Int64 // authorize calls that reached this gateway
	// mu serialises authorizations into the mock: its sharded locking
	// (lock(key, ref) in key-then-ref order) can deadlock under concurrent
	// authorizations, a bug reported separately.
	mu sync.Mutex
}

func newFaulty() *faulty { return &faulty{Mock: mock.New()} }

func (f *faulty) Authorize(ctx context.Context, r *driver.AuthorizeRequest) (*driver.Transaction, error) {
	f.reached.Add(1)
	if f.down.Load() {
		return nil, &driver.Error{Kind: driver.KindTransient, Code: "connection_refused", NotProcessed: true, Message: "connection refused"}
	}
	if f.softPM != "" && r.PaymentMethod == f.softPM {
		return nil, &driver.Error{Kind: driver.KindDeclined, Code: "card_declined", DeclineCode: "try_again_later",
			SoftDecline: true, NotProcessed: true, Message: "the card was declined"}
	}
	f.mu.Lock()
	tx, err := f.Mock.Authorize(ctx, r)
	f.mu.Unlock()
	if err == nil && f.lost.Load() {
		return nil, &driver.Error{Kind: driver.KindTransient, Code: "timeout", Message: "timed out after sending"}
	}
	return tx, err
}

func (f *faulty) Lookup(ctx context.Context, key string) (*driver.Transaction, error) {
	if f.lookupDown.Load() || f.down.Load() {
		return nil, &driver.Error{Kind: driver.KindTransient, Code: "connection_refused", NotProcessed: true}
	}
	return f.Mock.Lookup(ctx, key)
}

// gateways wraps each faulty driver in a *gateway.Gateway named as given.
func gateways(t *testing.T, named map[string]*faulty, order ...string) []*gateway.Gateway {
	t.Helper()
	var out []*gateway.Gateway
	for _, n := range order {
		g, err := gateway.New(n, named[n])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, g)
	}
	return out
}

func mustPolicy(t testing.TB, js string) routing.Policy {
	t.Helper()
	p, err := routing.ParsePolicy([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func names(gs []*gateway.Gateway) []string {
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = g.Name()
	}
	return out
}

// newProc returns a processor over r with fast retries and no telemetry.
func newProc(t *testing.T, r gateway.Router, opts ...payments.Option) *payments.Processor {
	t.Helper()
	p, err := payments.New(append([]payments.Option{
		payments.WithRouter(r),
		payments.WithRetryPolicy(payments.RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// chargesOf counts the authorizations of a payment every provider processed.
func chargesOf(id string, fs ...*faulty) int {
	n := 0
	for _, f := range fs {
		n += f.Processed(id + ":authorize")
	}
	return n
}
