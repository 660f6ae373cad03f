package payments_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/payments"
	"github.com/payrail/payrail/webhook"
)

// receiver is a merchant's webhook endpoint: a real HTTP server that
// verifies every delivery with the webhook package, as merchants do.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	status atomic.Int32 // answer; 0 means 204
	mu     sync.Mutex
	got    []*webhook.Event
	bad    int
}

func newReceiver(t *testing.T, secrets ...webhook.Secret) *receiver {
	t.Helper()
	var keys []string
	for _, s := range secrets {
		keys = append(keys, s.Reveal())
	}
	v, err := webhook.NewVerifier(keys)
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if err := v.Verify(req.Header, body); err != nil {
			r.mu.Lock()
			r.bad++
			r.mu.Unlock()
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if code := int(r.status.Load()); code != 0 {
			w.WriteHeader(code)
			return
		}
		ev, err := webhook.ParseEvent(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.got = append(r.got, ev)
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) events() []*webhook.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*webhook.Event(nil), r.got...)
}

func newSecret(t *testing.T) webhook.Secret {
	t.Helper()
	s, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// loopbackClient is a webhook client allowed to reach the test receivers.
func loopbackClient(t *testing.T, opts ...webhook.ClientOption) *webhook.Client {
	t.Helper()
	c, err := webhook.NewClient(append([]webhook.ClientOption{webhook.AllowInsecureHTTP(),
		webhook.WithAllowedNetworks(netip.MustParsePrefix("127.0.0.0/8")), webhook.WithTimeout(2 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

type eventsEnv struct {
	p     *payments.Processor
	store *payments.MemoryStore
	w     *payments.Worker
}

// newEventsEnv returns a processor recording events over store and, unless
// hooks is nil, a running worker delivering them.
func newEventsEnv(t *testing.T, store payments.Store, hooks *payments.Webhooks, opts ...payments.Option) eventsEnv {
	t.Helper()
	g, err := gateway.Open(context.Background(), "mock://")
	if err != nil {
		t.Fatal(err)
	}
	p, err := payments.New(append([]payments.Option{payments.WithGateway(g), payments.WithStore(store)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	e := eventsEnv{p: p}
	e.store, _ = store.(*payments.MemoryStore)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	wopts := []payments.WorkerOption{}
	if hooks != nil {
		wopts = append(wopts, payments.WithWebhooks(*hooks))
	}
	w, err := payments.NewWorker(p, wopts...)
	if err != nil {
		t.Fatal(err)
	}
	e.w = w
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
		if err := p.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return e
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func authorize(t *testing.T, p *payments.Processor, key string, capture payments.CaptureMethod) *payments.Payment {
	t.Helper()
	pay, err := p.Authorize(context.Background(), payments.AuthorizeRequest{
		Merchant: "acme", IdempotencyKey: key, Amount: 1000, Currency: "EUR",
		PaymentMethod: "pm_card_visa", CaptureMethod: capture,
	})
	if err != nil {
		t.Fatal(err)
	}
	return pay
}

// Every state change is an event, recorded with the change and delivered
// signed to the endpoints subscribed to its type; a secret being rotated
// still verifies; the payment's data is as it was after the change.
func TestEventsDeliveredSignedAndFiltered(t *testing.T) {
	oldSecret, newSecret := newSecret(t), newSecret(t)
	all := newReceiver(t, oldSecret) // the merchant has not switched to the new secret yet
	refundsOnly := newReceiver(t, newSecret)
	store := payments.NewMemoryStore()
	e := newEventsEnv(t, store, &payments.Webhooks{
		Endpoints: payments.StaticEndpoints{
			{ID: "ep_all", Merchant: "acme", URL: all.srv.URL, Secrets: []webhook.Secret{newSecret, oldSecret}, Enabled: true},
			{ID: "ep_refunds", Merchant: "acme", URL: refundsOnly.srv.URL, Secrets: []webhook.Secret{newSecret},
				EventTypes: []webhook.EventType{webhook.PaymentRefunded}, Enabled: true},
			{ID: "ep_other", Merchant: "globex", URL: refundsOnly.srv.URL, Secrets: []webhook.Secret{newSecret}, Enabled: true},
		},
		Client:        loopbackClient(t),
		SweepInterval: 20 * time.Millisecond,
	}, payments.WithEvents())
	ctx := context.Background()

	pay := authorize(t, e.p, "ev-1", payments.CaptureManual)
	if _, err := e.p.Capture(ctx, payments.CaptureRequest{Merchant: "acme", PaymentID: pay.ID, IdempotencyKey: "ev-1-c"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Refund(ctx, payments.RefundRequest{Merchant: "acme", PaymentID: pay.ID, IdempotencyKey: "ev-1-r", Amount: 300}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "three events at the first endpoint and one at the second", func() bool {
		return len(all.events()) == 3 && len(refundsOnly.events()) == 1
	})
	want := []webhook.EventType{webhook.PaymentAuthorized, webhook.PaymentCaptured, webhook.PaymentRefunded}
	stored, err := store.Get(ctx, "acme", pay.ID)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]*webhook.Event{}
	for _, ev := range all.events() {
		byID[ev.ID] = ev
	}
	if len(stored.Events) != 3 {
		t.Fatalf("stored events = %d, want 3", len(stored.Events))
	}
	// What each event's data must say, independently of Snapshot.
	wantData := []struct {
		status                      payments.Status
		captured, refunded, nRefund int64
	}{{payments.StatusAuthorized, 0, 0, 0}, {payments.StatusCaptured, 1000, 0, 0}, {payments.StatusCaptured, 1000, 300, 1}}
	for i, se := range stored.Events {
		if se.Type != want[i] {
			t.Errorf("event %d type = %s, want %s", i, se.Type, want[i])
		}
		if latest := i == len(stored.Events)-1; (se.State == nil) != latest {
			t.Errorf("event %d state %+v: want it kept only for events before the latest", i, se.State)
		}
		if got := byID[se.ID(stored)]; got != nil {
			var data payments.Payment
			if err := json.Unmarshal(got.Data, &data); err != nil {
				t.Fatal(err)
			}
			w := wantData[i]
			if data.Status != w.status || data.AmountCaptured != w.captured || data.AmountRefunded != w.refunded || int64(len(data.Refunds)) != w.nRefund {
				t.Errorf("event %d (%s) data: %s captured %d refunded %d refunds %d; want %s %d %d %d", i, se.Type,
					data.Status, data.AmountCaptured, data.AmountRefunded, len(data.Refunds), w.status, w.captured, w.refunded, w.nRefund)
			}
		}
		got := byID[se.ID(stored)]
		if got == nil {
			t.Fatalf("event %s was not delivered", se.ID(stored))
		}
		if got.PaymentVersion != se.PaymentVersion || got.PaymentID != pay.ID || got.Merchant != "acme" {
			t.Errorf("delivered %+v, stored %+v", got, se)
		}
		snap := se.Snapshot(stored)
		var data payments.Payment
		if err := json.Unmarshal(got.Data, &data); err != nil {
			t.Fatal(err)
		}
		if data.Status != snap.Status || data.AmountCaptured != snap.AmountCaptured || data.AmountRefunded != snap.AmountRefunded ||
			len(data.Refunds) != len(snap.Refunds) || !data.UpdatedAt.Equal(se.CreatedAt) || !got.CreatedAt.Equal(se.CreatedAt) {
			t.Errorf("event %s data = %s/%d/%d, want %s/%d/%d", se.ID(stored), data.Status, data.AmountCaptured, data.AmountRefunded,
				snap.Status, snap.AmountCaptured, snap.AmountRefunded)
		}
		for _, d := range se.Deliveries {
			if d.Status != payments.DeliveryDelivered || d.Attempts != 1 {
				t.Errorf("event %s delivery to %s = %+v, want delivered in 1 attempt", se.ID(stored), d.Endpoint, d)
			}
		}
	}
	// Versions grow with the changes: the last event is the payment's
	// current version.
	if last := stored.Events[2]; last.PaymentVersion != stored.Version {
		t.Errorf("last event version %d, payment version %d", last.PaymentVersion, stored.Version)
	}
	if got := refundsOnly.events()[0]; got.Type != webhook.PaymentRefunded {
		t.Errorf("the refunds-only endpoint got %s", got.Type)
	}
	waitFor(t, "the outbox to be empty", func() bool {
		p, err := store.Get(ctx, "acme", pay.ID)
		return err == nil && p.EventsDue.IsZero()
	})
	if all.bad+refundsOnly.bad != 0 {
		t.Errorf("%d deliveries failed verification", all.bad+refundsOnly.bad)
	}
	// A changed payment with a declined card: payment.declined.
	_, err = e.p.Authorize(ctx, payments.AuthorizeRequest{Merchant: "acme", IdempotencyKey: "ev-2", Amount: 1000, Currency: "EUR",
		PaymentMethod: "pm_card_chargeDeclined"})
	if err == nil {
		t.Fatal("a declined card authorized")
	}
	waitFor(t, "payment.declined", func() bool {
		evs := all.events()
		return len(evs) == 4 && evs[3].Type == webhook.PaymentDeclined
	})
}

// A failing endpoint is retried on the schedule, then dead-lettered;
// RedeliverEvent sends it again once the endpoint is back.
func TestEventsRetriedDeadLetteredRedelivered(t *testing.T) {
	sec := newSecret(t)
	r := newReceiver(t, sec)
	r.status.Store(http.StatusInternalServerError)
	store := payments.NewMemoryStore()
	reader := sdkmetric.NewManualReader()
	e := newEventsEnv(t, store, &payments.Webhooks{
		Endpoints: payments.StaticEndpoints{{ID: "ep", Merchant: "acme", URL: r.srv.URL, Secrets: []webhook.Secret{sec}, Enabled: true}},
		// The breaker opens after the 4 failures, briefly: the redelivery
		// waits for it.
		Client: loopbackClient(t, webhook.WithBreaker(webhook.BreakerSettings{ConsecutiveFailures: 4, OpenTimeout: 50 * time.Millisecond})),
		// 4 attempts: at once, then after 10, 20 and 40 ms; no jitter.
		Schedule:      webhook.Schedule{Initial: 10 * time.Millisecond, Factor: 2, Period: 75 * time.Millisecond, Jitter: -1},
		SweepInterval: 5 * time.Millisecond,
	}, payments.WithEvents(), payments.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
	ctx := context.Background()
	pay := authorize(t, e.p, "ev-dead", payments.CaptureAutomatic)

	var ev payments.Event
	waitFor(t, "the delivery to be dead-lettered", func() bool {
		p, err := store.Get(ctx, "acme", pay.ID)
		if err != nil || len(p.Events) != 1 || len(p.Events[0].Deliveries) != 1 {
			return false
		}
		ev = p.Events[0]
		return ev.Deliveries[0].Status == payments.DeliveryDead
	})
	d := ev.Deliveries[0]
	if d.Attempts != 4 || d.LastResult != "HTTP 500 Internal Server Error" {
		t.Errorf("dead delivery = %+v, want 4 attempts ending in HTTP 500", d)
	}
	if p, _ := store.Get(ctx, "acme", pay.ID); !p.EventsDue.IsZero() {
		t.Errorf("a dead-lettered event is still due at %v", p.EventsDue)
	}
	pending, err := payments.ListPendingEvents(ctx, store, 10)
	if err != nil || len(pending) != 0 {
		t.Errorf("ListPendingEvents = %d, %v; want none", len(pending), err)
	}

	r.status.Store(0)
	if _, err := payments.RedeliverEvent(ctx, store, "acme", pay.ID, "evt_nope", "", false, time.Now()); !errors.Is(err, payments.ErrEventNotFound) {
		t.Errorf("redelivering an unknown event = %v, want ErrEventNotFound", err)
	}
	evID := ev.ID(pay)
	if want := "evt_" + pay.ID + "_" + strconv.FormatInt(ev.PaymentVersion, 10); evID != want {
		t.Errorf("event id = %s, want %s", evID, want)
	}
	redelivered := time.Now()
	re, err := payments.RedeliverEvent(ctx, store, "acme", pay.ID, evID, "", false, redelivered)
	if err != nil || re.Deliveries[0].Status != payments.DeliveryPending || re.Deliveries[0].Attempts != 0 ||
		!re.Deliveries[0].Redelivered.Equal(redelivered) {
		t.Fatalf("RedeliverEvent = %+v, %v", re, err)
	}
	waitFor(t, "the redelivery", func() bool { return len(r.events()) == 1 })
	if got := r.events()[0]; got.ID != evID || got.Type != webhook.PaymentCaptured {
		t.Errorf("redelivered %s %s, want %s payment.captured", got.ID, got.Type, evID)
	}

	// Every attempt is counted by endpoint and outcome.
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	ages := 0
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				if m.Name != payments.MetricWebhookDeliveries {
					continue
				}
				for _, dp := range d.DataPoints {
					ep, _ := dp.Attributes.Value("payrail.webhook.endpoint")
					out, _ := dp.Attributes.Value("payrail.outcome")
					counts[ep.AsString()+"/"+out.AsString()] += dp.Value
				}
			case metricdata.Gauge[float64]:
				if m.Name == payments.MetricWebhookPendingAge {
					ages += len(d.DataPoints)
				}
			}
		}
	}
	if want := map[string]int64{"ep/retry": 3, "ep/dead": 1, "ep/delivered": 1}; !maps.Equal(counts, want) {
		t.Errorf("%s = %v, want %v", payments.MetricWebhookDeliveries, counts, want)
	}
	if ages != 1 {
		t.Errorf("%s has %d series, want 1 (endpoint ep)", payments.MetricWebhookPendingAge, ages)
	}
}

// An event stored with its change is delivered even if no notification
// ever reaches a worker (the process died right after the write): another
// process's worker finds it in the store.
func TestEventSurvivesLostNotification(t *testing.T) {
	sec := newSecret(t)
	r := newReceiver(t, sec)
	store := payments.NewMemoryStore()
	// The first process records the event; its worker delivers nothing.
	a := newEventsEnv(t, store, nil, payments.WithEvents())
	pay := authorize(t, a.p, "ev-crash", payments.CaptureAutomatic)
	stored, err := store.Get(context.Background(), "acme", pay.ID)
	if err != nil || len(stored.Events) != 1 || stored.EventsDue.IsZero() {
		t.Fatalf("stored payment: %d events, due %v, %v", len(stored.Events), stored.EventsDue, err)
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(r.events()); n != 0 {
		t.Fatalf("delivered %d events without a delivering worker", n)
	}
	// Another process, with a delivering worker, over the same store.
	newEventsEnv(t, store, &payments.Webhooks{
		Endpoints:     payments.StaticEndpoints{{ID: "ep", Merchant: "acme", URL: r.srv.URL, Secrets: []webhook.Secret{sec}, Enabled: true}},
		Client:        loopbackClient(t),
		SweepInterval: 10 * time.Millisecond,
	}, payments.WithEvents())
	waitFor(t, "the sweep to deliver the event", func() bool { return len(r.events()) == 1 })
	if got := r.events()[0]; got.ID != stored.Events[0].ID(stored) {
		t.Errorf("delivered %s, want %s", got.ID, stored.Events[0].ID(stored))
	}
}

// failingStore refuses Update while fail is set.
type failingStore struct {
	*payments.MemoryStore
	fail atomic.Bool
}

func (s *failingStore) Update(ctx context.Context, p *payments.Payment) error {
	if s.fail.Load() {
		return errors.New("store down")
	}
	return s.MemoryStore.Update(ctx, p)
}

// A change the store did not take makes no event: the capture that failed
// to store is not announced.
func TestNoEventForUnstoredChange(t *testing.T) {
	sec := newSecret(t)
	r := newReceiver(t, sec)
	store := &failingStore{MemoryStore: payments.NewMemoryStore()}
	e := newEventsEnv(t, store, &payments.Webhooks{
		Endpoints:     payments.StaticEndpoints{{ID: "ep", Merchant: "acme", URL: r.srv.URL, Secrets: []webhook.Secret{sec}, Enabled: true}},
		Client:        loopbackClient(t),
		SweepInterval: 10 * time.Millisecond,
	}, payments.WithEvents())
	ctx := context.Background()
	pay := authorize(t, e.p, "ev-unstored", payments.CaptureManual)
	waitFor(t, "payment.authorized", func() bool { return len(r.events()) == 1 })

	store.fail.Store(true)
	if _, err := e.p.Capture(ctx, payments.CaptureRequest{Merchant: "acme", PaymentID: pay.ID, IdempotencyKey: "ev-unstored-c"}); err == nil {
		t.Fatal("a capture the store refused succeeded")
	}
	store.fail.Store(false)
	time.Sleep(100 * time.Millisecond) // several sweeps
	got, err := store.Get(ctx, "acme", pay.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Events) != 1 || got.Status != payments.StatusAuthorized {
		t.Errorf("after a refused capture: status %s, %d events; want authorized, 1", got.Status, len(got.Events))
	}
	if evs := r.events(); len(evs) != 1 {
		t.Errorf("delivered %d events, want only payment.authorized", len(evs))
	}
}

// Without WithEvents nothing is recorded.
func TestEventsOffByDefault(t *testing.T) {
	store := payments.NewMemoryStore()
	e := newEventsEnv(t, store, nil)
	pay := authorize(t, e.p, "ev-off", payments.CaptureAutomatic)
	got, err := store.Get(context.Background(), "acme", pay.ID)
	if err != nil || len(got.Events) != 0 || !got.EventsDue.IsZero() {
		t.Errorf("without WithEvents: %d events, due %v, %v", len(got.Events), got.EventsDue, err)
	}
	if e.p.EventsEnabled() {
		t.Error("EventsEnabled without WithEvents")
	}
}

// A worker delivering webhooks needs a store that can list due events.
func TestWebhooksNeedEventStore(t *testing.T) {
	g, err := gateway.Open(context.Background(), "mock://")
	if err != nil {
		t.Fatal(err)
	}
	p, err := payments.New(payments.WithGateway(g), payments.WithStore(noLister{payments.NewMemoryStore()}), payments.WithEvents())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, err = payments.NewWorker(p, payments.WithWebhooks(payments.Webhooks{Endpoints: payments.StaticEndpoints{}, Client: loopbackClient(t)}))
	if !errors.Is(err, payments.ErrEventsUnsupported) {
		t.Errorf("NewWorker over a store without EventStore = %v, want ErrEventsUnsupported", err)
	}
}

type noLister struct{ payments.Store }

// Several workers over one store: their sweeps claim each payment's due
// events before delivering, so that in the absence of failures every
// event reaches the endpoint once, not once per worker.
func TestEventsSeveralWorkersDeliverOnce(t *testing.T) {
	sec := newSecret(t)
	r := newReceiver(t, sec)
	store := payments.NewMemoryStore()
	hooks := &payments.Webhooks{
		Endpoints:     payments.StaticEndpoints{{ID: "ep", Merchant: "acme", URL: r.srv.URL, Secrets: []webhook.Secret{sec}, Enabled: true}},
		Client:        loopbackClient(t),
		SweepInterval: 2 * time.Millisecond,
	}
	a := newEventsEnv(t, store, hooks, payments.WithEvents())
	newEventsEnv(t, store, hooks, payments.WithEvents())
	newEventsEnv(t, store, hooks, payments.WithEvents())
	const n = 40
	for i := range n {
		authorize(t, a.p, "ev-many-"+strconv.Itoa(i), payments.CaptureAutomatic)
	}
	waitFor(t, "every event", func() bool { return len(r.events()) >= n })
	time.Sleep(50 * time.Millisecond) // more sweeps: no late duplicate
	seen := map[string]int{}
	for _, ev := range r.events() {
		seen[ev.ID]++
	}
	if len(seen) != n {
		t.Errorf("%d distinct events delivered, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("event %s delivered %d times", id, c)
		}
	}
}

// goneSource is an EndpointSource that records DisableEndpoint calls.
type goneSource struct {
	payments.StaticEndpoints
	mu       sync.Mutex
	disabled []string
}

func (g *goneSource) DisableEndpoint(_ context.Context, merchant, id string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.disabled = append(g.disabled, merchant+"/"+id)
	return nil
}

// An endpoint that answers 410 Gone is disabled: the delivery is
// dead-lettered at once, later events are dead-lettered without a request,
// and a source that can disable endpoints is told.
func TestEventsEndpointGoneIsDisabled(t *testing.T) {
	sec := newSecret(t)
	r := newReceiver(t, sec)
	r.status.Store(http.StatusGone)
	var requests atomic.Int32
	counted := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		requests.Add(1)
		r.srv.Config.Handler.ServeHTTP(w, req)
	}))
	t.Cleanup(counted.Close)
	src := &goneSource{StaticEndpoints: payments.StaticEndpoints{{ID: "ep_gone", Merchant: "acme", URL: counted.URL,
		Secrets: []webhook.Secret{sec}, Enabled: true}}}
	store := payments.NewMemoryStore()
	e := newEventsEnv(t, store, &payments.Webhooks{Endpoints: src, Client: loopbackClient(t), SweepInterval: 5 * time.Millisecond},
		payments.WithEvents())
	ctx := context.Background()
	deadAll := func(id string, n int) func() bool {
		return func() bool {
			p, err := store.Get(ctx, "acme", id)
			if err != nil || len(p.Events) != n {
				return false
			}
			for _, ev := range p.Events {
				if len(ev.Deliveries) != 1 || ev.Deliveries[0].Status != payments.DeliveryDead {
					return false
				}
			}
			return true
		}
	}
	pay := authorize(t, e.p, "ev-gone", payments.CaptureManual)
	waitFor(t, "the first delivery dead-lettered", deadAll(pay.ID, 1))
	if _, err := e.p.Capture(ctx, payments.CaptureRequest{Merchant: "acme", PaymentID: pay.ID}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second delivery dead-lettered", deadAll(pay.ID, 2))
	got, _ := store.Get(ctx, "acme", pay.ID)
	if d := got.Events[0].Deliveries[0]; d.Attempts != 1 || d.LastResult != "HTTP 410 Gone" {
		t.Errorf("first delivery = %+v, want 1 attempt answered 410", d)
	}
	if d := got.Events[1].Deliveries[0]; d.Attempts != 0 || !strings.Contains(d.LastResult, "410 Gone") {
		t.Errorf("second delivery = %+v, want dead-lettered without an attempt", d)
	}
	if n := requests.Load(); n != 1 {
		t.Errorf("the endpoint got %d requests, want 1", n)
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if len(src.disabled) != 1 || src.disabled[0] != "acme/ep_gone" {
		t.Errorf("DisableEndpoint calls = %v, want [acme/ep_gone]", src.disabled)
	}
}
