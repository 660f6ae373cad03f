package payments

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

const instrumentationName = "github.com/payrail/payrail/payments"

// Attribute keys used on spans and metrics.
const (
	attrOperation = attribute.Key("payrail.operation")
	attrOutcome   = attribute.Key("payrail.outcome")
	attrGateway   = attribute.Key("payrail.gateway")
	attrOrigin    = attribute.Key("payrail.origin")
	attrMode      = attribute.Key("payrail.mode")
	attrPaymentID = attribute.Key("payrail.payment.id")
	attrMerchant  = attribute.Key("payrail.merchant")
	attrErrorType = attribute.Key("error.type")
	attrIdemOut   = attribute.Key("payrail.idempotency.outcome")
)

// telemetry holds the processor's tracer and instruments.
type telemetry struct {
	tracer     trace.Tracer
	operations metric.Int64Counter
	duration   metric.Float64Histogram
	gwDuration metric.Float64Histogram
	idem       metric.Int64Counter

	// opts caches measurement options per attribute combination: building
	// an attribute.Set on every operation is a measurable share of the hot
	// path. The cache is bounded; past the bound sets are built each time.
	mu   sync.RWMutex
	opts map[[4]string]metric.MeasurementOption
}

const maxCachedAttrSets = 4096

// attrs returns the measurement option for an operation's metrics.
func (t *telemetry) attrs(op, outcome, gw, origin string) metric.MeasurementOption {
	return t.cached([4]string{op, outcome, gw, origin}, func() []attribute.KeyValue {
		kvs := []attribute.KeyValue{attrOperation.String(op), attrOutcome.String(outcome)}
		if gw != "" || origin != "" {
			kvs = append(kvs, attrGateway.String(gw), attrOrigin.String(origin))
		}
		return kvs
	})
}

// gwAttrs returns the measurement option for a gateway call's metrics.
func (t *telemetry) gwAttrs(gw, op, errType string) metric.MeasurementOption {
	return t.cached([4]string{"\x00gw", gw, op, errType}, func() []attribute.KeyValue {
		return []attribute.KeyValue{attrGateway.String(gw), attrOperation.String(op), attrErrorType.String(errType)}
	})
}

func (t *telemetry) cached(k [4]string, build func() []attribute.KeyValue) metric.MeasurementOption {
	t.mu.RLock()
	o, ok := t.opts[k]
	t.mu.RUnlock()
	if ok {
		return o
	}
	o = metric.WithAttributeSet(attribute.NewSet(build()...))
	t.mu.Lock()
	if len(t.opts) < maxCachedAttrSets {
		t.opts[k] = o
	}
	t.mu.Unlock()
	return o
}

func newTelemetry(tp trace.TracerProvider, mp metric.MeterProvider) (*telemetry, error) {
	m := mp.Meter(instrumentationName)
	t := &telemetry{tracer: tp.Tracer(instrumentationName), opts: map[[4]string]metric.MeasurementOption{}}
	var err error
	if t.operations, err = m.Int64Counter("payrail.payment.operations",
		metric.WithDescription("Payment operations by operation and outcome (authorized, captured, declined, failed, ...)."),
		metric.WithUnit("{operation}")); err != nil {
		return nil, err
	}
	if t.duration, err = m.Float64Histogram("payrail.payment.operation.duration",
		metric.WithDescription("Duration of payment operations in the processor."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1, 2.5, 5, 10)); err != nil {
		return nil, err
	}
	if t.gwDuration, err = m.Float64Histogram("payrail.gateway.request.duration",
		metric.WithDescription("Duration of gateway calls by gateway, operation and error class."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1, 2.5, 5, 10, 30)); err != nil {
		return nil, err
	}
	if t.idem, err = m.Int64Counter("payrail.idempotency.requests",
		metric.WithDescription("Idempotent requests by outcome (acquired, reacquired, replay, in_progress, mismatch)."),
		metric.WithUnit("{request}")); err != nil {
		return nil, err
	}
	return t, nil
}

// start opens a span for a processor operation.
func (t *telemetry) start(ctx context.Context, op string) (context.Context, trace.Span) {
	ctx, span := t.tracer.Start(ctx, "payments."+op, trace.WithSpanKind(trace.SpanKindInternal))
	if span.IsRecording() {
		span.SetAttributes(attrOperation.String(op))
	}
	return ctx, span
}

// end records the operation's outcome on the span and metrics.
func (t *telemetry) end(ctx context.Context, span trace.Span, op string, start time.Time, o *outcome) {
	outcome := o.outcomeLabel()
	var gw, origin string
	if o.payment != nil {
		gw, origin = o.payment.Gateway, o.payment.Origin
	}
	opt := t.attrs(op, outcome, gw, origin)
	t.operations.Add(ctx, 1, opt)
	t.duration.Record(ctx, time.Since(start).Seconds(), opt)
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
