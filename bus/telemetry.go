package bus

import (
	"context"
	"errors"
	"maps"
	"net/url"
	"reflect"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/payrail/payrail/bus/driver"
	"github.com/payrail/payrail/internal/otelgate"
	"github.com/payrail/payrail/telemetry"
)

// Metric names, and telemetry in general.
//
// Topics and subscriptions are instrumented with OpenTelemetry in this
// portable layer, so every driver gets the same spans and metrics:
//
//   - Publish and PublishBatch: a producer span "publish <topic>", and the
//     W3C trace context of that span injected into each message's attributes
//     (traceparent, tracestate, baggage). A message that already carries a
//     traceparent keeps it, and when the context has no span the publish
//     span continues the trace the message carries.
//   - Receive: per non-empty batch fetched, a client span
//     "receive <subscription>" linked to every message's creation context;
//     per message, a consumer span "process <subscription>" whose parent is
//     the context extracted from the message's attributes, and which links
//     to it as the messaging conventions require. The handler's
//     context carries that span, so one trace runs from the publisher's
//     request through the bus to the handler's own spans.
//   - Metrics (semantic conventions for messaging where they exist):
//     MetricSentMessages, MetricConsumedMessages,
//     MetricOperationDuration (publish, ack, nack, dead_letter: their counts
//     are the publish, ack, retry and dead-letter rates),
//     MetricProcessDuration, MetricDeliveryLag, MetricRedriven, and, on
//     subscriptions declaring the Stats capability, the observable gauges
//     MetricBacklog, MetricInFlight, MetricDeadLetters and MetricOldestAge
//     read with Stats at each collection (a field the driver reports as
//     unknowable, -1, is not observed).
//
// Every measurement carries messaging.system (the driver: inmemory, kafka,
// aws_sqs, gcp_pubsub, servicebus...) and messaging.destination.name (topics)
// or messaging.destination.subscription.name (subscriptions), taken from
// the URL or set with WithName. With no OpenTelemetry SDK installed the
// instrumentation records nothing and allocates next to nothing.
//
// Prometheus exposes the metrics with dots as underscores and a _total
// (counters) or _seconds (durations) suffix.
const (
	// MetricSentMessages counts messages handed to the broker by Publish,
	// with messaging.operation.name publish (type send), and error.type on
	// failure.
	MetricSentMessages = "messaging.client.sent.messages"
	// MetricConsumedMessages counts messages delivered to the application
	// by Receive, with messaging.operation.name receive (type receive).
	MetricConsumedMessages = "messaging.client.consumed.messages"
	// MetricOperationDuration is the duration of publish and settle calls
	// by messaging.operation.name: publish, ack, nack (a retry is
	// scheduled), dead_letter (the message is abandoned to the DLQ), with
	// error.type when the broker call failed.
	MetricOperationDuration = "messaging.client.operation.duration"
	// MetricProcessDuration is the duration of handlers, with error.type
	// when the handler returned an error ("permanent" for Permanent ones).
	MetricProcessDuration = "messaging.process.duration"
	// MetricDeliveryLag is the time from the broker accepting a message to
	// its delivery to a handler (drivers reporting PublishTime only): the
	// queue lag in seconds.
	MetricDeliveryLag = "payrail.bus.delivery.lag"
	// MetricRedriven counts dead letters moved back by Redrive.
	MetricRedriven = "payrail.bus.redriven"
	// MetricBacklog is the number of messages waiting to be delivered
	// (Stats.Backlog): the queue lag in messages.
	MetricBacklog = "payrail.bus.backlog"
	// MetricInFlight is the number of delivered, unsettled messages.
	MetricInFlight = "payrail.bus.in_flight"
	// MetricDeadLetters is the size of the dead-letter queue.
	MetricDeadLetters = "payrail.bus.dead_letters"
	// MetricOldestAge is the age of the oldest message waiting or in
	// flight (Stats.OldestAge), in seconds: the queue lag in time.
	MetricOldestAge = "payrail.bus.oldest_age"
)

