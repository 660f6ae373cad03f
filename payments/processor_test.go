package payments_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/inmemory"
	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/driver"
	"github.com/payrail/payrail/gateway/mock"
	"github.com/payrail/payrail/payments"
)

func TestTransitionTable(t *testing.T) {
	allowed := map[[2]payments.Status]bool{}
	all := payments.Statuses()
	for _, from := range all {
		if !from.Valid() {
			t.Errorf("%s is not Valid", from)
		}
		for _, to := range payments.NextStatuses(from) {
			allowed[[2]payments.Status{from, to}] = true
		}
	}
	// The state machine is read-only: a caller's copy changes nothing.
	if next := payments.NextStatuses(payments.StatusAuthorized); len(next) > 0 {
		next[0] = payments.StatusRefunded
		if payments.CanTransition(payments.StatusAuthorized, payments.StatusRefunded) {
			t.Fatal("NextStatuses exposed the state machine to writes")
		}
	}
	want := map[[2]payments.Status]bool{
		{"pending", "processing"}: true, {"pending", "failed"}: true,
		{"processing", "authorized"}: true, {"processing", "captured"}: true, {"processing", "declined"}: true, {"processing", "failed"}: true,
		{"authorized", "captured"}: true, {"authorized", "voided"}: true,
		{"captured", "captured"}: true, {"captured", "refunded"}: true,
		{"processing", "requires_review"}: true,
		{"requires_review", "authorized"}: true, {"requires_review", "captured"}: true,
		{"requires_review", "declined"}: true, {"requires_review", "failed"}: true,
	}
	for _, from := range all {
		for _, to := range all {
			k := [2]payments.Status{from, to}
			if got := payments.CanTransition(from, to); got != want[k] || got != allowed[k] {
				t.Errorf("CanTransition(%s, %s) = %v, want %v", from, to, got, want[k])
			}
		}
	}
	for _, s := range []payments.Status{"voided", "refunded", "declined", "failed"} {
		if !s.Terminal() {
			t.Errorf("%s should be terminal", s)
		}
	}
	if payments.StatusRequiresReview.Terminal() {
		t.Error("requires_review must not be terminal: the provider's answer may still settle it")
	}
	if payments.Status("bogus").Valid() || !payments.StatusCaptured.Valid() {
		t.Error("Valid")
	}
}

