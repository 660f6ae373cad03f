package payments

import (
	"context"
	"time"
)

// Final reports whether a payment's status is an outcome its caller can act
// on: anything but pending and processing (requires_review included: it
// needs a person, not more waiting).
func (s Status) Final() bool { return s != StatusPending && s != StatusProcessing }

// Wait returns the merchant's payment once its status is Final — for an
// async payment, once the worker has processed it — polling the payment
// store with a growing interval (10ms up to 1s). It returns the payment as
// last read and ctx's error if ctx ends first, or the error of a failed
// read (ErrNotFound for an unknown payment).
func (p *Processor) Wait(ctx context.Context, req GetRequest) (*Payment, error) {
	interval := 10 * time.Millisecond
	for {
		pay, err := p.Get(ctx, req)
		if err != nil {
			return nil, err
		}
		if pay.Status.Final() {
			return pay, nil
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return pay, ctx.Err()
		case <-t.C:
		}
		interval = min(2*interval, time.Second)
	}
}
