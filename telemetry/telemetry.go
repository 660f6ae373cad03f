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
	if g := otel.GetTextMapPropagator(); len(g.Fields()) > 0 {
		return g
	}
	return w3c
}