func newProcessor(t *testing.T, g *gateway.Gateway, opts ...payments.Option) *payments.Processor {
	t.Helper()
	p, err := payments.New(append([]payments.Option{payments.WithGateway(g),
		payments.WithRetryPolicy(payments.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond})}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func mockGateway(t *testing.T, m *mock.Mock) *gateway.Gateway {
	t.Helper()
	g, err := gateway.New("mock", m)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestNewRequiresGateway(t *testing.T) {
	if _, err := payments.New(); err == nil || !strings.Contains(err.Error(), "gateway") {
		t.Fatalf("New without a gateway: %v", err)
	}
}

func TestMoneyValidation(t *testing.T) {
	p := newProcessor(t, mockGateway(t, mock.New()))
	ctx := context.Background()
	base := payments.AuthorizeRequest{Merchant: "m", Amount: 100, Currency: "EUR", PaymentMethod: "pm_card_visa"}
	cases := []struct {
		name  string
		edit  func(*payments.AuthorizeRequest)
		field string
	}{
		{"zero", func(r *payments.AuthorizeRequest) { r.Amount = 0 }, "amount"},
		{"negative", func(r *payments.AuthorizeRequest) { r.Amount = -1 }, "amount"},
		{"over max EUR", func(r *payments.AuthorizeRequest) { r.Amount = 100_000_000_001 }, "amount"},
		{"over max JPY", func(r *payments.AuthorizeRequest) { r.Currency = "JPY"; r.Amount = 1_000_000_001 }, "amount"},
		{"unknown currency", func(r *payments.AuthorizeRequest) { r.Currency = "EURO" }, "currency"},
		{"withdrawn currency", func(r *payments.AuthorizeRequest) { r.Currency = "HRK" }, "currency"},
		{"no minor unit", func(r *payments.AuthorizeRequest) { r.Currency = "XDR" }, "currency"},
		{"PAN token", func(r *payments.AuthorizeRequest) { r.PaymentMethod = "4000-0566-5566-5556" }, "payment_method"},
		{"bad origin", func(r *payments.AuthorizeRequest) { r.Origin = "web shop" }, "origin"},
		{"bad mode", func(r *payments.AuthorizeRequest) { r.Mode = "later" }, "mode"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := base
			r.IdempotencyKey = fmt.Sprint("money-", i)
			tc.edit(&r)
			_, err := p.Authorize(ctx, r)
			var e *payments.Error
			if !errors.As(err, &e) || !errors.Is(err, payments.ErrValidation) {
				t.Fatalf("err %v, want validation", err)
			}
			if len(e.Fields) == 0 || e.Fields[0].Field != tc.field {
				t.Fatalf("fields %+v, want %s", e.Fields, tc.field)
			}
		})
	}
	// Accepted edge values: lower-case currency, zero-decimal and three-decimal currencies.
	for i, c := range []struct {
		cur    string
		amount int64
	}{{"eur", 100_000_000_000}, {"JPY", 1_000_000_000}, {"KWD", 1_000_000_000_000}, {"CLF", 1}} {
		r := base
		r.IdempotencyKey = fmt.Sprint("ok-", i)
		r.Currency, r.Amount = c.cur, c.amount
		pay, err := p.Authorize(ctx, r)
		if err != nil {
			t.Fatalf("%s %d: %v", c.cur, c.amount, err)
		}
		if pay.Currency != strings.ToUpper(c.cur) || pay.AmountCaptured != c.amount {
			t.Fatalf("payment %+v", pay)
		}
	}
}

func TestSDKErrorsAndDecline(t *testing.T) {
	p := newProcessor(t, mockGateway(t, mock.New()))
	ctx := context.Background()
	pay, err := p.Authorize(ctx, payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: "d1", Amount: 500, Currency: "USD", PaymentMethod: "pm_card_insufficientFunds"})
	var e *payments.Error
	if !errors.Is(err, payments.ErrDeclined) || !errors.As(err, &e) || e.DeclineCode != "insufficient_funds" {
		t.Fatalf("err %v", err)
	}
	if pay == nil || pay.Status != payments.StatusDeclined || pay.ID != e.PaymentID {
		t.Fatalf("declined payment %+v", pay)
	}
	// Replay returns the same error and the payment.
	pay2, err2 := p.Authorize(ctx, payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: "d1", Amount: 500, Currency: "USD", PaymentMethod: "pm_card_insufficientFunds"})
	if !errors.Is(err2, payments.ErrDeclined) || pay2 == nil || pay2.ID != pay.ID {
		t.Fatalf("replay: %v %+v", err2, pay2)
	}
	if _, err := p.Authorize(ctx, payments.AuthorizeRequest{Merchant: "m", Amount: 1, Currency: "USD", PaymentMethod: "pm_card_visa"}); !errors.Is(err, payments.ErrIdempotencyMissing) {
		t.Fatalf("missing key: %v", err)
	}
	if _, err := p.Get(ctx, payments.GetRequest{Merchant: "other", PaymentID: pay.ID}); !errors.Is(err, payments.ErrNotFound) {
		t.Fatalf("cross-merchant Get: %v", err)
	}
	if _, err := p.Capture(ctx, payments.CaptureRequest{Merchant: "m", PaymentID: pay.ID}); !errors.Is(err, payments.ErrInvalidTransition) {
		t.Fatalf("capture of a declined payment: %v", err)
	}
	if _, err := p.Refund(ctx, payments.RefundRequest{Merchant: "m", PaymentID: pay.ID, Amount: 1}); !errors.Is(err, payments.ErrInvalidTransition) {
		t.Fatalf("refund of a declined payment: %v", err)
	}
}

// flaky wraps the mock gateway: the first failN authorizations fail with a
// transient error; ambiguous ones are processed by the provider before the
// answer is lost (a timeout after sending).
type flaky struct {
	*mock.Mock
	failN     int64
	ambiguous bool
	lookupErr bool
	calls     atomic.Int64
}

func (f *flaky) Authorize(ctx context.Context, r *driver.AuthorizeRequest) (*driver.Transaction, error) {
	if f.calls.Add(1) <= f.failN {
		if f.ambiguous {
			_, _ = f.Mock.Authorize(ctx, r) // processed; the answer is lost
			return nil, &driver.Error{Kind: driver.KindTransient, Code: "timeout", Message: "read timeout"}
		}
		return nil, &driver.Error{Kind: driver.KindTransient, Code: "connection_refused", NotProcessed: true}
	}
	return f.Mock.Authorize(ctx, r)
}

