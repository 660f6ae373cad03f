package payments

import (
	"context"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/internal/otelgate"
	"github.com/payrail/payrail/telemetry"
)

const instrumentationName = "github.com/payrail/payrail/payments"

// Attribute keys used on spans and metrics.
const (
	attrOperation    = attribute.Key("payrail.operation")
	attrOutcome      = attribute.Key("payrail.outcome")
	attrGateway      = attribute.Key("payrail.gateway")
	attrOrigin       = attribute.Key("payrail.origin")
	attrMode         = attribute.Key("payrail.mode")
	attrPaymentID    = attribute.Key("payrail.payment.id")
	attrMerchant     = attribute.Key("payrail.merchant")
	attrIdemOut      = attribute.Key("payrail.idempotency.outcome")
	attrErrCode      = attribute.Key("payrail.error.code")
	attrReason       = attribute.Key("payrail.review.reason")
	attrRejectReason = attribute.Key("payrail.idempotency.rejection_reason")
)

// Metric names, as instruments; Prometheus exposes them with dots as
// underscores and a _total (counters) or _seconds (durations) suffix.
// Gateway calls are measured by package gateway (gateway.MetricRequestDuration)
// and the bus by package bus.
const (
	// MetricOperations counts processor operations by payrail.operation
	// (authorize, capture, void, refund, process: the worker's async
	// authorization) and payrail.outcome: the payment's status afterwards
	// (authorized, captured, declined, failed, pending, voided) or
	// "refunded" for a refund, "replayed" for an idempotent replay of a
	// completed request, or the error code of a request that failed before
	// reaching the gateway. payrail.gateway and payrail.origin are set once
	// the payment exists. The operations guide's authorized/captured ratio is
	// computed from it.
	MetricOperations = "payrail.payment.operations"
	// MetricOperationDuration is the duration of processor operations, with
	// MetricOperations' attributes.
	MetricOperationDuration = "payrail.payment.operation.duration"
	// MetricIdempotency counts idempotency-key claims by
	// payrail.idempotency.outcome: acquired, reacquired (a crashed request
	// resumed), replay, in_progress (409 idempotency_key_in_use) and
	// mismatch (409 idempotency_key_reused).
	MetricIdempotency = "payrail.idempotency.requests"
	// MetricHTTPProblems counts the HTTP API's error responses (RFC 9457
	// problem documents) by http.request.method, http.route,
	// http.response.status_code and payrail.error.code, such as the
	// operations guide's 409 rate by code.
	MetricHTTPProblems = "payrail.http.server.problems"
	// MetricReviews counts payments moved to requires_review by
	// payrail.review.reason (outcome_unknown: the gateway's answer could not
	// be established within the provider's idempotency window). Any increase
	// needs an operator: alert PayrailPaymentsNeedReview.
	MetricReviews = "payrail.payment.reviews"

	// MetricIdempotencyRejected counts new idempotency keys the store
	// refused, by payrail.idempotency.rejection_reason: "full" (503
	// idempotency_store_full: the in-process store holds its max_entries
	// of unexpired records).
	MetricIdempotencyRejected = "payrail.idempotency.rejected"
)

// instruments holds the processor's tracer and instruments.
type instruments struct {
	tracer     trace.Tracer
	gate       otelgate.Gate // no spans, and no allocations, without an SDK
	operations metric.Int64Counter
	duration   metric.Float64Histogram
	idem       metric.Int64Counter
	problems   metric.Int64Counter
	reviews    metric.Int64Counter
	// originLabel maps a payment's origin to its metric label: an origin
	// the deployment knows, or "other" (see WithMetricOrigins).
	originLabel func(string) string
	redrives    metric.Int64Counter // MetricRedrives (redrive.go)

	// idemRejected counts refused keys (reason full); fullLogged is when a
	// refusal was last logged (Unix nanoseconds): one line every
	// storeFullLogEvery.
	idemRejected metric.Int64Counter
	fullOpts     []metric.AddOption
	fullLogged   atomic.Int64

	// opts caches measurement options per attribute combination: building
	// an attribute.Set on every operation is a measurable share of the hot
	// path. The map is copied on write (new combinations are rare and the
	// cache is bounded), so a hit is a plain map read: no lock, no shared
	// write, and no boxing of the key. Past the bound, sets are built each
	// time.
	optsMu sync.Mutex // serialises writers
	opts   atomic.Pointer[map[[4]string]*measureOpts]

	pmu   sync.RWMutex
	popts map[problemKey][]metric.AddOption
}

type problemKey struct {
	method, route string
	status        int
	code          Code
}

const maxCachedAttrSets = 4096

