package stripe

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	stripego "github.com/stripe/stripe-go/v82"

	"github.com/payrail/payrail/gateway/driver"
)

// Lookup implements driver.Gateway; see the package documentation.
func (g *Gateway) Lookup(ctx context.Context, key string) (*driver.Transaction, error) {
	if !queryable(key) {
		return nil, &driver.Error{Kind: driver.KindInvalidRequest, Code: "lookup_key_invalid", NotProcessed: true,
			Message: "the idempotency key contains characters Lookup cannot search for"}
	}
	if i := strings.LastIndexByte(key, ':'); i > 0 {
		id, op := key[:i], key[i+1:]
		switch op {
		case "authorize", "capture", "void":
			pi, err := g.findPaymentIntent(ctx, id)
			if err != nil {
				return nil, err
			}
			return lookupResult(pi, op, key)
		}
	}
	return g.findRefund(ctx, key)
}

// queryable reports whether s can be quoted in a Stripe search query.
func queryable(s string) bool {
	return s != "" && len(s) <= 255 && !strings.ContainsAny(s, `'"\`) && !strings.ContainsFunc(s, func(r rune) bool { return r < ' ' })
}

func notFound(msg string) *driver.Error {
	return &driver.Error{Kind: driver.KindNotFound, Code: "resource_missing", NotProcessed: true, Message: msg}
}

// lookupResult is what the PaymentIntent says about operation op.
func lookupResult(pi *stripego.PaymentIntent, op, key string) (*driver.Transaction, error) {
	tx, err := txFromPI(pi)
	if err != nil {
		return nil, err
	}
	switch op {
	case "capture":
		if pi.Status == stripego.PaymentIntentStatusSucceeded && (pi.CaptureMethod != stripego.PaymentIntentCaptureMethodManual || pi.Metadata[MetaCaptureKey] == key) {
			return tx, nil
		}
		return nil, notFound("the PaymentIntent was not captured with this key")
	case "void":
		if pi.Status == stripego.PaymentIntentStatusCanceled {
			return tx, nil
		}
		return nil, notFound("the PaymentIntent was not cancelled")
	}
	switch pi.Status {
	case stripego.PaymentIntentStatusRequiresCapture, stripego.PaymentIntentStatusSucceeded, stripego.PaymentIntentStatusCanceled:
		return tx, nil
	case stripego.PaymentIntentStatusRequiresPaymentMethod:
		if tx.Status == driver.StatusDeclined {
			return tx, nil // a decline is an answer: nil error, as Lookup's contract says
		}
	case stripego.PaymentIntentStatusRequiresAction:
		tx.Status, tx.DeclineCode = driver.StatusDeclined, "authentication_required"
		return tx, nil
	case stripego.PaymentIntentStatusProcessing:
		return nil, &driver.Error{Kind: driver.KindTransient, Code: "processing",
			Message: "Stripe is still processing the payment; its outcome is not known yet"}
	}
	// Created but never confirmed: nothing was charged.
	return nil, notFound(fmt.Sprintf("PaymentIntent %s was never confirmed (%s)", pi.ID, pi.Status))
}

// findPaymentIntent finds the PaymentIntent of payrail payment id: by
// Search (eventually consistent) and then by listing the PaymentIntents
// created within the lookup window (strongly consistent). It returns a
// not-found error only when that listing was complete.
func (g *Gateway) findPaymentIntent(ctx context.Context, id string) (*stripego.PaymentIntent, error) {
	sp := &stripego.PaymentIntentSearchParams{}
	sp.Query = fmt.Sprintf("metadata['%s']:'%s'", MetaPaymentID, id)
	sp.Limit = stripego.Int64(10)
	sctx, sci := withCallInfo(ctx)
	var searchErr error
	for pi, err := range g.client.V1PaymentIntents.Search(sctx, sp) {
		if err != nil {
			searchErr = classify(sctx, err, sci)
			break
		}
		if pi.Metadata[MetaPaymentID] == id {
			// Search results may lag: read the current state.
			rp := &stripego.PaymentIntentRetrieveParams{}
			rp.AddExpand("latest_charge")
			rctx, rci := withCallInfo(ctx)
			fresh, err := g.client.V1PaymentIntents.Retrieve(rctx, pi.ID, rp)
			if err != nil {
				return nil, classify(rctx, err, rci)
			}
			return fresh, nil
		}
	}
	var de *driver.Error
	if searchErr != nil && !(errors.As(searchErr, &de) && de.Kind == driver.KindInvalidRequest) {
		// Search is down: the listing alone could miss an older
		// PaymentIntent, so it cannot prove absence.
		return nil, searchErr
	}
	lp := &stripego.PaymentIntentListParams{CreatedRange: &stripego.RangeQueryParams{GreaterThanOrEqual: time.Now().Add(-g.window).Unix()}}
	lp.Limit = stripego.Int64(100)
	lp.AddExpand("data.latest_charge")
	lctx, lci := withCallInfo(ctx)
	scanned := 0
	for pi, err := range g.client.V1PaymentIntents.List(lctx, lp) {
		if err != nil {
			return nil, classify(lctx, err, lci)
		}
		if pi.Metadata[MetaPaymentID] == id {
			return pi, nil
		}
		if scanned++; scanned >= g.maxScan {
			return nil, inconclusive(scanned)
		}
	}
	return nil, notFound("no PaymentIntent carries this payment id")
}

// findRefund finds the refund created with idempotency key key among the
// refunds created within the lookup window.
func (g *Gateway) findRefund(ctx context.Context, key string) (*driver.Transaction, error) {
	lp := &stripego.RefundListParams{CreatedRange: &stripego.RangeQueryParams{GreaterThanOrEqual: time.Now().Add(-g.window).Unix()}}
	lp.Limit = stripego.Int64(100)
	lp.AddExpand("data.charge")
	lctx, lci := withCallInfo(ctx)
	scanned := 0
	for re, err := range g.client.V1Refunds.List(lctx, lp) {
		if err != nil {
			return nil, classify(lctx, err, lci)
		}
		if re.Metadata[MetaKey] == key {
			ref := ""
			if re.PaymentIntent != nil {
				ref = re.PaymentIntent.ID
			}
			return txFromRefund(re, ref, "")
		}
		if scanned++; scanned >= g.maxScan {
			return nil, inconclusive(scanned)
		}
	}
	return nil, notFound("no refund was created with this key within the lookup window")
}

func inconclusive(scanned int) *driver.Error {
	return &driver.Error{Kind: driver.KindTransient, Code: "lookup_inconclusive",
		Message: fmt.Sprintf("scanned %d objects of the lookup window without finding the key; outcome unknown", scanned)}
}
