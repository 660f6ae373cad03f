package payments

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/webhook"
)

// EndpointSource gives the webhook endpoints of a merchant. Configure
// endpoints like API keys (see StaticEndpoints); a platform with
// self-service endpoints implements it over its own database.
type EndpointSource interface {
	// Endpoints returns the merchant's endpoints, enabled or not.
	Endpoints(ctx context.Context, merchant string) ([]webhook.Endpoint, error)
}

// EndpointDisabler is implemented by an EndpointSource that can disable
// an endpoint for good: the worker calls it when the endpoint answers 410
// Gone (the receiver asking never to be sent anything again). Whether or
// not the source implements it, the worker stops sending to that endpoint
// until it restarts.
type EndpointDisabler interface {
	DisableEndpoint(ctx context.Context, merchant, id string) error
}

// StaticEndpoints is an EndpointSource over a fixed list.
type StaticEndpoints []webhook.Endpoint

// Endpoints implements EndpointSource.
func (s StaticEndpoints) Endpoints(_ context.Context, merchant string) ([]webhook.Endpoint, error) {
	var out []webhook.Endpoint
	for _, e := range s {
		if e.Merchant == merchant {
			out = append(out, e)
		}
	}
	return out, nil
}

// Webhooks configures a Worker's delivery of payment events (see Event)
// to the merchants' endpoints.
type Webhooks struct {
	// Endpoints gives each merchant's endpoints (required).
	Endpoints EndpointSource
	// Client sends the deliveries: signing, SSRF guard, per-endpoint
	// concurrency limit and circuit breaker (required).
	Client *webhook.Client
	// Schedule is the retry schedule (zero: webhook.Schedule's defaults,
	// about 3 days).
	Schedule webhook.Schedule
	// SweepInterval is how often the worker looks for events whose
	// delivery is due — new events, and retries (default 1s): the delay
	// before an event's first delivery is up to this long.
	SweepInterval time.Duration
}

// Webhook delivery metrics.
const (
	// MetricWebhookDeliveries counts webhook delivery attempts by
	// payrail.webhook.endpoint and payrail.outcome: delivered, retry (the
	// attempt failed and will be retried), dead (dead-lettered: retries
	// exhausted, or the endpoint will never take it).
	MetricWebhookDeliveries = "payrail.webhook.deliveries"
	// MetricWebhookPendingAge is the age of the oldest event still pending
	// delivery to an endpoint, by payrail.webhook.endpoint, as the worker
	// last saw it (0 when none is pending): from the event's creation, or
	// from the delivery's last redelivery (Delivery.Redelivered).
	MetricWebhookPendingAge = "payrail.webhook.pending.age"
)

const attrEndpoint = attribute.Key("payrail.webhook.endpoint")

// WithWebhooks makes the worker deliver the payment events that
// processors created WithEvents record: its sweep finds the payments with
// deliveries due in the store (which must implement EventStore), claims
// them and publishes their notifications on the bus; the workers' handlers
// deliver. Recording an event therefore costs the synchronous path nothing
// but the event itself, and the delivery work spreads over every worker.
func WithWebhooks(cfg Webhooks) WorkerOption {
	return func(w *Worker) { w.hooks = &cfg }
}

// deliverer is the worker's webhook machinery.
type deliverer struct {
	log      *slog.Logger
	cfg      Webhooks
	store    EventStore
	attempts metric.Int64Counter
	age      metric.Float64ObservableGauge

	mu     sync.Mutex
	oldest map[string]time.Time // endpoint → oldest pending event seen in the last refresh
	agesAt time.Time            // when the sweep last refreshed oldest (one sweep at a time)
	// gone holds the endpoints that answered 410 Gone (id → when):
	// deliveries to them are dead-lettered without a request.
	gone sync.Map
	// busy holds the payments this worker is delivering events of: a
	// notification and the sweep do not deliver the same event twice at
	// once.
	busy sync.Map
}