const instrumentationName = "github.com/payrail/payrail/bus"

// Attribute keys beyond the semantic conventions.
const (
	attrDeliveryAttempt = attribute.Key("payrail.bus.delivery_attempt")
	attrSettlement      = attribute.Key("payrail.bus.settlement")
)

// TopicOption configures a Topic. The shared Options (WithTracerProvider,
// WithMeterProvider, WithPropagator, WithName) are TopicOptions; the
// subscription-only options (WithConcurrency, WithMaxAttempts...) are not,
// so passing one to OpenTopic or NewTopic does not compile.
type TopicOption interface {
	applyTopic(*telemetryConfig)
}

// Option configures both topics and subscriptions: it is a TopicOption and
// a SubscriptionOption. The telemetry options are Options.
type Option func(*telemetryConfig)

func (o Option) applyTopic(c *telemetryConfig) { o(c) }

func (o Option) applySubscription(so *subscriptionOptions) { o(&so.tel) }

// telemetryConfig holds the telemetry options shared by topics and
// subscriptions.
type telemetryConfig struct {
	tp     trace.TracerProvider
	mp     metric.MeterProvider
	prop   propagation.TextMapPropagator
	system string // messaging.system
	name   string // destination (topic) or subscription name
}

// WithTelemetry sets the topic's or subscription's OpenTelemetry providers
// from the value given to payments.WithTelemetry and gateway.WithTelemetry:
// its tracer and meter providers (nil: the globals) and, if set, its
// propagator (nil: W3C trace context and baggage, see WithPropagator).
func WithTelemetry(t telemetry.Providers) Option {
	return func(c *telemetryConfig) {
		c.tp, c.mp = t.TracerProvider, t.MeterProvider
		if t.Propagator != nil {
			c.prop = t.Propagator
		}
	}
}

// WithTracerProvider sets the tracer provider of the topic's or
// subscription's spans (default: the OpenTelemetry global).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *telemetryConfig) { c.tp = tp }
}

// WithMeterProvider sets the meter provider of the topic's or
// subscription's metrics (default: the OpenTelemetry global).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *telemetryConfig) { c.mp = mp }
}

// WithPropagator sets how trace context is written to and read from message
// attributes (default: W3C trace context and baggage, whatever the global
// propagator is, so that every payrail service agrees on the wire format).
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *telemetryConfig) { c.prop = p }
}

// WithName names the topic (messaging.destination.name) or subscription
// (messaging.destination.subscription.name) in spans and metrics. The
// default comes from the URL: a subscription or group query parameter, the
// last path segment, the host, or the last segment of a queue_url or
// topic_arn parameter. NewTopic and NewSubscription have no URL: name them
// with WithName.
func WithName(name string) Option {
	return func(c *telemetryConfig) { c.name = name }
}

// withURL sets the telemetry system and name a URL implies; options given
// after it override them.
func withURL(u *url.URL, subscription bool) Option {
	return func(c *telemetryConfig) {
		c.system = systemName(u.Scheme)
		c.name = nameFromURL(u, subscription)
	}
}

// systemName maps a driver name (URL scheme or package name) to its
// messaging.system value.
func systemName(driverName string) string {
	switch driverName {
	case "sns-sqs", "snssqs":
		return "aws_sqs"
	case "pubsub":
		return "gcp_pubsub"
	case "":
		return "unknown"
	}
	return driverName
}

