// Package apptest holds test helpers shared by the tests of the reference
// binaries (examples/internal/server, examples/internal/worker,
// examples/internal/opsctl) and their end-to-end tests
// (examples/internal/e2e). It is imported by tests only.
package apptest

import (
	"bytes"
	"sync"
	"testing"

	"github.com/payrail/payrail/examples/internal/config"
)

// otelVariables are the OpenTelemetry SDK's environment variables that
// Config clears, so that a developer's exporter settings do not leak into
// a test.
var otelVariables = []string{
	"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
	"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER",
	"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SDK_DISABLED", "OTEL_TRACES_SAMPLER",
}

// Config isolates the test from the developer's environment and .env (it
// changes to a temporary directory and clears every configuration and
// OTEL_* variable), applies env and loads the configuration.
func Config(tb testing.TB, env map[string]string) *config.Config {
	tb.Helper()
	tb.Chdir(tb.TempDir())
	for _, n := range config.Names() {
		tb.Setenv(n, "")
	}
	for _, n := range otelVariables {
		tb.Setenv(n, "")
	}
	for k, v := range env {
		tb.Setenv(k, v)
	}
	cfg, err := config.Load()
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}

// SyncBuffer is a bytes.Buffer safe for concurrent writes, such as a
// binary's logs.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p to the buffer.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