func (w *Worker) initWebhooks() error {
	cfg := *w.hooks
	if cfg.Endpoints == nil || cfg.Client == nil {
		return errors.New("payments: WithWebhooks needs Endpoints and Client")
	}
	l, ok := w.p.store.(EventStore)
	if !ok {
		return fmt.Errorf("payments: WithWebhooks: %w (%T)", ErrEventsUnsupported, w.p.store)
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = time.Second
	}
	d := &deliverer{cfg: cfg, store: l, oldest: map[string]time.Time{}, log: w.log}
	m := w.p.providers.Meter().Meter(instrumentationName)
	var err error
	if d.attempts, err = m.Int64Counter(MetricWebhookDeliveries,
		metric.WithDescription("Webhook delivery attempts, by endpoint and outcome (delivered, retry, dead)."),
		metric.WithUnit("{attempt}")); err != nil {
		return err
	}
	if d.age, err = m.Float64ObservableGauge(MetricWebhookPendingAge,
		metric.WithDescription("Age of the oldest event pending delivery to an endpoint."),
		metric.WithUnit("s")); err != nil {
		return err
	}
	if _, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		d.mu.Lock()
		defer d.mu.Unlock()
		now := w.p.now()
		for ep, t := range d.oldest {
			age := 0.0
			if !t.IsZero() {
				age = now.Sub(t).Seconds()
			}
			o.ObserveFloat64(d.age, age, metric.WithAttributes(attrEndpoint.String(ep)))
		}
		return nil
	}, d.age); err != nil {
		return err
	}
	w.deliver = d
	return nil
}

// handleEvents delivers the due events of the payment a notification names.
func (w *Worker) handleEvents(ctx context.Context, m *bus.Message, cmd command) error {
	if w.deliver == nil {
		return m.Ack(ctx) // this worker does not deliver webhooks
	}
	if _, err := w.DeliverEvents(ctx, cmd.Merchant, cmd.PaymentID); err != nil {
		if m.DeliveryAttempt >= w.p.retry.MaxAttempts {
			// The events stay in the payment: the sweep retries them.
			w.log.WarnContext(ctx, "payments: delivering events failed; left to the event sweep",
				"payment_id", cmd.PaymentID, "error", err)
			return m.Ack(ctx)
		}
		return m.Nack(ctx, w.p.retry.Backoff(m.DeliveryAttempt))
	}
	return m.Ack(ctx)
}

// deliveryResult is one attempt to apply to the stored payment.
type deliveryResult struct {
	event    int64 // the event's PaymentVersion
	endpoint string
	attempts int // the delivery's Attempts when it was read
	d        Delivery
}

// DeliverEvents makes the due delivery attempts of a payment's events and
// stores their results (EventStore.UpdateEvents, which also ends the
// sweep's claim); it returns how many attempts it made. Run calls it for
// each events notification.
func (w *Worker) DeliverEvents(ctx context.Context, merchant, paymentID string) (int, error) {
	d := w.deliver
	if d == nil {
		return 0, errors.New("payments: the worker was not given WithWebhooks")
	}
	if _, running := d.busy.LoadOrStore(paymentID, struct{}{}); running {
		return 0, nil
	}
	defer d.busy.Delete(paymentID)
	pay, err := w.p.store.Get(ctx, merchant, paymentID)
	if err != nil {
		return 0, err
	}
	now := w.p.now()
	if pay.EventsDue.IsZero() {
		return 0, nil // nothing pending (a duplicate notification)
	}
	var eps []webhook.Endpoint
	epsRead := false
	var resolved map[int64][]Delivery // event (its PaymentVersion) → its deliveries, for events resolved now
	var results []deliveryResult
	for i := range pay.Events {
		ev := &pay.Events[i]
		if !ev.pending() {
			continue
		}
		deliveries := ev.Deliveries
		if !ev.Resolved {
			if !epsRead {
				if eps, err = d.cfg.Endpoints.Endpoints(ctx, merchant); err != nil {
					return 0, fmt.Errorf("payments: endpoints of merchant %s: %w", merchant, err)
				}
				epsRead = true
			}
			deliveries = nil
			for _, e := range eps {
				if e.Enabled && e.Accepts(ev.Type) {
					deliveries = append(deliveries, Delivery{Endpoint: e.ID, Status: DeliveryPending, NextAttempt: now})
				}
			}
			if resolved == nil {
				resolved = map[int64][]Delivery{}
			}
			resolved[ev.PaymentVersion] = deliveries
		}
		var wev *webhook.Event
		for j := range deliveries {
			dl := deliveries[j]
			if dl.Status != DeliveryPending || dl.NextAttempt.After(now) {
				continue
			}
			if !epsRead {
				if eps, err = d.cfg.Endpoints.Endpoints(ctx, merchant); err != nil {
					return 0, fmt.Errorf("payments: endpoints of merchant %s: %w", merchant, err)
				}
				epsRead = true
			}
			if wev == nil {
				if wev, err = ev.Webhook(pay); err != nil {
					return 0, err
				}
			}
			r := d.attempt(ctx, w.p.now, eps, wev, dl)
			if r.d.Status == DeliveryPending {
				d.notePending(r.endpoint, r.d.pendingSince(ev))
			}
			results = append(results, r)
		}
	}
	if len(results) == 0 && len(resolved) == 0 {
		return 0, nil
	}
	for range 8 {
		pay.Events = cloneEvents(pay.Events) // the store's may be shared: change a copy
		for i := range pay.Events {
			ev := &pay.Events[i]
			if ds, ok := resolved[ev.PaymentVersion]; ok && !ev.Resolved {
				ev.Resolved = true
				ev.Deliveries = slices.Clone(ds)
			}
			for _, r := range results {
				if r.event != ev.PaymentVersion {
					continue
				}
				for j := range ev.Deliveries {
					dl := &ev.Deliveries[j]
					// Applied once: a concurrent worker's result for the
					// same attempt, or a redelivery since, wins.
					if dl.Endpoint == r.endpoint && dl.Status == DeliveryPending && dl.Attempts == r.attempts {
						*dl = r.d
					}
				}
			}
		}
		pay.refreshDue()
		err := d.store.UpdateEvents(uncancelled(ctx), pay)
		if !errors.Is(err, ErrStoreConflict) {
			return len(results), err
		}
		// The payment changed meanwhile: apply the results to it as it is.
		if pay, err = w.p.store.Get(uncancelled(ctx), merchant, paymentID); err != nil {
			return len(results), err
		}
	}
	return len(results), fmt.Errorf("payments: storing delivery results of payment %s: %w", paymentID, ErrStoreConflict)
}