// nameFromURL extracts a low-cardinality, secret-free name from a bus URL.
func nameFromURL(u *url.URL, subscription bool) string {
	q := u.Query()
	if subscription {
		for _, k := range []string{"subscription", "group"} {
			if v := q.Get(k); v != "" {
				return v
			}
		}
	}
	if p := strings.Trim(u.Path, "/"); p != "" {
		return p[strings.LastIndex(p, "/")+1:]
	}
	if u.Host != "" && !strings.ContainsAny(u.Host, ":,") { // not a broker list
		return u.Host
	}
	for _, k := range []string{"queue_url", "topic_arn", "queue", "topic"} {
		if v := q.Get(k); v != "" {
			v = strings.TrimRight(v, "/")
			return v[strings.LastIndexAny(v, "/:")+1:]
		}
	}
	return ""
}

// driverSystem guesses messaging.system from a driver value's package
// (github.com/payrail/payrail/bus/kafka -> kafka), for NewTopic and
// NewSubscription, which have no URL.
func driverSystem(d any) string {
	t := reflect.TypeOf(d)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return "unknown"
	}
	p := t.PkgPath()
	return systemName(p[strings.LastIndex(p, "/")+1:])
}

// w3c is the default propagator of message attributes.
var w3c = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

func (c *telemetryConfig) defaults(d any) {
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	if c.prop == nil {
		c.prop = w3c
	}
	if c.system == "" {
		c.system = driverSystem(d)
	}
}

// instruments shared by topics and subscriptions: created with identical
// definitions so that every topic and subscription of a process reports
// into the same instruments.
type instruments struct {
	sent       metric.Int64Counter
	consumed   metric.Int64Counter
	opDuration metric.Float64Histogram
	process    metric.Float64Histogram
	lag        metric.Float64Histogram
	redriven   metric.Int64Counter
}

var durationBuckets = metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

func newInstruments(m metric.Meter) instruments {
	var in instruments
	var errs []error
	var err error
	if in.sent, err = m.Int64Counter(MetricSentMessages, metric.WithUnit("{message}"),
		metric.WithDescription("Number of messages the producer attempted to send to the broker.")); err != nil {
		errs = append(errs, err)
		in.sent = metricnoop.Int64Counter{}
	}
	if in.consumed, err = m.Int64Counter(MetricConsumedMessages, metric.WithUnit("{message}"),
		metric.WithDescription("Number of messages that were delivered to the application.")); err != nil {
		errs = append(errs, err)
		in.consumed = metricnoop.Int64Counter{}
	}
	if in.opDuration, err = m.Float64Histogram(MetricOperationDuration, metric.WithUnit("s"), durationBuckets,
		metric.WithDescription("Duration of publish and settle (ack, nack, dead_letter) operations.")); err != nil {
		errs = append(errs, err)
		in.opDuration = metricnoop.Float64Histogram{}
	}
	if in.process, err = m.Float64Histogram(MetricProcessDuration, metric.WithUnit("s"), durationBuckets,
		metric.WithDescription("Duration of message handlers.")); err != nil {
		errs = append(errs, err)
		in.process = metricnoop.Float64Histogram{}
	}
	if in.lag, err = m.Float64Histogram(MetricDeliveryLag, metric.WithUnit("s"), durationBuckets,
		metric.WithDescription("Time from the broker accepting a message to its delivery to a handler.")); err != nil {
		errs = append(errs, err)
		in.lag = metricnoop.Float64Histogram{}
	}
	if in.redriven, err = m.Int64Counter(MetricRedriven, metric.WithUnit("{message}"),
		metric.WithDescription("Dead letters moved back for redelivery.")); err != nil {
		errs = append(errs, err)
		in.redriven = metricnoop.Int64Counter{}
	}
	if len(errs) > 0 {
		otel.Handle(errors.Join(errs...))
	}
	return in
}

// errorType classifies a bus error for the error.type attribute.
func errorType(err error) string {
	switch {
	case err == nil:
		return ""
	case IsPermanent(err):
		return "permanent"
	case errors.Is(err, ErrClosed):
		return "closed"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrPermission):
		return "permission"
	case errors.Is(err, ErrAlreadySettled):
		return "already_settled"
	case errors.Is(err, ErrUnsupported):
		return "unsupported"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "_OTHER"
}

