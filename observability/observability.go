// Package observability wires OpenTelemetry for payrail services: tracer and
// meter providers configured from the standard OTEL_* environment, a
// Prometheus scrape endpoint fed by the OTel Prometheus exporter, W3C trace
// context propagation, and JSON logs correlated with traces.
//
// The SDK's packages only use the OpenTelemetry API; nothing is exported
// until an application calls Setup.
package observability

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	promexporter "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

type config struct {
	serviceName string
	registerer  prometheus.Registerer
	setGlobal   bool
}

// Option configures Setup.
type Option func(*config)

// WithServiceName sets the service name used when neither OTEL_SERVICE_NAME
// nor SERVICE_NAME (the operations guide's variable) is set.
func WithServiceName(name string) Option { return func(c *config) { c.serviceName = name } }

// WithPrometheus registers an OTel Prometheus exporter with reg, so that
// every metric is also served by a promhttp handler over reg (/metrics).
func WithPrometheus(reg prometheus.Registerer) Option { return func(c *config) { c.registerer = reg } }

// Providers are the providers Setup built.
type Providers struct {
	Tracer *sdktrace.TracerProvider
	Meter  *sdkmetric.MeterProvider
}

// Setup builds tracer and meter providers from the standard OpenTelemetry
// environment (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL
// grpc|http/protobuf, OTEL_TRACES_EXPORTER, OTEL_METRICS_EXPORTER,
// OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES...) plus SERVICE_NAME, installs
// them and the W3C trace-context propagator as the OpenTelemetry globals, and
// returns a shutdown function that flushes and stops them.
//
// With no exporter configured (no OTLP endpoint and no OTEL_*_EXPORTER)
// traces and metrics are not exported anywhere and Setup returns no error;
// the Prometheus exporter, if requested, still serves metrics.
func Setup(ctx context.Context, opts ...Option) (shutdown func(context.Context) error, err error) {
	p, shutdown, err := NewProviders(ctx, opts...)
	if err != nil {
		return nil, err
	}
	otel.SetTracerProvider(p.Tracer)
	otel.SetMeterProvider(p.Meter)
	otel.SetTextMapPropagator(Propagator())
	return shutdown, nil
}

// Propagator is the W3C trace-context and baggage propagator payrail uses
// in HTTP headers and message attributes.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// NewProviders is Setup without touching the OpenTelemetry globals.
func NewProviders(ctx context.Context, opts ...Option) (*Providers, func(context.Context) error, error) {
	c := config{serviceName: "payrail"}
	for _, o := range opts {
		o(&c)
	}
	res, err := newResource(ctx, c.serviceName)
	if err != nil {
		return nil, nil, err
	}
	var shutdowns []func(context.Context) error
	shutdown := func(ctx context.Context) error {
		var errs []error
		for i := len(shutdowns) - 1; i >= 0; i-- {
			errs = append(errs, shutdowns[i](ctx))
		}
		return errors.Join(errs...)
	}

	topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if configured("TRACES") {
		exp, err := autoexport.NewSpanExporter(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("observability: span exporter: %w", err)
		}
		if !autoexport.IsNoneSpanExporter(exp) {
			topts = append(topts, sdktrace.WithBatcher(exp))
		}
	}
	tp := sdktrace.NewTracerProvider(topts...)
	shutdowns = append(shutdowns, tp.Shutdown)

	mopts := []sdkmetric.Option{sdkmetric.WithResource(res)}
	if configured("METRICS") {
		r, err := autoexport.NewMetricReader(ctx)
		if err != nil {
			_ = shutdown(ctx)
			return nil, nil, fmt.Errorf("observability: metric reader: %w", err)
		}
		if !autoexport.IsNoneMetricReader(r) {
			mopts = append(mopts, sdkmetric.WithReader(r))
		}
	}
	if c.registerer != nil {
		pe, err := promexporter.New(promexporter.WithRegisterer(c.registerer))
		if err != nil {
			_ = shutdown(ctx)
			return nil, nil, fmt.Errorf("observability: prometheus exporter: %w", err)
		}
		mopts = append(mopts, sdkmetric.WithReader(pe))
	}
	mp := sdkmetric.NewMeterProvider(mopts...)
	shutdowns = append(shutdowns, mp.Shutdown)
	return &Providers{Tracer: tp, Meter: mp}, shutdown, nil
}

// configured reports whether an exporter is configured for the signal
// ("TRACES" or "METRICS"): an explicit OTEL_<SIGNAL>_EXPORTER, or an OTLP
// endpoint for all signals or for this one.
func configured(signal string) bool {
	for _, k := range []string{"OTEL_" + signal + "_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_" + signal + "_ENDPOINT"} {
		if strings.TrimSpace(os.Getenv(k)) != "" {
			return true
		}
	}
	return false
}

func newResource(ctx context.Context, fallbackName string) (*resource.Resource, error) {
	name := fallbackName
	if s := os.Getenv("SERVICE_NAME"); s != "" {
		name = s
	}
	// WithFromEnv applies OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME,
	// which take precedence over SERVICE_NAME.
	return resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(name)),
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
		resource.WithProcessPID(),
		resource.WithHost(),
	)
}