// attempt delivers one event to one endpoint and returns the delivery's
// new state.
func (d *deliverer) attempt(ctx context.Context, now func() time.Time, eps []webhook.Endpoint, ev *webhook.Event, dl Delivery) deliveryResult {
	r := deliveryResult{event: ev.PaymentVersion, endpoint: dl.Endpoint, attempts: dl.Attempts, d: dl}
	i := slices.IndexFunc(eps, func(e webhook.Endpoint) bool { return e.ID == dl.Endpoint })
	if i < 0 {
		r.d.Status, r.d.LastResult = DeliveryDead, "the endpoint was removed"
		d.count(ctx, dl.Endpoint, "dead")
		return r
	}
	if at, ok := d.gone.Load(dl.Endpoint); ok {
		r.d.Status, r.d.NextAttempt = DeliveryDead, time.Time{}
		r.d.LastResult = "not sent: the endpoint answered 410 Gone at " + at.(time.Time).UTC().Format(time.RFC3339) + " and is disabled"
		d.count(ctx, dl.Endpoint, "dead")
		return r
	}
	res := d.cfg.Client.Deliver(ctx, &eps[i], ev)
	t := now()
	if res.Outcome == webhook.Disable {
		d.disable(ctx, &eps[i], t)
	}
	if res.Attempted {
		r.d.Attempts++
		if r.d.FirstAttempt.IsZero() {
			r.d.FirstAttempt = t
		}
		r.d.LastAttempt = t
	}
	r.d.LastResult = describe(res)
	switch res.Outcome {
	case webhook.Delivered:
		r.d.Status, r.d.NextAttempt = DeliveryDelivered, time.Time{}
		d.count(ctx, dl.Endpoint, "delivered")
		return r
	case webhook.Retry:
		if !res.Attempted { // not sent (busy, breaker open): not an attempt
			r.d.NextAttempt = t.Add(max(res.RetryAfter, time.Second))
			return r
		}
		if next, ok := d.cfg.Schedule.After(r.d.Attempts, res); ok {
			r.d.NextAttempt = t.Add(next)
			d.count(ctx, dl.Endpoint, "retry")
			return r
		}
	}
	r.d.Status, r.d.NextAttempt = DeliveryDead, time.Time{}
	d.count(ctx, dl.Endpoint, "dead")
	return r
}

// disable stops deliveries to an endpoint that answered 410 Gone, and
// disables it in the source if the source can.
func (d *deliverer) disable(ctx context.Context, ep *webhook.Endpoint, at time.Time) {
	if _, dup := d.gone.LoadOrStore(ep.ID, at); dup {
		return
	}
	var err error
	dis, ok := d.cfg.Endpoints.(EndpointDisabler)
	if ok {
		err = dis.DisableEndpoint(ctx, ep.Merchant, ep.ID)
	}
	d.log.WarnContext(ctx, "payments: a webhook endpoint answered 410 Gone: it is disabled, its deliveries are dead-lettered",
		"endpoint", ep.ID, "merchant", ep.Merchant, "disabled_in_source", ok && err == nil, "error", err)
}