func withError(base []attribute.KeyValue, err error) metric.MeasurementOption {
	return metric.WithAttributeSet(attribute.NewSet(append(append([]attribute.KeyValue(nil), base...), semconv.ErrorTypeKey.String(errorType(err)))...))
}

var (
	noSpan       = trace.SpanFromContext(context.Background()) // a no-op span
	producerSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindProducer)}
	consumerSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)}
)

// topicTelemetry instruments a Topic.
type topicTelemetry struct {
	cfg      telemetryConfig
	tracer   trace.Tracer
	gate     otelgate.Gate // no spans, and no allocations, without an SDK
	in       instruments
	spanName string
	base     []attribute.KeyValue // system, destination
	// Measurement options of a successful publish, built once.
	sentOK     []metric.AddOption
	durationOK []metric.RecordOption
}

func newTopicTelemetry(d driver.Topic, opts []TopicOption) *topicTelemetry {
	var c telemetryConfig
	for _, o := range opts {
		if o != nil {
			o.applyTopic(&c)
		}
	}
	c.defaults(d)
	t := &topicTelemetry{cfg: c, tracer: c.tp.Tracer(instrumentationName), in: newInstruments(c.mp.Meter(instrumentationName))}
	t.spanName = strings.TrimSpace("publish " + c.name)
	t.base = []attribute.KeyValue{semconv.MessagingSystemKey.String(c.system), semconv.MessagingDestinationName(c.name)}
	opAttrs := append(append([]attribute.KeyValue(nil), t.base...), semconv.MessagingOperationName("publish"), semconv.MessagingOperationTypeSend)
	t.sentOK = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(opAttrs...))}
	t.durationOK = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(opAttrs...))}
	return t
}

// publishing is a publish call in progress.
type publishing struct {
	span  trace.Span
	start time.Time
	n     int
}

// start opens the publish span for dms and injects its trace context into
// their attributes (copying each attribute map it changes).
func (t *topicTelemetry) start(ctx context.Context, dms []*driver.Message) (context.Context, publishing) {
	if t.gate.Shut() && !t.in.sent.Enabled(ctx) && !trace.SpanContextFromContext(ctx).IsValid() &&
		(len(dms) != 1 || dms[0].Attributes["traceparent"] == "") {
		return ctx, publishing{span: noSpan} // no SDK, no trace context to pass on
	}
	return t.startSlow(ctx, dms)
}

//go:noinline
func (t *topicTelemetry) startSlow(ctx context.Context, dms []*driver.Message) (context.Context, publishing) {
	if len(dms) == 1 && !trace.SpanContextFromContext(ctx).IsValid() && dms[0].Attributes["traceparent"] != "" {
		// Continue the trace the message already carries.
		ctx = t.cfg.prop.Extract(ctx, propagation.MapCarrier(dms[0].Attributes))
	}
	ctx, span := t.gate.Start(ctx, t.tracer, t.spanName, producerSpan...)
	if span.IsRecording() {
		span.SetAttributes(t.base...)
		span.SetAttributes(semconv.MessagingOperationName("publish"), semconv.MessagingOperationTypeSend)
		if len(dms) == 1 {
			span.SetAttributes(semconv.MessagingMessageID(dms[0].ID), semconv.MessagingMessageBodySize(len(dms[0].Body)))
		} else {
			span.SetAttributes(semconv.MessagingBatchMessageCount(len(dms)))
		}
	}
	if span.SpanContext().IsValid() {
		for _, dm := range dms {
			if dm.Attributes["traceparent"] != "" {
				continue // the caller propagates its own context
			}
			attrs := make(map[string]string, len(dm.Attributes)+3)
			maps.Copy(attrs, dm.Attributes)
			t.cfg.prop.Inject(ctx, propagation.MapCarrier(attrs))
			dm.Attributes = attrs
		}
	}
	p := publishing{span: span, n: len(dms)}
	if span.IsRecording() || t.in.sent.Enabled(ctx) {
		p.start = time.Now()
	}
	return ctx, p
}