// attrs returns the measurement option for an operation's metrics.
// measureOpts holds the option slices passed to Add and Record for one
// attribute set, built once so that recording allocates nothing.
type measureOpts struct {
	add    []metric.AddOption
	record []metric.RecordOption
}

func newMeasureOpts(kvs []attribute.KeyValue) *measureOpts {
	o := metric.WithAttributeSet(attribute.NewSet(kvs...))
	return &measureOpts{add: []metric.AddOption{o}, record: []metric.RecordOption{o}}
}

func (t *instruments) attrs(op, outcome, gw, origin string) *measureOpts {
	return t.cached([4]string{op, outcome, gw, origin}, func() []attribute.KeyValue {
		kvs := []attribute.KeyValue{attrOperation.String(op), attrOutcome.String(outcome)}
		if gw != "" || origin != "" {
			kvs = append(kvs, attrGateway.String(gw), attrOrigin.String(origin))
		}
		return kvs
	})
}

func (t *instruments) cached(k [4]string, build func() []attribute.KeyValue) *measureOpts {
	if m := t.opts.Load(); m != nil {
		if o, ok := (*m)[k]; ok {
			return o
		}
	}
	o := newMeasureOpts(build())
	t.optsMu.Lock()
	defer t.optsMu.Unlock()
	var cur map[[4]string]*measureOpts
	if m := t.opts.Load(); m != nil {
		cur = *m
	}
	if _, ok := cur[k]; !ok && len(cur) < maxCachedAttrSets {
		next := make(map[[4]string]*measureOpts, len(cur)+1)
		maps.Copy(next, cur)
		next[k] = o
		t.opts.Store(&next)
	}
	return o
}

func newTelemetry(tp trace.TracerProvider, mp metric.MeterProvider) (*instruments, error) {
	m := mp.Meter(instrumentationName)
	t := &instruments{tracer: tp.Tracer(instrumentationName), popts: map[problemKey][]metric.AddOption{}}
	var err error
	if t.operations, err = m.Int64Counter(MetricOperations,
		metric.WithDescription("Payment operations by operation and outcome (authorized, captured, declined, failed, ...)."),
		metric.WithUnit("{operation}")); err != nil {
		return nil, err
	}
	if t.duration, err = m.Float64Histogram(MetricOperationDuration,
		metric.WithDescription("Duration of payment operations in the processor."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1, 2.5, 5, 10)); err != nil {
		return nil, err
	}
	if t.idem, err = m.Int64Counter(MetricIdempotency,
		metric.WithDescription("Idempotent requests by outcome (acquired, reacquired, replay, in_progress, mismatch)."),
		metric.WithUnit("{request}")); err != nil {
		return nil, err
	}
	if t.idemRejected, err = m.Int64Counter(MetricIdempotencyRejected,
		metric.WithDescription("New idempotency keys refused by the store, by reason (full)."),
		metric.WithUnit("{request}")); err != nil {
		return nil, err
	}
	t.fullOpts = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attrRejectReason.String("full")))}
	if t.problems, err = m.Int64Counter(MetricHTTPProblems,
		metric.WithDescription("HTTP API error responses (problem documents) by method, route, status and error code."),
		metric.WithUnit("{response}")); err != nil {
		return nil, err
	}
	if t.reviews, err = m.Int64Counter(MetricReviews,
		metric.WithDescription("Payments moved to requires_review, by reason: each needs an operator."),
		metric.WithUnit("{payment}")); err != nil {
		return nil, err
	}
	// Export the series at 0 from the start, so that the first review is an
	// increase the alert sees.
	t.reviews.Add(context.Background(), 0, metric.WithAttributes(attrReason.String(ReviewOutcomeUnknown)))
	if t.redrives, err = newRedriveCounter(m); err != nil {
		return nil, err
	}
	for _, o := range []string{RedriveReprocessed, RedriveSkipped} { // exported at 0 from the start
		t.redrives.Add(context.Background(), 0, metric.WithAttributes(attrOutcome.String(o)))
	}
	return t, nil
}

// storeFullLogEvery spaces the log lines of refused keys: a full store
// refuses every new key, and the metric counts each.
const storeFullLogEvery = 10 * time.Second

// storeFull counts a key refused by a full idempotency store and reports
// whether to log it: the first refusal, then at most one every
// storeFullLogEvery.
func (t *instruments) storeFull(ctx context.Context, now time.Time) bool {
	t.idemRejected.Add(ctx, 1, t.fullOpts...)
	last := t.fullLogged.Load()
	return (last == 0 || now.UnixNano()-last >= int64(storeFullLogEvery)) && t.fullLogged.CompareAndSwap(last, now.UnixNano())
}