func (d *deliverer) count(ctx context.Context, endpoint, outcome string) {
	d.attempts.Add(ctx, 1, metric.WithAttributes(attrEndpoint.String(endpoint), attrOutcome.String(outcome)))
}

// describe summarises an attempt for Delivery.LastResult: the status code
// or the kind of failure, never the response body.
func describe(r webhook.Result) string {
	switch {
	case r.StatusCode != 0:
		return "HTTP " + strconv.Itoa(r.StatusCode) + " " + http.StatusText(r.StatusCode)
	case r.Err != nil:
		return r.Err.Error()
	}
	return r.Outcome.String()
}

// eventSweepLoop delivers what is due, every SweepInterval.
func (w *Worker) eventSweepLoop(ctx context.Context) {
	every(ctx, w.deliver.cfg.SweepInterval, func() {
		if n, err := w.SweepEvents(ctx); err != nil {
			w.log.WarnContext(ctx, "payments: event sweep failed", "error", err)
		} else if n > 0 {
			w.log.DebugContext(ctx, "payments: event sweep made delivery attempts", "count", n)
		}
	})
}

// SweepEvents finds the payments whose events have delivery work due —
// events just recorded, retries, and work a crashed worker left — claims
// each (EventsDue moves claimLease ahead, in a compare-and-set write, so
// that the other workers' sweeps pass it over) and publishes its events
// notification on the bus, whose handlers, in every worker, deliver. A
// payment whose notification cannot be published is delivered here.
// Every agesEvery it also refreshes the pending-age metric. It returns how
// many payments it claimed.
func (w *Worker) SweepEvents(ctx context.Context) (int, error) {
	d := w.deliver
	if d == nil {
		return 0, errors.New("payments: the worker was not given WithWebhooks")
	}
	now := w.p.now()
	due, err := d.store.ListEventsDue(ctx, now, 500)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, pay := range due {
		if ctx.Err() != nil {
			break
		}
		pay.EventsDue = now.Add(claimLease)
		if err := d.store.UpdateEvents(ctx, pay); err != nil {
			if !errors.Is(err, ErrStoreConflict) {
				errs = append(errs, fmt.Errorf("claiming payment %s: %w", pay.ID, err))
			}
			continue // changed or claimed meanwhile: a later sweep sees it
		}
		n++
		if err := w.p.notifyEvents(ctx, pay); err != nil {
			w.log.WarnContext(ctx, "payments: publishing an events notification failed; delivering here",
				"payment_id", pay.ID, "error", err)
			if _, err := w.DeliverEvents(ctx, pay.Merchant, pay.ID); err != nil {
				errs = append(errs, fmt.Errorf("payment %s: %w", pay.ID, err))
			}
		}
	}
	if now.Sub(d.agesAt) >= agesEvery {
		d.agesAt = now
		d.refreshAges(ctx)
	}
	return n, errors.Join(errs...)
}

// agesEvery is how often the sweep refreshes the pending-age metric: it
// reads every payment with pending events, which is heavier than the
// sweep's own query.
const agesEvery = 15 * time.Second

// claimLease is how long a sweep's claim on a payment's due events keeps
// the other sweeps away: longer than a handler takes to deliver them. A
// claim whose worker died lapses after it, and the events are swept again.
const claimLease = 2 * time.Minute

// notePending records, until the next refresh, that a delivery to
// endpoint pending since since (Delivery.pendingSince) is still pending.
func (d *deliverer) notePending(endpoint string, since time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if t, ok := d.oldest[endpoint]; !ok || t.IsZero() || since.Before(t) {
		d.oldest[endpoint] = since
	}
}

// refreshAges recomputes the oldest pending event per endpoint.
func (d *deliverer) refreshAges(ctx context.Context) {
	pending, err := d.store.ListEventsDue(ctx, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), 1000)
	if err != nil {
		return
	}
	oldest := map[string]time.Time{}
	d.mu.Lock()
	for ep := range d.oldest {
		oldest[ep] = time.Time{} // still exported, at 0
	}
	d.mu.Unlock()
	for _, pay := range pending {
		for i := range pay.Events {
			ev := &pay.Events[i]
			for _, dl := range ev.Deliveries {
				if dl.Status != DeliveryPending {
					continue
				}
				since := dl.pendingSince(ev)
				if t, ok := oldest[dl.Endpoint]; !ok || t.IsZero() || since.Before(t) {
					oldest[dl.Endpoint] = since
				}
			}
		}
	}
	d.mu.Lock()
	d.oldest = oldest
	d.mu.Unlock()
}
