package gateway

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"github.com/payrail/payrail/internal/otelgate"
	"github.com/payrail/payrail/telemetry"
)

const instrumentationName = "github.com/payrail/payrail/gateway"

// MetricRequestDuration is the histogram every Gateway records each
// provider call in, in seconds, with the attributes payrail.gateway (the
// gateway's name), payrail.operation (authorize, capture, void, refund,
// lookup) and, for failed calls, error.type: the error's Kind (declined,
// transient, invalid_request, not_found, authentication, unknown), "closed"
// or "canceled". Prometheus exposes it as
// payrail_gateway_request_duration_seconds; its _count by error_type is the
// operations guide's "errors per gateway".
const MetricRequestDuration = "payrail.gateway.request.duration"

// Attribute keys on gateway spans and metrics.
const (
	attrGateway     = attribute.Key("payrail.gateway")
	attrOperation   = attribute.Key("payrail.operation")
	attrErrorType   = attribute.Key("error.type")
	attrPaymentID   = attribute.Key("payrail.payment.id")
	attrErrorCode   = attribute.Key("payrail.gateway.error_code")
	attrDeclineCode = attribute.Key("payrail.gateway.decline_code")
	attrSoftDecline = attribute.Key("payrail.gateway.soft_decline")
	attrNotProc     = attribute.Key("payrail.gateway.not_processed")
)

// Option configures a Gateway opened with Open or New.
type Option func(*options)

type options struct {
	tp trace.TracerProvider
	mp metric.MeterProvider
}

// WithTelemetry sets the gateway's OpenTelemetry providers (nil fields:
// the globals): give it the value given to payments.WithTelemetry.
func WithTelemetry(t telemetry.Providers) Option {
	return func(o *options) { o.tp, o.mp = t.TracerProvider, t.MeterProvider }
}

// WithTracerProvider sets the tracer provider of the gateway's client spans
// (default: the OpenTelemetry global).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tp = tp }
}

// WithMeterProvider sets the meter provider of the gateway's metrics
// (default: the OpenTelemetry global).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) { o.mp = mp }
}

// Operations, in the order of the precomputed attribute sets.
const (
	opAuthorize = iota
	opCapture
	opVoid
	opRefund
	opLookup
	numOps
)

var (
	opNames   = [numOps]string{"authorize", "capture", "void", "refund", "lookup"}
	spanNames = [numOps]string{"gateway.authorize", "gateway.capture", "gateway.void", "gateway.refund", "gateway.lookup"}
	// clientSpan is shared by every call: variadic options built per call
	// would allocate.
	clientSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
)

// errorTypes are the error.type values with precomputed attribute sets;
// index 0 is a successful call (no error.type).
var errorTypes = []string{"", "unknown", "declined", "transient", "invalid_request", "not_found", "authentication", "closed", "canceled"}

// telemetry is a Gateway's tracer and instruments. Every call is one
// client span, "gateway.<operation>", and one duration measurement; with no
// OpenTelemetry SDK installed both are no-ops and a call allocates nothing
// for them.
type instruments struct {
	name     string
	tracer   trace.Tracer
	gate     otelgate.Gate // no spans, and no allocations, without an SDK
	duration metric.Float64Histogram
	// opts[op][i] records a call of op that failed with errorTypes[i].
	opts  [numOps][][]metric.RecordOption
	extra sync.Map // [2]string{op, error type} -> []metric.RecordOption, for unexpected types
}

func newTelemetry(name string, o options) *instruments {
	if o.tp == nil {
		o.tp = otel.GetTracerProvider()
	}
	if o.mp == nil {
		o.mp = otel.GetMeterProvider()
	}
	t := &instruments{name: name, tracer: o.tp.Tracer(instrumentationName)}
	h, err := o.mp.Meter(instrumentationName).Float64Histogram(MetricRequestDuration,
		metric.WithDescription("Duration of payment gateway calls by gateway, operation and error class."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1, 2.5, 5, 10, 30))
	if err != nil {
		otel.Handle(err)
		h = metricnoop.Float64Histogram{}
	}
	t.duration = h
	for op := range numOps {
		t.opts[op] = make([][]metric.RecordOption, len(errorTypes))
		for i, et := range errorTypes {
			t.opts[op][i] = t.buildOpts(opNames[op], et)
		}
	}
	return t
}

