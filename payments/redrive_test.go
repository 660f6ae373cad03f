package payments_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/driver"
	"github.com/payrail/payrail/gateway/mock"
	"github.com/payrail/payrail/payments"
)

// outage is the mock gateway with the failures a redrive follows: down (the
// provider refuses authorizations before processing them, as a 503 does),
// lose (it processes the authorization and the answer is lost: a timeout
// after sending) and lookupLag (its Lookup does not see processed
// authorizations yet, as an eventually consistent search index).
type outage struct {
	*mock.Mock
	down, lose, lookupLag atomic.Bool
	attempts              atomic.Int64 // authorizations tried, refused ones included
}

func (g *outage) Authorize(ctx context.Context, r *driver.AuthorizeRequest) (*driver.Transaction, error) {
	g.attempts.Add(1)
	if g.down.Load() {
		return nil, &driver.Error{Kind: driver.KindTransient, Code: "service_unavailable", NotProcessed: true, Message: "provider unavailable"}
	}
	tx, err := g.Mock.Authorize(ctx, r)
	if err == nil && g.lose.Load() {
		return nil, &driver.Error{Kind: driver.KindTransient, Code: "timeout", Message: "timed out after sending; outcome unknown"}
	}
	return tx, err
}

func (g *outage) Lookup(ctx context.Context, key string) (*driver.Transaction, error) {
	if g.lookupLag.Load() {
		return nil, &driver.Error{Kind: driver.KindNotFound, Code: "resource_missing", Message: "no operation with this idempotency key"}
	}
	return g.Mock.Lookup(ctx, key)
}

// redriveEnv is an async processor over the in-memory bus with the outage
// gateway, its worker (not running) and a metric reader.
type redriveEnv struct {
	p      *payments.Processor
	w      *payments.Worker
	g      *outage
	topic  *bus.Topic
	sub    *bus.Subscription
	reader *sdkmetric.ManualReader
}

func newRedriveEnv(t *testing.T) *redriveEnv {
	t.Helper()
	e := &redriveEnv{g: &outage{Mock: mock.New()}, reader: sdkmetric.NewManualReader()}
	g, err := gateway.New("mock", e.g)
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(e.reader))
	e.p, e.w, e.topic, e.sub = asyncEnv(t, g, "", payments.WithMeterProvider(mp))
	return e
}

// start runs the worker until the returned function is called.
func (e *redriveEnv) start(t *testing.T) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.w.Run(ctx) }()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// deadLetters waits until the dead-letter queue holds n messages.
func (e *redriveEnv) deadLetters(t *testing.T, n int) []*bus.DeadLetter {
	t.Helper()
	var dls []*bus.DeadLetter
	eventually(t, 5*time.Second, func() bool {
		var err error
		dls, err = e.sub.DeadLetters(context.Background(), 100)
		return err == nil && len(dls) == n
	})
	return dls
}

// drained waits until nothing is queued or in flight.
func (e *redriveEnv) drained(t *testing.T) {
	t.Helper()
	eventually(t, 5*time.Second, func() bool {
		st, err := e.sub.Stats(context.Background())
		return err == nil && st.Backlog == 0 && st.InFlight == 0
	})
}

// redrives returns the MetricRedrives count for outcome.
func (e *redriveEnv) redrives(t *testing.T, outcome string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := e.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != payments.MetricRedrives {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				if v, _ := dp.Attributes.Value("payrail.outcome"); v.AsString() == outcome {
					n += dp.Value
				}
			}
		}
	}
	return n
}

func asyncReq(key, pm string) payments.AuthorizeRequest {
	return payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: key, Amount: 2500, Currency: "EUR", PaymentMethod: pm}
}