func (f *flaky) Lookup(ctx context.Context, key string) (*driver.Transaction, error) {
	if f.lookupErr {
		return nil, &driver.Error{Kind: driver.KindTransient, Code: "unavailable"}
	}
	return f.Mock.Lookup(ctx, key)
}

func TestSyncRetryAmbiguousChargesOnce(t *testing.T) {
	f := &flaky{Mock: mock.New(), failN: 2, ambiguous: true}
	g, _ := gateway.New("mock", f)
	p := newProcessor(t, g)
	pay, err := p.Authorize(context.Background(), payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: "amb", Amount: 700, Currency: "EUR", PaymentMethod: "pm_card_visa"})
	if err != nil || pay.Status != payments.StatusCaptured {
		t.Fatalf("%v %+v", err, pay)
	}
	if n := f.Processed(pay.ID + ":"); n != 1 {
		t.Fatalf("provider processed %d operations, want 1", n)
	}
	if f.calls.Load() != 3 {
		t.Fatalf("gateway calls %d, want 3", f.calls.Load())
	}
}

// An ambiguous failure whose Lookup also fails leaves the payment
// processing; a retry with the same key after the lease resumes the same
// payment and charges exactly once.
func TestOutcomeUnknownThenResume(t *testing.T) {
	f := &flaky{Mock: mock.New(), failN: 3, ambiguous: true, lookupErr: true}
	g, _ := gateway.New("mock", f)
	p := newProcessor(t, g, payments.WithIdempotencyLease(100*time.Millisecond))
	ctx := context.Background()
	req := payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: "unknown", Amount: 900, Currency: "EUR", PaymentMethod: "pm_card_visa"}
	pay, err := p.Authorize(ctx, req)
	if !errors.Is(err, payments.ErrOutcomeUnknown) || pay == nil || pay.Status != payments.StatusProcessing {
		t.Fatalf("first: %v %+v", err, pay)
	}
	if _, err := p.Authorize(ctx, req); !errors.Is(err, payments.ErrIdempotencyInUse) {
		t.Fatalf("during lease: %v", err)
	}
	time.Sleep(150 * time.Millisecond)
	f.lookupErr = false
	again, err := p.Authorize(ctx, req)
	if err != nil || again.ID != pay.ID || again.Status != payments.StatusCaptured {
		t.Fatalf("resume: %v %+v", err, again)
	}
	if n := f.Processed(pay.ID + ":"); n != 1 {
		t.Fatalf("provider processed %d, want 1", n)
	}
	third, err := p.Authorize(ctx, req)
	if err != nil || third.ID != pay.ID {
		t.Fatalf("replay after resume: %v", err)
	}
}

// asyncEnv wires a processor to an explicit in-memory topic/subscription so
// tests can inject messages and read the dead-letter queue.
func asyncEnv(t *testing.T, g *gateway.Gateway, subQuery string, opts ...payments.Option) (*payments.Processor, *payments.Worker, *bus.Topic, *bus.Subscription) {
	t.Helper()
	ctx := context.Background()
	b := inmemory.NewBroker()
	dt, err := b.OpenTopic(ctx, &url.URL{Scheme: "inmemory", Host: "cmds"})
	if err != nil {
		t.Fatal(err)
	}
	ds, err := b.OpenSubscription(ctx, &url.URL{Scheme: "inmemory", Host: "cmds", RawQuery: subQuery})
	if err != nil {
		t.Fatal(err)
	}
	topic, sub := bus.NewTopic(dt), bus.NewSubscription(ds)
	p := newProcessor(t, g, append([]payments.Option{payments.WithTopic(topic), payments.WithMode(payments.ModeAsync)}, opts...)...)
	w, err := payments.NewWorker(p, payments.WithSubscription(sub), payments.WithRecovery(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	return p, w, topic, sub
}

func runWorker(t *testing.T, w *payments.Worker) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
}

func waitStatus(t *testing.T, p *payments.Processor, merchant, id string, want payments.Status) *payments.Payment {
	t.Helper()
	var pay *payments.Payment
	eventually(t, 5*time.Second, func() bool {
		var err error
		pay, err = p.Get(context.Background(), payments.GetRequest{Merchant: merchant, PaymentID: id})
		return err == nil && pay.Status == want
	})
	return pay
}

func TestAsyncRedeliveryThenSuccess(t *testing.T) {
	f := &flaky{Mock: mock.New(), failN: 2}
	g, _ := gateway.New("mock", f)
	p, w, _, _ := asyncEnv(t, g, "ack_deadline=5s")
	runWorker(t, w)
	pay, err := p.Authorize(context.Background(), payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: "redeliver", Amount: 300, Currency: "GBP", PaymentMethod: "pm_card_visa"})
	if err != nil || pay.Status != payments.StatusPending {
		t.Fatalf("%v %+v", err, pay)
	}
	waitStatus(t, p, "m", pay.ID, payments.StatusCaptured)
	if f.calls.Load() != 3 || f.Processed(pay.ID+":") != 1 {
		t.Fatalf("calls %d processed %d", f.calls.Load(), f.Processed(pay.ID+":"))
	}
}