func (t *instruments) buildOpts(op, errType string) []metric.RecordOption {
	kvs := []attribute.KeyValue{attrGateway.String(t.name), attrOperation.String(op)}
	if errType != "" {
		kvs = append(kvs, attrErrorType.String(errType))
	}
	return []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(kvs...))}
}

func (t *instruments) recordOpts(op int, errType string) []metric.RecordOption {
	for i, et := range errorTypes {
		if et == errType {
			return t.opts[op][i]
		}
	}
	k := [2]string{opNames[op], errType}
	if o, ok := t.extra.Load(k); ok {
		return o.([]metric.RecordOption)
	}
	o, _ := t.extra.LoadOrStore(k, t.buildOpts(opNames[op], errType))
	return o.([]metric.RecordOption)
}

// measuringKey marks a context inside a measured gateway call, so that a
// Gateway wrapping another (a circuit breaker, a router's guard) is
// measured once, at the outermost level.
type measuringKey struct{}

// call is one gateway call in progress.
type call struct {
	t      *instruments
	span   trace.Span
	start  time.Time
	op     int
	active bool
}

// start opens the span of a call of op; paymentID is recorded on it.
func (t *instruments) start(ctx context.Context, op int, paymentID string) (context.Context, call) {
	if ctx.Value(measuringKey{}) != nil {
		return ctx, call{} // an outer Gateway measures this call
	}
	ctx, span := t.gate.Start(ctx, t.tracer, spanNames[op], clientSpan...)
	recording := span.IsRecording()
	if !recording && !t.duration.Enabled(ctx) {
		return ctx, call{} // no SDK: nothing to measure, nothing to allocate
	}
	if recording {
		span.SetAttributes(attrGateway.String(t.name), attrOperation.String(opNames[op]))
		if paymentID != "" {
			span.SetAttributes(attrPaymentID.String(paymentID))
		}
	}
	return context.WithValue(ctx, measuringKey{}, true), call{t: t, span: span, start: time.Now(), op: op, active: true}
}

// end records the call's duration and outcome and returns err.
func (c call) end(ctx context.Context, err error) error {
	if !c.active {
		return err
	}
	errType := ErrorType(err)
	c.t.duration.Record(ctx, time.Since(c.start).Seconds(), c.t.recordOpts(c.op, errType)...)
	if c.span.IsRecording() {
		if err != nil {
			c.span.SetAttributes(attrErrorType.String(errType))
			var e *Error
			if errors.As(err, &e) {
				if e.Code != "" {
					c.span.SetAttributes(attrErrorCode.String(e.Code))
				}
				if e.Kind == KindDeclined {
					c.span.SetAttributes(attrDeclineCode.String(e.DeclineCode), attrSoftDecline.Bool(e.SoftDecline))
				}
				c.span.SetAttributes(attrNotProc.Bool(e.NotProcessed))
			}
			// A decline is the provider's answer, not a failed call.
			if e == nil || e.Kind != KindDeclined {
				c.span.SetStatus(codes.Error, errType)
			}
		}
	}
	c.span.End()
	return err
}

// ErrorType returns the error.type value a gateway error is measured under:
// the Kind of an *Error ("declined", "transient", ...), "closed" for
// ErrClosed, "canceled" for a cancelled context, "_OTHER" for anything else,
// and "" for nil.
func ErrorType(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Kind.String()
	case errors.Is(err, ErrClosed):
		return "closed"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "_OTHER"
}

// paymentID returns the payment a request is for ("" for nil requests).
func paymentID(r any) string {
	switch r := r.(type) {
	case *AuthorizeRequest:
		if r != nil {
			return r.PaymentID
		}
	case *CaptureRequest:
		if r != nil {
			return r.PaymentID
		}
	case *VoidRequest:
		if r != nil {
			return r.PaymentID
		}
	case *RefundRequest:
		if r != nil {
			return r.PaymentID
		}
	}
	return ""
}