// end records the publish and returns err.
func (t *topicTelemetry) end(ctx context.Context, p publishing, err error) error {
	if p.start.IsZero() && p.span == noSpan {
		return err
	}
	return t.endSlow(ctx, p, err)
}

//go:noinline
func (t *topicTelemetry) endSlow(ctx context.Context, p publishing, err error) error {
	if !p.start.IsZero() {
		d := time.Since(p.start).Seconds()
		if err == nil {
			t.in.sent.Add(ctx, int64(p.n), t.sentOK...)
			t.in.opDuration.Record(ctx, d, t.durationOK...)
		} else {
			failed := withError(append(append([]attribute.KeyValue(nil), t.base...),
				semconv.MessagingOperationName("publish"), semconv.MessagingOperationTypeSend), err)
			t.in.sent.Add(ctx, int64(p.n), failed)
			t.in.opDuration.Record(ctx, d, failed)
		}
	}
	if err != nil && p.span.IsRecording() {
		p.span.SetAttributes(semconv.ErrorTypeKey.String(errorType(err)))
		p.span.SetStatus(codes.Error, errorType(err))
	}
	p.span.End()
	return err
}

// Settlement operations.
const (
	settleAck = iota
	settleNack
	settleDeadLetter
	numSettle
)

var settleNames = [numSettle]string{"ack", "nack", "dead_letter"}

// subTelemetry instruments a Subscription.
type subTelemetry struct {
	cfg         telemetryConfig
	tracer      trace.Tracer
	gate        otelgate.Gate // no spans, and no allocations, without an SDK
	in          instruments
	receiveName string
	processName string
	fields      []string             // the propagator's attribute names
	base        []attribute.KeyValue // system, subscription
	consumedOK  []metric.AddOption
	processOK   []metric.RecordOption
	lagOpts     []metric.RecordOption
	redriveOpts []metric.AddOption
	settleOK    [numSettle][]metric.RecordOption
	reg         metric.Registration
}

func newSubTelemetry(s *Subscription) *subTelemetry {
	c := s.opts.tel
	c.defaults(s.d)
	meter := c.mp.Meter(instrumentationName)
	t := &subTelemetry{cfg: c, tracer: c.tp.Tracer(instrumentationName), in: newInstruments(meter)}
	t.fields = c.prop.Fields()
	t.receiveName = strings.TrimSpace("receive " + c.name)
	t.processName = strings.TrimSpace("process " + c.name)
	t.base = []attribute.KeyValue{semconv.MessagingSystemKey.String(c.system), semconv.MessagingDestinationSubscriptionName(c.name)}
	set := func(extra ...attribute.KeyValue) attribute.Set {
		return attribute.NewSet(append(append([]attribute.KeyValue(nil), t.base...), extra...)...)
	}
	t.consumedOK = []metric.AddOption{metric.WithAttributeSet(set(semconv.MessagingOperationName("receive"), semconv.MessagingOperationTypeReceive))}
	t.processOK = []metric.RecordOption{metric.WithAttributeSet(set(semconv.MessagingOperationName("process")))}
	t.lagOpts = []metric.RecordOption{metric.WithAttributeSet(set())}
	t.redriveOpts = []metric.AddOption{metric.WithAttributeSet(set())}
	for i, n := range settleNames {
		t.settleOK[i] = []metric.RecordOption{metric.WithAttributeSet(set(semconv.MessagingOperationName(n), semconv.MessagingOperationTypeSettle))}
	}
	if s.caps.Stats {
		t.observe(s, meter)
	}
	return t
}

