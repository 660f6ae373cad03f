package telemetry_test

import (
	"slices"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/payrail/payrail/telemetry"
)

// The global propagator is process-wide and cannot be unset: this is the
// package's only test that sets it, and it goes from unset to set.
func TestPropagatorsFollowTheGlobal(t *testing.T) {
	fields := func() []string {
		f := telemetry.Providers{}.Propagators().Fields()
		slices.Sort(f)
		return f
	}
	w3c := []string{"baggage", "traceparent", "tracestate"}

	// OpenTelemetry's default global propagates nothing: W3C instead.
	if got := fields(); !slices.Equal(got, w3c) {
		t.Fatalf("with no global propagator: fields %q, want %q", got, w3c)
	}
	explicit := propagation.Baggage{}
	if got := (telemetry.Providers{Propagator: explicit}).Propagators(); got != explicit {
		t.Fatalf("Providers.Propagator not used: got %T", got)
	}

	for _, c := range []struct {
		name string
		set  propagation.TextMapPropagator
		want []string
	}{
		{"a composite", propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}), []string{"traceparent", "tracestate"}},
		{"another composite", propagation.NewCompositeTextMapPropagator(propagation.Baggage{}), []string{"baggage"}},
		{"a struct value", propagation.TraceContext{}, []string{"traceparent", "tracestate"}},
		{"a composite that propagates nothing", propagation.NewCompositeTextMapPropagator(), w3c},
		{"a composite of both, after the empty one", propagation.NewCompositeTextMapPropagator(propagation.Baggage{}, propagation.TraceContext{}), w3c},
	} {
		otel.SetTextMapPropagator(c.set)
		for range 2 { // the second read is the remembered choice
			if got := fields(); !slices.Equal(got, c.want) {
				t.Errorf("global set to %s: fields %q, want %q", c.name, got, c.want)
			}
		}
	}

	// A server asks for every request: with a composite global (what
	// observability.Setup installs), the answer costs no allocation.
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	if n := testing.AllocsPerRun(100, func() { _ = telemetry.Providers{}.Propagators() }); n != 0 {
		t.Errorf("Propagators with a composite global: %.0f allocations, want 0", n)
	}
}
