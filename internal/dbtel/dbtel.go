// Package dbtel instruments payrail's stores (the idempotency store, the
// payment stores) after OpenTelemetry's database client conventions: a
// client span "<db.operation.name> <db.collection.name>" per operation and
// the histogram db.client.operation.duration, both with db.system.name,
// db.operation.name, db.collection.name (when known) and, on failure,
// error.type. Spans are only started while an OpenTelemetry SDK is
// installed (they are leaves: nothing downstream needs their context), so
// an uninstrumented application pays no allocation for them; recording a
// successful operation's duration allocates nothing either.
package dbtel

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/dbconv"
	"go.opentelemetry.io/otel/trace"

	"github.com/payrail/payrail/internal/otelgate"
	"github.com/payrail/payrail/telemetry"
)

// MetricOperationDuration is the instrument every store records into.
const MetricOperationDuration = "db.client.operation.duration"

// Config names a store in its telemetry.
type Config struct {
	// Providers are the application's OpenTelemetry providers.
	Providers telemetry.Providers
	// Scope is the instrumentation scope (the instrumented package's path).
	Scope string
	// System is db.system.name: postgresql, redis, aws.dynamodb, or the
	// driver's name for systems the conventions do not list.
	System string
	// Collection is db.collection.name (the table), empty if unknown.
	Collection string
	// Ops are the store's db.operation.name values, indexed by the op
	// numbers passed to Start.
	Ops []string
	// Errors name the store's sentinel errors for error.type, tested in
	// order with errors.Is; other errors are "timeout" (a deadline),
	// "canceled" or "_OTHER".
	Errors []ErrorClass
}

// ErrorClass names the errors matching Err as Type in error.type.
type ErrorClass struct {
	Err  error
	Type string
}

// errorType classifies err for error.type.
func (t *Telemetry) errorType(err error) string {
	for _, c := range t.errors {
		if errors.Is(err, c.Err) {
			return c.Type
		}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "_OTHER"
}

// Telemetry instruments one store.
type Telemetry struct {
	tracer    trace.Tracer
	gate      otelgate.Gate
	duration  metric.Float64Histogram
	errors    []ErrorClass
	spanNames []string
	attrs     [][]attribute.KeyValue
	ok        [][]metric.RecordOption
}

// New builds a store's telemetry.
func New(c Config) *Telemetry {
	t := &Telemetry{tracer: c.Providers.Tracer().Tracer(c.Scope), errors: c.Errors,
		spanNames: make([]string, len(c.Ops)), attrs: make([][]attribute.KeyValue, len(c.Ops)), ok: make([][]metric.RecordOption, len(c.Ops))}
	h, err := dbconv.NewClientOperationDuration(c.Providers.Meter().Meter(c.Scope),
		metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10))
	if err != nil {
		otel.Handle(err)
	}
	t.duration = h.Inst()
	for op, name := range c.Ops {
		kvs := []attribute.KeyValue{semconv.DBSystemNameKey.String(c.System), semconv.DBOperationName(name)}
		t.spanNames[op] = name
		if c.Collection != "" {
			kvs = append(kvs, semconv.DBCollectionName(c.Collection))
			t.spanNames[op] = name + " " + c.Collection
		}
		t.attrs[op] = kvs
		t.ok[op] = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(kvs...))}
	}
	return t
}

var clientSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}

// Op is an operation in progress.
type Op struct {
	// Span is the operation's span, nil when none was started.
	Span  trace.Span
	start time.Time
	op    int
}

// Recording reports whether o's span records attributes.
func (o Op) Recording() bool { return o.Span != nil && o.Span.IsRecording() }

// Start opens operation op's span and reads the clock if anything will use
// it.
func (t *Telemetry) Start(ctx context.Context, op int) (context.Context, Op) {
	o := Op{op: op}
	if !t.gate.Shut() {
		ctx, o.Span = t.gate.Start(ctx, t.tracer, t.spanNames[op], clientSpan...)
		if o.Span.IsRecording() {
			o.Span.SetAttributes(t.attrs[op]...)
		}
	}
	if o.Span != nil || t.duration.Enabled(ctx) {
		o.start = time.Now()
	}
	return ctx, o
}

// End records o's duration and outcome, ends its span and returns err.
func (t *Telemetry) End(ctx context.Context, o Op, err error) error {
	if o.start.IsZero() {
		return err
	}
	d := time.Since(o.start).Seconds()
	if err == nil {
		t.duration.Record(ctx, d, t.ok[o.op]...)
	} else {
		et := t.errorType(err)
		kvs := append(append(make([]attribute.KeyValue, 0, len(t.attrs[o.op])+1), t.attrs[o.op]...), semconv.ErrorTypeKey.String(et))
		t.duration.Record(ctx, d, metric.WithAttributeSet(attribute.NewSet(kvs...)))
		if o.Recording() {
			o.Span.SetAttributes(semconv.ErrorTypeKey.String(et))
			o.Span.SetStatus(codes.Error, et) // not err's text: it may quote a key or a value
		}
	}
	if o.Span != nil {
		o.Span.End()
	}
	return err
}
