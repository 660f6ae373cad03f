package payments

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/payrail/payrail/gateway"
)

// FailureRetriesExhausted is the FailureCode of a payment that the async
// worker failed because its command exhausted its delivery attempts on a
// retryable gateway failure (the gateway unavailable or timing out) or for
// want of a gateway (no route, or its gateway no longer configured). When
// the last delivery called the gateway, the worker first confirmed that the
// provider had not processed the payment: the attempts were refused before
// processing, or a Lookup of the payment's gateway idempotency key found
// nothing. Its command is dead-lettered with it.
//
// It is the only failure a redriven command reopens (see Redrivable). The
// HTTP API renders it as before, with the problem code gateway_unavailable;
// only the payment's failure_code member differs.
const FailureRetriesExhausted = "retries_exhausted"

// codeRetriesExhausted is FailureRetriesExhausted as failPayment takes it.
// It is a failure code, never a problem code: fromPayment renders the
// payment as CodeGatewayUnavailable.
const codeRetriesExhausted Code = FailureRetriesExhausted

// MetricRedrives counts the commands the worker received for a payment that
// had already ended — a dead letter redriven by an operator, or a duplicate
// of a command already processed — by payrail.outcome: "reprocessed" (a
// retryable failure, reopened and authorized again with the same gateway
// idempotency key) or "skipped" (a final outcome, acknowledged without a
// gateway call).
const MetricRedrives = "payrail.payment.redrives"

// Redrive outcomes, the payrail.outcome attribute of MetricRedrives.
const (
	RedriveReprocessed = "reprocessed"
	RedriveSkipped     = "skipped"
)

// Redrivable reports whether a redriven command for p is processed again:
// p failed with FailureRetriesExhausted. Every other ended payment is final
// for a redrive: authorized, captured, voided, refunded and declined ones,
// payments failed by a synchronous request (its client was answered and
// the answer stored under its idempotency key), failed with
// gateway_rejected, or with bus_unavailable (the command was never queued
// and the client's key was released for a retry).
func Redrivable(p *Payment) bool {
	return p != nil && p.Status == StatusFailed && p.FailureCode == FailureRetriesExhausted
}

// RedrivePlan says what the worker does with a redriven command for p:
// whether it processes the payment (a retryable failure, or a payment not
// yet settled: pending, or processing with an unknown outcome) and why, in
// a few words for an operator ("retryable failure", "final: captured",
// "final: failed (gateway_rejected)").
func RedrivePlan(p *Payment) (process bool, why string) {
	switch {
	case Redrivable(p):
		return true, "retryable failure"
	case p.Status == StatusPending || p.Status == StatusProcessing:
		return true, "not settled: " + string(p.Status)
	case p.Status == StatusFailed:
		return false, fmt.Sprintf("final: failed (%s)", p.FailureCode)
	case p.Status == StatusRequiresReview:
		return false, "in review: an operator settles it (runbook: payments in review)"
	}
	return false, "final: " + string(p.Status)
}

// reopen moves a Redrivable payment back for processing, in one
// compare-and-set save: to processing at its recorded gateway (so that
// execAuthorize runs with prior set: the same gateway idempotency key, and
// a failure confirmed by Lookup), or to pending when it never reached a
// gateway (it failed for want of a route). It clears FailureCode.
//
// This is the one move out of StatusFailed, deliberately absent from
// transitions: only the worker makes it, only for FailureRetriesExhausted.
// It reports false, with the payment as read, when the payment is not (or
// no longer, another delivery having reopened it first) Redrivable.
func (w *Worker) reopen(ctx context.Context, pay *Payment) (*Payment, bool, *Error) {
	moved := false
	saved, e := w.p.save(ctx, pay, func(q *Payment) error {
		moved = false
		if !Redrivable(q) {
			return errUnchanged
		}
		q.Status = StatusProcessing
		if q.Gateway == "" {
			q.Status = StatusPending
		}
		q.FailureCode = ""
		q.ReconcileAttempts = 0 // a redrive starts a fresh round of attempts
		q.UpdatedAt = w.p.now()
		moved = true
		return nil
	})
	return saved, moved && e == nil, e
}

// exhausted settles a payment whose command's last delivery failed
// transiently (execAuthorize's retry outcome). If an attempt may have
// reached the provider, a Lookup of the payment's gateway idempotency key
// decides: found, the provider's answer is stored; not found, the payment
// fails with FailureRetriesExhausted; unanswered, it is left processing
// (payment_outcome_unknown) for reconciliation. If no attempt can have
// reached it, the payment fails with FailureRetriesExhausted at once.
func (w *Worker) exhausted(ctx context.Context, pay *Payment, cause error, prior bool) *outcome {
	ge, isGE := errors.AsType[*gateway.Error](cause)
	reached := prior || !isGE || !ge.NotProcessed
	if g, ok := w.p.router.Gateway(pay.Gateway); ok && reached {
		return w.p.reconcileAuthorization(ctx, pay, false, g, codeRetriesExhausted, cause)
	}
	return w.p.failPayment(ctx, pay, false, codeRetriesExhausted, cause)
}

// newRedriveCounter creates the MetricRedrives instrument.
func newRedriveCounter(m metric.Meter) (metric.Int64Counter, error) {
	return m.Int64Counter(MetricRedrives,
		metric.WithDescription("Commands for payments that had already ended (redriven dead letters, duplicates): reprocessed or skipped."),
		metric.WithUnit("{command}"))
}

// redriven counts a command for an ended payment.
func (t *instruments) redriven(ctx context.Context, outcome string) {
	t.redrives.Add(ctx, 1, t.cached([4]string{"\x00redrive", outcome}, func() []attribute.KeyValue {
		return []attribute.KeyValue{attrOutcome.String(outcome)}
	}).add...)
}