// observe registers the queue gauges, read with Stats at each collection.
func (t *subTelemetry) observe(s *Subscription, meter metric.Meter) {
	backlog, err1 := meter.Int64ObservableGauge(MetricBacklog, metric.WithUnit("{message}"),
		metric.WithDescription("Messages waiting to be delivered (queue lag in messages)."))
	inFlight, err2 := meter.Int64ObservableGauge(MetricInFlight, metric.WithUnit("{message}"),
		metric.WithDescription("Messages delivered and not yet settled."))
	dead, err3 := meter.Int64ObservableGauge(MetricDeadLetters, metric.WithUnit("{message}"),
		metric.WithDescription("Messages in the dead-letter queue."))
	oldest, err4 := meter.Float64ObservableGauge(MetricOldestAge, metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest message waiting or in flight (queue lag in time)."))
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		otel.Handle(err)
		return
	}
	opt := metric.WithAttributeSet(attribute.NewSet(t.base...))
	reg, err := meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		st, err := s.Stats(ctx)
		if errors.Is(err, ErrClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, g := range []struct {
			i metric.Int64Observable
			v int64
		}{{backlog, st.Backlog}, {inFlight, st.InFlight}, {dead, st.DeadLetters}} {
			if g.v >= 0 { // -1: the driver cannot read it
				o.ObserveInt64(g.i, g.v, opt)
			}
		}
		if st.OldestAge >= 0 {
			o.ObserveFloat64(oldest, st.OldestAge.Seconds(), opt)
		}
		return nil
	}, backlog, inFlight, dead, oldest)
	if err != nil {
		otel.Handle(err)
		return
	}
	t.reg = reg
}

// close unregisters the gauges.
func (t *subTelemetry) close() {
	if t.reg != nil {
		if err := t.reg.Unregister(); err != nil {
			otel.Handle(err)
		}
	}
}

// receiveStart returns the time a receive call starts, or the zero time
// when nothing would use it (no SDK).
func (t *subTelemetry) receiveStart(ctx context.Context) time.Time {
	if t.gate.Shut() && !t.in.consumed.Enabled(ctx) {
		return time.Time{}
	}
	return time.Now()
}

// received records a batch fetched from the broker: the consumed count,
// each message's delivery lag, and a receive span linked to the messages'
// creation contexts.
func (t *subTelemetry) received(ctx context.Context, start time.Time, dms []*driver.Message) {
	if len(dms) == 0 || start.IsZero() {
		return
	}
	if t.in.consumed.Enabled(ctx) {
		t.in.consumed.Add(ctx, int64(len(dms)), t.consumedOK...)
		now := time.Now()
		for _, dm := range dms {
			if !dm.PublishTime.IsZero() {
				t.in.lag.Record(ctx, max(now.Sub(dm.PublishTime), 0).Seconds(), t.lagOpts...)
			}
		}
	}
	if t.gate.Closed(ctx) {
		return
	}
	_, span := t.gate.Start(ctx, t.tracer, t.receiveName, trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(start))
	if span.IsRecording() {
		span.SetAttributes(t.base...)
		span.SetAttributes(semconv.MessagingOperationName("receive"), semconv.MessagingOperationTypeReceive,
			semconv.MessagingBatchMessageCount(len(dms)))
		for _, dm := range dms {
			if sc := trace.SpanContextFromContext(t.cfg.prop.Extract(ctx, propagation.MapCarrier(dm.Attributes))); sc.IsValid() {
				span.AddLink(trace.Link{SpanContext: sc})
			}
		}
	}
	span.End()
}

// processing is a handler call in progress.
type processing struct {
	span  trace.Span
	start time.Time
}

// processing reports whether m's handler runs under telemetry: m carries
// trace context, or an SDK is installed. It is the whole cost on the
// handler's fresh goroutine without an SDK, so it stays small (a bigger
// frame there would grow every handler goroutine's stack).
func (t *subTelemetry) processing(ctx context.Context, m *Message) bool {
	for _, f := range t.fields {
		if len(m.Attributes) == 0 {
			break
		}
		if m.Attributes[f] != "" {
			return true
		}
	}
	return !t.gate.Shut() || t.in.process.Enabled(ctx)
}