// problem counts an error response of the HTTP API.
func (t *instruments) problem(ctx context.Context, method, route string, status int, code Code) {
	method = httpMethod(method) // client-chosen methods must not explode cardinality
	k := problemKey{method, route, status, code}
	t.pmu.RLock()
	o, ok := t.popts[k]
	t.pmu.RUnlock()
	if !ok {
		o = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(
			semconv.HTTPRequestMethodKey.String(method), semconv.HTTPRoute(route),
			semconv.HTTPResponseStatusCode(status), attrErrCode.String(string(code))))}
		t.pmu.Lock()
		if len(t.popts) < maxCachedAttrSets {
			t.popts[k] = o
		}
		t.pmu.Unlock()
	}
	t.problems.Add(ctx, 1, o...)
}

// spanNames are the processor's span names by operation: concatenating
// them per call would allocate.
var spanNames = map[string]string{
	"authorize": "payments.authorize", "capture": "payments.capture", "void": "payments.void",
	"refund": "payments.refund", "process": "payments.process",
}

// internalSpan is shared by every span start: variadic options built per
// call would allocate.
var internalSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal)}

// start opens a span for a processor operation.
func (t *instruments) start(ctx context.Context, op string) (context.Context, trace.Span) {
	name, ok := spanNames[op]
	if !ok {
		name = "payments." + op
	}
	ctx, span := t.gate.Start(ctx, t.tracer, name, internalSpan...)
	if span.IsRecording() {
		span.SetAttributes(attrOperation.String(op))
	}
	return ctx, span
}

// end records the operation's outcome on the span and metrics.
func (t *instruments) end(ctx context.Context, span trace.Span, op string, start time.Time, o *outcome) {
	outcome := o.outcomeLabel()
	if o.replayed {
		// A replay repeats a stored answer; counting its outcome again
		// would inflate the authorized/captured figures.
		outcome = "replayed"
	}
	var gw, origin string
	if o.payment != nil {
		gw, origin = o.payment.Gateway, o.payment.Origin
	}
	opts := t.attrs(op, outcome, gw, t.originLabel(origin))
	t.operations.Add(ctx, 1, opts.add...)
	t.duration.Record(ctx, time.Since(start).Seconds(), opts.record...)
	if span.IsRecording() {
		span.SetAttributes(attrOutcome.String(outcome))
		if o.payment != nil {
			span.SetAttributes(attrPaymentID.String(o.payment.ID), attrGateway.String(gw), attrOrigin.String(origin))
		}
		if o.err != nil && o.status >= 500 {
			span.SetStatus(codes.Error, string(o.err.Code))
		}
		if o.replayed {
			span.SetAttributes(attribute.Bool("payrail.idempotency.replayed", true))
		}
	}
	span.End()
}

// OtherOrigin is the metric label of payments whose origin the deployment
// does not know (see WithMetricOrigins).
const OtherOrigin = "other"

// originLabeler returns the function that maps origins to metric labels:
// the listed origins (or, without a list, those the router's policy names,
// if the router can tell — routing.Router can) keep their lower-cased name;
// every other non-empty origin is OtherOrigin. Merchant-supplied text thus
// never becomes a label value, and the number of series stays bounded.
func originLabeler(listed []string, r gateway.Router) func(string) string {
	var known func(string) bool
	switch k, ok := r.(interface{ KnownOrigin(string) bool }); {
	case listed != nil:
		set := make(map[string]bool, len(listed))
		for _, o := range listed {
			set[strings.ToLower(o)] = true
		}
		known = func(o string) bool { return set[o] || set[strings.ToLower(o)] }
	case ok:
		known = k.KnownOrigin
	default:
		known = func(string) bool { return false }
	}
	return func(o string) string {
		switch {
		case o == "":
			return ""
		case known(o):
			return strings.ToLower(o)
		}
		return OtherOrigin
	}
}

// defaultBusTelemetry names the default in-memory bus "payments" in spans
// and metrics and gives it the processor's OpenTelemetry providers, when
// set (otherwise the bus uses the globals, as the processor does).
func defaultBusTelemetry(t telemetry.Providers) []bus.SubscriptionOption {
	return []bus.SubscriptionOption{bus.WithName("payments"), bus.WithTelemetry(t)}
}

// defaultTopicTelemetry is defaultBusTelemetry for the default topic.
func defaultTopicTelemetry(t telemetry.Providers) []bus.TopicOption {
	return []bus.TopicOption{bus.WithName("payments"), bus.WithTelemetry(t)}
}