// The gateway refuses every attempt: the payment ends failed with
// retries_exhausted and its command is dead-lettered. Once the gateway is
// back, a redrive reprocesses it: it is captured, charged exactly once.
func TestRedriveReprocessesRetryableFailure(t *testing.T) {
	e := newRedriveEnv(t)
	e.start(t)
	ctx := context.Background()
	e.g.down.Store(true)
	pay, err := e.p.Authorize(ctx, asyncReq("outage", "pm_card_visa"))
	if err != nil || pay.Status != payments.StatusPending {
		t.Fatalf("%v %+v", err, pay)
	}
	failed := waitStatus(t, e.p, "m", pay.ID, payments.StatusFailed)
	if failed.FailureCode != payments.FailureRetriesExhausted {
		t.Fatalf("failure code %q, want %q", failed.FailureCode, payments.FailureRetriesExhausted)
	}
	if dls := e.deadLetters(t, 1); dls[0].Message.Attributes[payments.AttrPaymentID] != pay.ID {
		t.Fatalf("dead letter %+v", dls[0].Message)
	}
	if n := e.g.attempts.Load(); n != 3 {
		t.Fatalf("%d authorization attempts, want 3 (one per delivery)", n)
	}

	e.g.down.Store(false)
	if n, err := e.sub.Redrive(ctx, 0); err != nil || n != 1 {
		t.Fatalf("redrive %d %v", n, err)
	}
	got := waitStatus(t, e.p, "m", pay.ID, payments.StatusCaptured)
	if got.FailureCode != "" || got.AmountCaptured != 2500 || got.GatewayReference == "" {
		t.Fatalf("captured payment %+v", got)
	}
	e.drained(t)
	if n := e.g.Processed(pay.ID + ":"); n != 1 {
		t.Fatalf("provider processed %d operations, want 1", n)
	}
	if n := e.g.Calls("authorize"); n != 1 {
		t.Fatalf("provider received %d authorizations, want 1", n)
	}
	e.deadLetters(t, 0)
	if r, s := e.redrives(t, payments.RedriveReprocessed), e.redrives(t, payments.RedriveSkipped); r != 1 || s != 0 {
		t.Fatalf("redrives: reprocessed %d skipped %d, want 1 and 0", r, s)
	}
}

// The provider charged, but every answer was lost and its Lookup lagged:
// the worker failed the payment and dead-lettered its command. A redrive
// settles it from Lookup as captured, without charging again.
func TestRedriveSettlesAmbiguousChargeViaLookup(t *testing.T) {
	e := newRedriveEnv(t)
	e.start(t)
	ctx := context.Background()
	e.g.lose.Store(true)
	e.g.lookupLag.Store(true)
	pay, err := e.p.Authorize(ctx, asyncReq("ambiguous", "pm_card_visa"))
	if err != nil {
		t.Fatal(err)
	}
	failed := waitStatus(t, e.p, "m", pay.ID, payments.StatusFailed)
	if failed.FailureCode != payments.FailureRetriesExhausted {
		t.Fatalf("failure code %q", failed.FailureCode)
	}
	e.deadLetters(t, 1)
	if n := e.g.Processed(pay.ID + ":"); n != 1 {
		t.Fatalf("provider processed %d, want 1 (the lost answer)", n)
	}
	lookups := e.g.Calls("lookup")

	e.g.lookupLag.Store(false) // the answers are still lost: only Lookup can tell
	if n, err := e.sub.Redrive(ctx, 0); err != nil || n != 1 {
		t.Fatalf("redrive %d %v", n, err)
	}
	got := waitStatus(t, e.p, "m", pay.ID, payments.StatusCaptured)
	e.drained(t)
	if got.AmountCaptured != 2500 || got.GatewayReference == "" {
		t.Fatalf("captured payment %+v", got)
	}
	if n := e.g.Processed(pay.ID + ":"); n != 1 {
		t.Fatalf("provider processed %d operations, want 1", n)
	}
	if e.g.Calls("lookup") <= lookups {
		t.Fatal("the redrive did not settle the payment through Lookup")
	}
	if r := e.redrives(t, payments.RedriveReprocessed); r != 1 {
		t.Fatalf("reprocessed %d, want 1", r)
	}
}

// deadLetterCommand publishes the authorize command for pay and
// dead-letters it, as a worker that could not process it would; the worker
// must not be running.
func (e *redriveEnv) deadLetterCommand(t *testing.T, pay *payments.Payment) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	body := fmt.Sprintf(`{"v":1,"op":"authorize","payment_id":%q,"merchant":%q}`, pay.ID, pay.Merchant)
	if err := e.topic.Publish(ctx, &bus.Message{ID: pay.ID + ":authorize", Key: pay.ID, Body: []byte(body), Attributes: map[string]string{
		payments.AttrCommand: "authorize", payments.AttrMerchant: pay.Merchant, payments.AttrPaymentID: pay.ID}}); err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	var dead atomic.Bool
	go func() {
		for !dead.Load() && rctx.Err() == nil {
			time.Sleep(2 * time.Millisecond)
		}
		stop()
	}()
	if err := e.sub.Receive(rctx, func(context.Context, *bus.Message) error {
		defer dead.Store(true)
		return bus.Permanent(errors.New("worker crashed on the command"))
	}); err != nil {
		t.Fatal(err)
	}
	if !dead.Load() {
		t.Fatal("the command was not received")
	}
}

