package payments_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/payrail/payrail/idempotency"
	"github.com/payrail/payrail/idempotency/memory"
	"github.com/payrail/payrail/payments"
)

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A full in-process idempotency store refuses new keys with a retryable
// 503 and still replays the keys it holds: a retry within the TTL never
// pays twice.
func TestIdempotencyStoreFullHTTP(t *testing.T) {
	const capacity = 3
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	reader := sdkmetric.NewManualReader()
	logs := new(syncBuffer)
	e := newEnv(t, envOption{procOpts: []payments.Option{
		payments.WithIdempotencyStore(idempotency.New(memory.New(memory.WithMaxEntries(capacity)))),
		payments.WithClock(clock),
		payments.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))),
		payments.WithLogger(slog.New(slog.NewTextHandler(logs, nil))),
	}})

	first := map[string]resp{}
	for i := range capacity {
		k := "order-" + strconv.Itoa(i)
		first[k] = e.create(k, payBody("pm_card_visa"))
		wantStatus(t, first[k], http.StatusCreated)
	}
	for _, k := range []string{"order-new", "order-new", "order-other"} {
		r := e.create(k, payBody("pm_card_visa"))
		wantProblem(t, r, http.StatusServiceUnavailable, "idempotency_store_full")
		if ra := r.header.Get("Retry-After"); ra != "30" {
			t.Fatalf("Retry-After %q, want 30", ra)
		}
	}
	if n := e.mock.Calls("authorize"); n != capacity {
		t.Fatalf("gateway authorize calls %d, want %d: a refused request reached the gateway", n, capacity)
	}
	// Every key held still replays its response, without a second charge.
	for k, r := range first {
		again := e.create(k, payBody("pm_card_visa"))
		wantStatus(t, again, http.StatusCreated)
		if !sameBytes(r.body, again.body) || again.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("%s: not replayed:\n%s\n%s", k, r.body, again.body)
		}
		if n := e.mock.Processed(r.json(t)["id"].(string) + ":authorize"); n != 1 {
			t.Fatalf("%s: gateway processed %d authorizations, want 1", k, n)
		}
	}
	if n := e.mock.Calls("authorize"); n != capacity {
		t.Fatalf("gateway authorize calls %d after replays, want %d", n, capacity)
	}

	got := (&telEnv{reader: reader}).counts(t, payments.MetricIdempotencyRejected)
	if got["payrail.idempotency.rejection_reason=full"] != 3 || len(got) != 1 {
		t.Fatalf("%s: %v, want 3 with payrail.idempotency.rejection_reason=full", payments.MetricIdempotencyRejected, got)
	}
	out := logs.String()
	if c := strings.Count(out, "idempotency store full"); c != 1 {
		t.Fatalf("%d log lines for 3 refusals within 10s, want 1:\n%s", c, out)
	}
	if !strings.Contains(out, "level=WARN") || strings.Contains(out, "order-new") || strings.Contains(out, "order-other") {
		t.Fatalf("log line not a warning, or naming a key:\n%s", out)
	}

	// Once the records expire (24 h), new keys are taken again.
	mu.Lock()
	now = now.Add(idempotency.DefaultTTL)
	mu.Unlock()
	wantStatus(t, e.create("order-new", payBody("pm_card_visa")), http.StatusCreated)
	if n := e.mock.Calls("authorize"); n != capacity+1 {
		t.Fatalf("gateway authorize calls %d, want %d", n, capacity+1)
	}
}