// process opens the process span of m, a child of the trace context its
// attributes carry, and returns the handler's context.
//
//go:noinline
func (t *subTelemetry) process(ctx context.Context, m *Message) (context.Context, processing) {
	return t.startProcess(ctx, m, len(m.Attributes) > 0)
}

//go:noinline
func (t *subTelemetry) startProcess(ctx context.Context, m *Message, carried bool) (context.Context, processing) {
	var creation trace.SpanContext
	if carried {
		ctx = t.cfg.prop.Extract(ctx, propagation.MapCarrier(m.Attributes))
		creation = trace.SpanContextFromContext(ctx)
	}
	ctx, span := t.gate.Start(ctx, t.tracer, t.processName, consumerSpan...)
	if span.IsRecording() {
		if creation.IsValid() {
			// The creation context is the parent (one message per process
			// span) and, as the messaging conventions require, a link too:
			// backends that follow links across traces find the producer
			// whichever way they look.
			span.AddLink(trace.Link{SpanContext: creation})
		}
		span.SetAttributes(t.base...)
		span.SetAttributes(semconv.MessagingOperationName("process"), semconv.MessagingOperationTypeProcess,
			semconv.MessagingMessageID(m.ID), semconv.MessagingMessageBodySize(len(m.Body)),
			attrDeliveryAttempt.Int(m.DeliveryAttempt))
	}
	p := processing{span: span}
	if span.IsRecording() || t.in.process.Enabled(ctx) {
		p.start = time.Now()
	}
	return ctx, p
}

// end records the handler's duration and outcome; err is what the handler
// returned.
//
//go:noinline
func (t *subTelemetry) end(ctx context.Context, p processing, m *Message, err error) {
	if !p.start.IsZero() {
		d := time.Since(p.start).Seconds()
		if err == nil {
			t.in.process.Record(ctx, d, t.processOK...)
		} else {
			t.in.process.Record(ctx, d, withError(append(append([]attribute.KeyValue(nil), t.base...), semconv.MessagingOperationName("process")), err))
		}
	}
	if p.span.IsRecording() {
		settlement := "unsettled"
		switch m.outcome.Load() {
		case outcomeAcked:
			settlement = "ack"
		case outcomeNacked:
			settlement = "nack"
		case outcomeDeadLettered:
			settlement = "dead_letter"
		}
		p.span.SetAttributes(attrSettlement.String(settlement))
		if err != nil {
			p.span.SetAttributes(semconv.ErrorTypeKey.String(errorType(err)))
			p.span.SetStatus(codes.Error, errorType(err)) // not err's text: handlers' errors may quote data
		}
	}
	p.span.End()
}

// measuring reports whether settle calls are measured (a metrics SDK is
// installed).
func (t *subTelemetry) measuring(ctx context.Context) bool { return t.in.opDuration.Enabled(ctx) }

// settle runs the settle call do of kind op (settleAck...), records its
// duration, and returns its error.
//
//go:noinline
func (t *subTelemetry) settle(ctx context.Context, op int, do func() error) error {
	start := time.Now()
	err := do()
	d := time.Since(start).Seconds()
	if err == nil {
		t.in.opDuration.Record(ctx, d, t.settleOK[op]...)
		return nil
	}
	t.in.opDuration.Record(ctx, d, withError(append(append([]attribute.KeyValue(nil), t.base...),
		semconv.MessagingOperationName(settleNames[op]), semconv.MessagingOperationTypeSettle), err))
	return err
}

// redriven counts messages moved back from the dead-letter queue.
func (t *subTelemetry) redriven(ctx context.Context, n int) {
	if n > 0 {
		t.in.redriven.Add(ctx, int64(n), t.redriveOpts...)
	}
}
