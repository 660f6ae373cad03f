package app

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/payrail/payrail/examples/internal/config"
	"github.com/payrail/payrail/payments"
)

// Memory stores are announced once at start-up, naming which.
func TestMemoryStoresWarning(t *testing.T) {
	testEnv(t, nil) // the defaults: memory:// idempotency and payment stores
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []struct {
		name  string
		store payments.Store
		want  string
	}{
		{"both", nil, "[IDEMPOTENCY_URL PAYMENTS_STORE_URL]"},
		{"given memory store", payments.NewMemoryStore(), "[IDEMPOTENCY_URL PAYMENTS_STORE_URL]"},
		{"given other store", struct{ payments.Store }{payments.NewMemoryStore()}, "stores=[IDEMPOTENCY_URL]"},
	} {
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		var cl Closers
		if _, err := OpenBackends(ctx, cfg, c.store, log, &cl); err != nil {
			t.Fatal(err)
		}
		if err := cl.CloseAll(log); err != nil {
			t.Fatal(err)
		}
		var lines []string
		for l := range strings.Lines(logs.String()) {
			if strings.Contains(l, "memory stores are single-process and not durable") {
				lines = append(lines, l)
			}
		}
		if len(lines) != 1 || !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], c.want) {
			t.Errorf("%s: warnings %q, want one naming %s", c.name, lines, c.want)
		}
	}
}