func TestAsyncDeadLetterAfterMaxAttempts(t *testing.T) {
	p, w, _, sub := asyncEnv(t, mockGateway(t, mock.New()), "")
	runWorker(t, w)
	pay, err := p.Authorize(context.Background(), payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: "dlq", Amount: 300, Currency: "EUR",
		PaymentMethod: "pm_card_processingError", Metadata: map[string]string{"order": "7"}})
	if err != nil {
		t.Fatal(err)
	}
	failed := waitStatus(t, p, "m", pay.ID, payments.StatusFailed)
	if failed.FailureCode != payments.FailureRetriesExhausted {
		t.Fatalf("failure code %q", failed.FailureCode)
	}
	var dls []*bus.DeadLetter
	eventually(t, 2*time.Second, func() bool {
		dls, err = sub.DeadLetters(context.Background(), 10)
		return err == nil && len(dls) == 1
	})
	dl := dls[0]
	if !strings.Contains(dl.Reason, "gateway unavailable") && !strings.Contains(dl.Reason, "failed after 3 attempts") {
		t.Fatalf("reason %q", dl.Reason)
	}
	if dl.Message.Attributes[payments.AttrPaymentID] != pay.ID || dl.Message.Key != pay.ID {
		t.Fatalf("dead letter lost attributes: %+v", dl.Message)
	}
	// A redrive reprocesses the retryable failure (redrive_test.go); this
	// card fails every time, so the command is dead-lettered again.
	if n, err := sub.Redrive(context.Background(), 0); err != nil || n != 1 {
		t.Fatalf("redrive %d %v", n, err)
	}
	eventually(t, 2*time.Second, func() bool {
		st, err := sub.Stats(context.Background())
		return err == nil && st.Backlog == 0 && st.InFlight == 0 && st.DeadLetters == 1
	})
	if got, _ := p.Get(context.Background(), payments.GetRequest{Merchant: "m", PaymentID: pay.ID}); got.Status != payments.StatusFailed || got.FailureCode != payments.FailureRetriesExhausted {
		t.Fatalf("after redrive: %s %s", got.Status, got.FailureCode)
	}
}

