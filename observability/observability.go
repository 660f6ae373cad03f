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
	"log/slog"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	promexporter "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

type config struct {
	serviceName string
	registerer  prometheus.Registerer
	logger      *slog.Logger
}

// Option configures Setup and NewProviders.
type Option func(*config)

// WithServiceName sets the service name used when neither OTEL_SERVICE_NAME
// nor SERVICE_NAME (the operations guide's variable) is set.
func WithServiceName(name string) Option { return func(c *config) { c.serviceName = name } }

// WithPrometheus registers an OTel Prometheus exporter with reg, so that
// every metric is also served by a promhttp handler over reg (/metrics).
func WithPrometheus(reg prometheus.Registerer) Option { return func(c *config) { c.registerer = reg } }

// WithLogger makes Setup report OpenTelemetry's internal errors (an
// unreachable collector, a dropped batch) to l at warning level instead of
// the standard library logger. NewProviders ignores it: the error handler is
// global.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// Providers are the providers NewProviders built. Each is a no-op provider
// when nothing consumes its signal, so instrumented code pays nothing for
// it: Tracer when no trace exporter is configured, Meter when no metric
// exporter is configured and WithPrometheus was not given.
type Providers struct {
	Tracer trace.TracerProvider
	Meter  metric.MeterProvider
}

// Setup builds tracer and meter providers from the standard OpenTelemetry
// environment (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL
// grpc|http/protobuf, the per-signal OTEL_EXPORTER_OTLP_<SIGNAL>_* variants,
// OTEL_TRACES_EXPORTER, OTEL_METRICS_EXPORTER, OTEL_SERVICE_NAME,
// OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, OTEL_BSP_*,
// OTEL_METRIC_EXPORT_INTERVAL, OTEL_SDK_DISABLED) plus the operations
// guide's SERVICE_NAME, installs them and the W3C trace-context propagator
// as the OpenTelemetry globals, and returns a shutdown function that flushes
// and stops them.
//
// With no exporter configured (no OTLP endpoint and no OTEL_*_EXPORTER)
// Setup returns no error and installs no-op providers, so instrumentation
// costs nothing; the Prometheus exporter, if requested, still serves
// metrics. The service name is, in order of precedence, OTEL_SERVICE_NAME,
// service.name in OTEL_RESOURCE_ATTRIBUTES, SERVICE_NAME, WithServiceName,
// and "payrail".
func Setup(ctx context.Context, opts ...Option) (shutdown func(context.Context) error, err error) {
	c := newConfig(opts)
	p, shutdown, err := NewProviders(ctx, opts...)
	if err != nil {
		return nil, err
	}
	otel.SetTracerProvider(p.Tracer)
	otel.SetMeterProvider(p.Meter)
	otel.SetTextMapPropagator(Propagator())
	if c.logger != nil {
		l := c.logger
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			l.Warn("opentelemetry: export or instrumentation error", "error", err)
		}))
	}
	return shutdown, nil
}

// Propagator is the W3C trace-context and baggage propagator payrail uses
// in HTTP headers and message attributes.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

func newConfig(opts []Option) config {
	c := config{serviceName: "payrail"}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// NewProviders is Setup without touching the OpenTelemetry globals.
func NewProviders(ctx context.Context, opts ...Option) (*Providers, func(context.Context) error, error) {
	c := newConfig(opts)
	var shutdowns []func(context.Context) error
	shutdown := func(ctx context.Context) error {
		var errs []error
		for i := len(shutdowns) - 1; i >= 0; i-- {
			errs = append(errs, shutdowns[i](ctx))
		}
		return errors.Join(errs...)
	}
	p := &Providers{Tracer: tracenoop.NewTracerProvider(), Meter: metricnoop.NewMeterProvider()}
	if disabled() {
		return p, shutdown, nil
	}
	res, err := newResource(ctx, c.serviceName)
	if err != nil {
		return nil, nil, fmt.Errorf("observability: resource: %w", err)
	}

	if configured("TRACES") {
		exp, err := autoexport.NewSpanExporter(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("observability: span exporter: %w", err)
		}
		if autoexport.IsNoneSpanExporter(exp) {
			_ = exp.Shutdown(ctx)
		} else {
			tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithBatcher(exp))
			shutdowns = append(shutdowns, tp.Shutdown)
			p.Tracer = tp
		}
	}

	var readers []sdkmetric.Option
	if configured("METRICS") {
		r, err := autoexport.NewMetricReader(ctx)
		if err != nil {
			_ = shutdown(ctx)
			return nil, nil, fmt.Errorf("observability: metric reader: %w", err)
		}
		if autoexport.IsNoneMetricReader(r) {
			_ = r.Shutdown(ctx)
		} else {
			readers = append(readers, sdkmetric.WithReader(r))
		}
	}
	if c.registerer != nil {
		pe, err := promexporter.New(promexporter.WithRegisterer(c.registerer))
		if err != nil {
			_ = shutdown(ctx)
			return nil, nil, fmt.Errorf("observability: prometheus exporter: %w", err)
		}
		readers = append(readers, sdkmetric.WithReader(pe))
	}
	if len(readers) > 0 {
		mp := sdkmetric.NewMeterProvider(append(readers, sdkmetric.WithResource(res))...)
		shutdowns = append(shutdowns, mp.Shutdown)
		p.Meter = mp
	}
	return p, shutdown, nil
}

// disabled reports OTEL_SDK_DISABLED=true.
func disabled() bool {
	return strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true")
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
	if s := strings.TrimSpace(os.Getenv("SERVICE_NAME")); s != "" {
		name = s
	}
	// WithFromEnv applies OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME,
	// which take precedence over SERVICE_NAME.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(name)),
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
		resource.WithProcessPID(),
		resource.WithHost(),
	)
	if errors.Is(err, resource.ErrPartialResource) || errors.Is(err, resource.ErrSchemaURLConflict) {
		// A detector failed or schema URLs differ: the resource still
		// holds everything else, which is better than no telemetry.
		return res, nil
	}
	return res, err
}
