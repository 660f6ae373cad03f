// Package telemetry carries the OpenTelemetry providers that payrail's
// packages instrument themselves with, as one value an application builds
// once and hands to each of them:
//
//	tel := telemetry.Providers{TracerProvider: tp, MeterProvider: mp, Propagator: prop}
//	gw, err := gateway.New("stripe", drv, gateway.WithTelemetry(tel))
//	topic, err := bus.OpenTopic(ctx, url, bus.WithTelemetry(tel))
//	p, err := payments.New(payments.WithTelemetry(tel), payments.WithGateway(gw), payments.WithTopic(topic))
//
// The processor passes its providers on to the Handler, Worker and
// Reconciler built from it, and to its default in-memory bus. A field left
// nil means the application's global (otel.GetTracerProvider,
// otel.GetMeterProvider, otel.GetTextMapPropagator), read when the value is
// used, so that a library embedded in a service never installs or
// replaces globals of its own and follows the service's setup.
//
// The package depends on the OpenTelemetry API only; nothing is exported
// until the application installs an SDK.
package telemetry

import (
	"reflect"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Providers are the OpenTelemetry providers a payrail component uses. The
// zero value uses the application's globals.
type Providers struct {
	// TracerProvider creates the tracers of spans (default: the global).
	TracerProvider trace.TracerProvider
	// MeterProvider creates the meters of metrics (default: the global).
	MeterProvider metric.MeterProvider
	// Propagator injects and extracts trace context in HTTP headers and
	// message attributes (default: the global text-map propagator).
	Propagator propagation.TextMapPropagator
}

// Tracer returns p.TracerProvider, or the global tracer provider.
func (p Providers) Tracer() trace.TracerProvider {
	if p.TracerProvider != nil {
		return p.TracerProvider
	}
	return otel.GetTracerProvider()
}

// Meter returns p.MeterProvider, or the global meter provider.
func (p Providers) Meter() metric.MeterProvider {
	if p.MeterProvider != nil {
		return p.MeterProvider
	}
	return otel.GetMeterProvider()
}

// w3c is the propagator used while the application has set none.
var w3c = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// Propagators returns p.Propagator, or the global text-map propagator, or,
// while the application has not set one (OpenTelemetry's default global
// propagates nothing), W3C Trace Context and Baggage: a trace that reaches
// payrail always continues through it.
func (p Providers) Propagators() propagation.TextMapPropagator {
	if p.Propagator != nil {
		return p.Propagator
	}
	g := otel.GetTextMapPropagator()
	id, ok := identify(g)
	if c := lastGlobal.Load(); ok && c != nil && c.id == id {
		return c.use
	}
	use := w3c
	if len(g.Fields()) > 0 {
		use = g
	}
	if ok {
		lastGlobal.Store(&globalChoice{id: id, g: g, use: use})
	}
	return use
}

// globalChoice is Propagators' choice for the global propagator whose
// identity is id. Whether the global propagates anything is known by its
// Fields, which a composite propagator builds anew on every call (an
// allocation per HTTP request and per message), so the answer is kept for
// as long as the global stays the same.
type globalChoice struct {
	id  propagatorID
	g   propagation.TextMapPropagator // keeps the address in id from being reused
	use propagation.TextMapPropagator
}

var lastGlobal atomic.Pointer[globalChoice]

// propagatorID identifies a propagator held by pointer, or a slice of
// propagators (a composite) by its elements and length.
type propagatorID struct {
	typ reflect.Type
	ptr uintptr
	n   int
}

// identify returns p's identity, or false for a propagator of another kind
// (a struct value, say), whose choice is not kept: comparing such values
// with == could panic.
func identify(p propagation.TextMapPropagator) (propagatorID, bool) {
	switch v := reflect.ValueOf(p); v.Kind() {
	case reflect.Pointer:
		return propagatorID{typ: v.Type(), ptr: v.Pointer()}, true
	case reflect.Slice:
		return propagatorID{typ: v.Type(), ptr: v.Pointer(), n: v.Len()}, true
	}
	return propagatorID{}, false
}
