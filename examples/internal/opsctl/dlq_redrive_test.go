package opsctl_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/examples/internal/opsctl"
	"github.com/payrail/payrail/internal/testkit/otlpsink"
	"github.com/payrail/payrail/payments"
	paypostgres "github.com/payrail/payrail/payments/postgres"
)

// TestBusDLQRedriveReport dead-letters the commands of payments in every
// kind of state on a Kafka cluster (kfake), with the payments in a
// PostgreSQL payment store, and checks that `bus dlq redrive` reports, per
// message, the payment's status and failure code and whether the worker
// reprocesses or skips it; --apply then redrives them all (the bus redrives
// in bulk) and exports payrail.bus.redriven over OTLP.
func TestBusDLQRedriveReport(t *testing.T) {
	env, topicURL, subURL := kafkaBus(t, 1, "payments-redrive-cli", "payments-worker-redrive-cli")
	payURL := pgURL(t, "opsctl_redrive_", paypostgres.Migrate)
	env["PAYMENTS_STORE_URL"] = payURL
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	store, err := payments.OpenStore(ctx, payURL)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	now := time.Now().UTC().Truncate(time.Microsecond)
	states := []struct {
		id      string
		status  payments.Status
		failure string
	}{
		{"pay_RDexhausted", payments.StatusFailed, payments.FailureRetriesExhausted},
		{"pay_RDcaptured", payments.StatusCaptured, ""},
		{"pay_RDsyncfail", payments.StatusFailed, "gateway_unavailable"},
		{"pay_RDdeclined", payments.StatusDeclined, ""},
		{"pay_RDunknown", payments.StatusProcessing, ""},
	}
	for _, s := range states {
		p := &payments.Payment{ID: s.id, Merchant: "acme", Amount: 1200, Currency: "EUR", PaymentMethod: "pm_card_visa",
			Origin: "web", CaptureMethod: payments.CaptureAutomatic, Status: s.status, Gateway: "mock", FailureCode: s.failure,
			Refunds: []payments.Refund{}, CreatedAt: now, UpdatedAt: now}
		if err := store.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	ids := []string{"pay_RDexhausted", "pay_RDcaptured", "pay_RDsyncfail", "pay_RDdeclined", "pay_RDunknown", "pay_RDmissing"}

	var cmds []*bus.Message
	for _, id := range ids {
		cmds = append(cmds, &bus.Message{ID: id + ":authorize", Key: id,
			Body:       []byte(`{"v":1,"op":"authorize","payment_id":"` + id + `","merchant":"acme"}`),
			Attributes: map[string]string{payments.AttrCommand: "authorize", payments.AttrPaymentID: id, payments.AttrMerchant: "acme"}})
	}
	deadLetterAll(t, ctx, topicURL, subURL, cmds, "worker crashed")

	// lineOf returns the report's line for a payment.
	lineOf := func(out, id string) string {
		for l := range strings.Lines(out) {
			if strings.Contains(l, id) {
				return l
			}
		}
		t.Fatalf("no line for %s in\n%s", id, out)
		return ""
	}
	want := map[string][]string{
		"pay_RDexhausted": {"failed", "retries_exhausted", "redrive (retryable failure)"},
		"pay_RDcaptured":  {"captured", "skip (final: captured)"},
		"pay_RDsyncfail":  {"failed", "gateway_unavailable", "skip (final: failed (gateway_unavailable))"},
		"pay_RDdeclined":  {"declined", "skip (final: declined)"},
		"pay_RDunknown":   {"processing", "redrive (not settled: processing)"},
		"pay_RDmissing":   {"not found", "redrive (payment not found"},
	}
	checkLines := func(what, out string) {
		t.Helper()
		for id, parts := range want {
			l := lineOf(out, id)
			for _, p := range parts {
				if !strings.Contains(l, p) {
					t.Errorf("%s: line for %s lacks %q: %q", what, id, p, l)
				}
			}
		}
	}

	code, out, errOut := dlqRun(t, env, "bus", "dlq", "redrive")
	if code != opsctl.ExitOK || !strings.Contains(out, "-- dry run: 6 dead letter(s): 3 to redrive, 3 to skip") {
		t.Fatalf("dry run: %d\n%s%s", code, out, errOut)
	}
	checkLines("dry run", out)
	if code, out, _ = dlqRun(t, env, "bus", "dlq", "ls"); !strings.Contains(out, "-- 6 dead letter(s)") {
		t.Fatalf("the dry run moved something: %d %q", code, out)
	}

	sink := otlpsink.StartOTLPSink(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.GRPCEndpoint())
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	code, out, errOut = dlqRun(t, env, "bus", "dlq", "redrive", "--apply")
	if code != opsctl.ExitOK || !strings.Contains(out, "redrove 6 dead letter(s): the worker reprocesses 3") ||
		!strings.Contains(out, "acknowledges 3 without calling the gateway") {
		t.Fatalf("redrive --apply: %d\n%s%s", code, out, errOut)
	}
	checkLines("apply", out)
	if code, out, _ = dlqRun(t, env, "bus", "dlq", "ls"); !strings.Contains(out, "-- 0 dead letter(s)") {
		t.Fatalf("after the redrive: %d %q", code, out)
	}
	redriven := func() float64 {
		var v float64
		for _, p := range sink.MetricPoints() {
			if p.Metric == bus.MetricRedriven {
				v = p.Value
			}
		}
		return v
	}
	if !sink.Wait(10*time.Second, func() bool { return redriven() == 6 }) {
		t.Fatalf("%s exported %v, want 6", bus.MetricRedriven, redriven())
	}
}