func TestDuplicateCommandChargesOnce(t *testing.T) {
	m := mock.New()
	p, w, topic, _ := asyncEnv(t, mockGateway(t, m), "")
	runWorker(t, w)
	ctx := context.Background()
	pay, err := p.Authorize(ctx, payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: "dup", Amount: 300, Currency: "EUR", PaymentMethod: "pm_card_visa"})
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"v":1,"op":"authorize","payment_id":%q,"merchant":"m"}`, pay.ID)
	for range 5 {
		if err := topic.Publish(ctx, &bus.Message{Key: pay.ID, Body: []byte(body)}); err != nil {
			t.Fatal(err)
		}
	}
	waitStatus(t, p, "m", pay.ID, payments.StatusCaptured)
	eventually(t, 2*time.Second, func() bool { return m.Calls("authorize") >= 1 })
	time.Sleep(50 * time.Millisecond)
	if n := m.Processed(pay.ID + ":"); n != 1 {
		t.Fatalf("processed %d, want 1", n)
	}
}

func TestMalformedCommandDeadLettered(t *testing.T) {
	_, w, topic, sub := asyncEnv(t, mockGateway(t, mock.New()), "")
	runWorker(t, w)
	if err := topic.Publish(context.Background(), &bus.Message{Body: []byte("{not json")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, func() bool {
		dls, err := sub.DeadLetters(context.Background(), 10)
		return err == nil && len(dls) == 1 && strings.Contains(dls[0].Reason, "malformed")
	})
}

// A command lost between persisting and publishing is republished by the
// recovery sweep.
func TestRecoverySweep(t *testing.T) {
	p, w, _, sub := asyncEnv(t, mockGateway(t, mock.New()), "")
	ctx := context.Background()
	pay, err := p.Authorize(ctx, payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: "lost", Amount: 300, Currency: "EUR", PaymentMethod: "pm_card_visa"})
	if err != nil {
		t.Fatal(err)
	}
	// Lose the command: consume and ack it without processing.
	rctx, cancel := context.WithCancel(ctx)
	var once sync.Once
	_ = sub.Receive(rctx, func(_ context.Context, m *bus.Message) error {
		once.Do(cancel)
		return nil
	})
	w2, err := payments.NewWorker(p, payments.WithSubscription(sub), payments.WithRecovery(20*time.Millisecond, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	_ = w
	runWorker(t, w2)
	waitStatus(t, p, "m", pay.ID, payments.StatusCaptured)
}

func TestCloseRefusesNewWork(t *testing.T) {
	p, err := payments.New(payments.WithGateway(mockGateway(t, mock.New())))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = p.Authorize(context.Background(), payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: "c", Amount: 1, Currency: "EUR", PaymentMethod: "pm_card_visa"})
	if !errors.Is(err, payments.ErrUnavailable) {
		t.Fatalf("after Close: %v", err)
	}
}

// The processor owns the payments it stores: neither the caller's request
// metadata nor the Payment handed back aliases the stored copy, also with a
// store that keeps the metadata map it is given (which the Store contract
// allows).
func TestAuthorizeDoesNotAliasCallerData(t *testing.T) {
	for _, c := range []struct {
		name  string
		store payments.Store
	}{
		{"memory", payments.NewMemoryStore()},
		{"sharing", &sharingStore{MemoryStore: payments.NewMemoryStore(), meta: map[string]map[string]string{}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := payments.New(payments.WithGateway(mockGateway(t, mock.New())), payments.WithStore(c.store))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			ctx := context.Background()
			meta := map[string]string{"order": "7"}
			pay, err := p.Authorize(ctx, payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: "k1", Amount: 100,
				Currency: "EUR", PaymentMethod: "pm_card_visa", Metadata: meta})
			if err != nil {
				t.Fatal(err)
			}
			meta["order"] = "changed by the caller"
			pay.Metadata["order"] = "changed through the result"
			pay.Status = payments.StatusFailed
			got, err := p.Get(ctx, payments.GetRequest{Merchant: "m", PaymentID: pay.ID})
			if err != nil {
				t.Fatal(err)
			}
			if got.Metadata["order"] != "7" || got.Status != payments.StatusCaptured {
				t.Fatalf("stored payment changed by its callers: status %s, metadata %v", got.Status, got.Metadata)
			}
			got.Metadata["order"] = "changed through Get"
			again, err := p.Get(ctx, payments.GetRequest{Merchant: "m", PaymentID: pay.ID})
			if err != nil {
				t.Fatal(err)
			}
			if again.Metadata["order"] != "7" {
				t.Fatalf("Get result aliases the store: %v", again.Metadata)
			}
		})
	}
}

// sharingStore is a MemoryStore that, as the Store contract allows, keeps
// the metadata map it is given and hands that map out again from Get.
type sharingStore struct {
	*payments.MemoryStore
	mu   sync.Mutex
	meta map[string]map[string]string
}

func (s *sharingStore) keep(p *payments.Payment) {
	s.mu.Lock()
	s.meta[p.ID] = p.Metadata
	s.mu.Unlock()
}

func (s *sharingStore) Create(ctx context.Context, p *payments.Payment) error {
	err := s.MemoryStore.Create(ctx, p)
	if err == nil {
		s.keep(p)
	}
	return err
}

func (s *sharingStore) Update(ctx context.Context, p *payments.Payment) error {
	err := s.MemoryStore.Update(ctx, p)
	if err == nil {
		s.keep(p)
	}
	return err
}

func (s *sharingStore) Get(ctx context.Context, merchant, id string) (*payments.Payment, error) {
	p, err := s.MemoryStore.Get(ctx, merchant, id)
	if err == nil {
		s.mu.Lock()
		p.Metadata = s.meta[id]
		s.mu.Unlock()
	}
	return p, err
}