// Redriven commands for final outcomes are acknowledged without a gateway
// call and counted as skipped: a declined payment, and a payment failed by a
// synchronous request (its client was answered) whose command was forged.
func TestRedriveSkipsFinalOutcomes(t *testing.T) {
	e := newRedriveEnv(t)
	ctx := context.Background()
	stop := e.start(t)
	declined, err := e.p.Authorize(ctx, asyncReq("declined", "pm_card_chargeDeclined"))
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, e.p, "m", declined.ID, payments.StatusDeclined)
	e.g.down.Store(true)
	syncReq := asyncReq("sync-failed", "pm_card_visa")
	syncReq.Mode = payments.ModeSync
	syncFailed, err := e.p.Authorize(ctx, syncReq)
	if !errors.Is(err, payments.ErrGatewayUnavailable) || syncFailed == nil || syncFailed.Status != payments.StatusFailed {
		t.Fatalf("sync payment: %v %+v", err, syncFailed)
	}
	if syncFailed.FailureCode != "gateway_unavailable" {
		t.Fatalf("sync failure code %q", syncFailed.FailureCode)
	}
	e.drained(t)
	stop()
	e.g.down.Store(false)

	e.deadLetterCommand(t, declined)
	e.deadLetterCommand(t, syncFailed)
	e.deadLetters(t, 2)
	authorizations, lookups := e.g.attempts.Load(), e.g.Calls("lookup")

	e.start(t)
	if n, err := e.sub.Redrive(ctx, 0); err != nil || n != 2 {
		t.Fatalf("redrive %d %v", n, err)
	}
	e.drained(t)
	e.deadLetters(t, 0)
	eventually(t, 2*time.Second, func() bool { return e.redrives(t, payments.RedriveSkipped) == 2 })
	if r := e.redrives(t, payments.RedriveReprocessed); r != 0 {
		t.Fatalf("reprocessed %d, want 0", r)
	}
	if e.g.attempts.Load() != authorizations || e.g.Calls("lookup") != lookups {
		t.Fatalf("gateway called: authorizations %d→%d, lookups %d→%d", authorizations, e.g.attempts.Load(), lookups, e.g.Calls("lookup"))
	}
	for id, want := range map[string]payments.Status{declined.ID: payments.StatusDeclined, syncFailed.ID: payments.StatusFailed} {
		got, err := e.p.Get(ctx, payments.GetRequest{Merchant: "m", PaymentID: id})
		if err != nil || got.Status != want {
			t.Fatalf("payment %s: %v %+v, want %s", id, err, got, want)
		}
	}
	if got, _ := e.p.Get(ctx, payments.GetRequest{Merchant: "m", PaymentID: syncFailed.ID}); got.FailureCode != "gateway_unavailable" {
		t.Fatalf("sync-failed payment reopened or changed: %+v", got)
	}
}

func TestRedrivePlan(t *testing.T) {
	for _, tc := range []struct {
		status  payments.Status
		failure string
		process bool
		why     string
	}{
		{payments.StatusFailed, payments.FailureRetriesExhausted, true, "retryable failure"},
		{payments.StatusFailed, "gateway_unavailable", false, "final: failed (gateway_unavailable)"},
		{payments.StatusFailed, "gateway_rejected", false, "final: failed (gateway_rejected)"},
		{payments.StatusFailed, "bus_unavailable", false, "final: failed (bus_unavailable)"},
		{payments.StatusDeclined, "", false, "final: declined"},
		{payments.StatusCaptured, "", false, "final: captured"},
		{payments.StatusAuthorized, "", false, "final: authorized"},
		{payments.StatusVoided, "", false, "final: voided"},
		{payments.StatusRefunded, "", false, "final: refunded"},
		{payments.StatusPending, "", true, "not settled: pending"},
		{payments.StatusProcessing, "", true, "not settled: processing"},
	} {
		p := &payments.Payment{Status: tc.status, FailureCode: tc.failure}
		process, why := payments.RedrivePlan(p)
		if process != tc.process || why != tc.why {
			t.Errorf("%s/%s: %t %q, want %t %q", tc.status, tc.failure, process, why, tc.process, tc.why)
		}
		if payments.Redrivable(p) != (tc.failure == payments.FailureRetriesExhausted) {
			t.Errorf("%s/%s: Redrivable %t", tc.status, tc.failure, payments.Redrivable(p))
		}
	}
}
