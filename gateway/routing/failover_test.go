package routing_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/gateway/routing"
	"github.com/payrail/payrail/payments"
)

func authReq(key, origin, pm string) payments.AuthorizeRequest {
	return payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: key, Amount: 1999, Currency: "EUR",
		PaymentMethod: pm, Origin: origin, CaptureMethod: payments.CaptureAutomatic}
}

// The primary gateway goes down: payments cascade to the backup (the
// primary refused them unprocessed), its breaker opens and later payments
// go to the backup first, without calling the primary. Payments run
// concurrently; every one is charged exactly once, at exactly one gateway.
func TestFailoverBreakerOpenNoDoubleCharge(t *testing.T) {
	fs := map[string]*faulty{"primary": newFaulty(), "backup": newFaulty()}
	r, err := routing.New(gateways(t, fs, "primary", "backup"), routing.DefaultPolicy("primary", "backup"),
		routing.WithBreaker(routing.BreakerSettings{ConsecutiveFailures: 3, OpenTimeout: time.Hour}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	p := newProc(t, r)
	ctx := context.Background()

	warm, err := p.Authorize(ctx, authReq("warm", "web", "pm_card_visa"))
	if err != nil || warm.Gateway != "primary" {
		t.Fatalf("healthy primary: %v %+v", err, warm)
	}
	fs["primary"].down.Store(true)
	const n = 64
	ids := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			key := fmt.Sprintf("order-%d", i)
			pay, err := p.Authorize(ctx, authReq(key, "web", "pm_card_visa"))
			if err != nil || pay.Status != payments.StatusCaptured || pay.Gateway != "backup" {
				t.Errorf("%s: %v %+v", key, err, pay)
				return
			}
			ids[i] = pay.ID
			// A client retry replays: still one charge.
			again, err := p.Authorize(ctx, authReq(key, "web", "pm_card_visa"))
			if err != nil || again.ID != pay.ID {
				t.Errorf("%s retry: %v", key, err)
			}
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id == "" {
			continue
		}
		if c := chargesOf(id, fs["primary"], fs["backup"]); c != 1 {
			t.Errorf("payment %s charged %d times", id, c)
		}
		if fs["primary"].Processed(id) != 0 {
			t.Errorf("payment %s reached the primary's books", id)
		}
	}
	if h := r.Health()[0]; h.Name != "primary" || h.Breaker != routing.BreakerOpen {
		t.Fatalf("primary breaker %+v", h)
	}
	// Once open, the primary is not even called: the trips happened within
	// the first few payments (2 attempts each), plus the requests already in
	// flight when it opened.
	if reached := fs["primary"].reached.Load(); reached > 3+8*2 {
		t.Fatalf("the primary was called %d times; the breaker should have cut it off", reached)
	}
	before := fs["primary"].reached.Load()
	if _, err := p.Authorize(ctx, authReq("after-open", "web", "pm_card_visa")); err != nil {
		t.Fatal(err)
	}
	if fs["primary"].reached.Load() != before {
		t.Fatal("an open primary was called")
	}
}

// An ambiguous outcome (the primary processed the charge, the answer was
// lost) never cascades: the backup is not called, and the payment settles
// at the primary through Lookup, charged once.
func TestNeverCascadeAfterAmbiguous(t *testing.T) {
	fs := map[string]*faulty{"primary": newFaulty(), "backup": newFaulty()}
	r, err := routing.New(gateways(t, fs, "primary", "backup"), routing.DefaultPolicy("primary", "backup"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	p := newProc(t, r)
	ctx := context.Background()
	fs["primary"].lost.Store(true)
	pay, err := p.Authorize(ctx, authReq("amb", "web", "pm_card_visa"))
	if err != nil || pay.Status != payments.StatusCaptured || pay.Gateway != "primary" {
		t.Fatalf("%v %+v", err, pay)
	}
	if fs["backup"].reached.Load() != 0 {
		t.Fatal("cascaded to the backup after an ambiguous outcome")
	}
	if c := chargesOf(pay.ID, fs["primary"], fs["backup"]); c != 1 {
		t.Fatalf("charged %d times", c)
	}

	// With Lookup down too, the outcome stays unknown: still no cascade.
	fs["primary"].lookupDown.Store(true)
	pay, err = p.Authorize(ctx, authReq("amb-2", "web", "pm_card_visa"))
	if !errors.Is(err, payments.ErrOutcomeUnknown) || pay.Status != payments.StatusProcessing || pay.Gateway != "primary" {
		t.Fatalf("%v %+v", err, pay)
	}
	if fs["backup"].reached.Load() != 0 {
		t.Fatal("cascaded to the backup after an ambiguous outcome")
	}
}

// Declines are retried on the next gateway only when the driver classified
// them soft and the payment's rule allows it.
func TestSoftDeclineRetryOnlyWhenSoftAndAllowed(t *testing.T) {
	const policy = `{"rules":[{"name":"pos","match":{"origins":["pos"]},"gateways":["a","b"],"retry_soft_declines":true}],
		"default":{"gateways":["a","b"]}}`
	cases := []struct {
		name, origin, pm string
		bDown            bool
		status           payments.Status
		gateway, decline string
		bReached         bool
	}{
		{"soft and allowed", "pos", "pm_card_softDecline", false, payments.StatusCaptured, "b", "", true},
		{"soft, not allowed", "web", "pm_card_softDecline", false, payments.StatusDeclined, "a", "try_again_later", false},
		{"hard, allowed", "pos", "pm_card_chargeDeclined", false, payments.StatusDeclined, "a", "card_declined", false},
		{"soft, next gateway down", "pos", "pm_card_softDecline", true, payments.StatusDeclined, "b", "try_again_later", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := map[string]*faulty{"a": newFaulty(), "b": newFaulty()}
			fs["a"].softPM = "pm_card_softDecline"
			fs["b"].down.Store(c.bDown)
			r, err := routing.New(gateways(t, fs, "a", "b"), mustPolicy(t, policy))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = r.Close() })
			p := newProc(t, r)
			pay, err := p.Authorize(context.Background(), authReq("k", c.origin, c.pm))
			if pay == nil || pay.Status != c.status || pay.Gateway != c.gateway || pay.DeclineCode != c.decline {
				t.Fatalf("payment %+v (err %v)", pay, err)
			}
			if (c.status == payments.StatusDeclined) != errors.Is(err, payments.ErrDeclined) {
				t.Fatalf("error %v for status %s", err, c.status)
			}
			if got := fs["b"].reached.Load() > 0; got != c.bReached {
				t.Fatalf("b reached = %v, want %v", got, c.bReached)
			}
			if c.status == payments.StatusCaptured {
				if n := chargesOf(pay.ID, fs["a"], fs["b"]); n != 1 {
					t.Fatalf("charged %d times", n)
				}
			}
		})
	}
}

// Async payments fail over too: the worker's first delivery cascades past a
// primary that refused the payment unprocessed.
func TestAsyncFailover(t *testing.T) {
	fs := map[string]*faulty{"primary": newFaulty(), "backup": newFaulty()}
	fs["primary"].down.Store(true)
	r, err := routing.New(gateways(t, fs, "primary", "backup"), routing.DefaultPolicy("primary", "backup"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	p := newProc(t, r, payments.WithMode(payments.ModeAsync))
	w, err := payments.NewWorker(p, payments.WithRecovery(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	pay, err := p.Authorize(context.Background(), authReq("async", "web", "pm_card_visa"))
	if err != nil || pay.Status != payments.StatusPending {
		t.Fatalf("%v %+v", err, pay)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := p.Get(context.Background(), payments.GetRequest{Merchant: "m", PaymentID: pay.ID})
		if err == nil && got.Status == payments.StatusCaptured {
			if got.Gateway != "backup" || chargesOf(pay.ID, fs["primary"], fs["backup"]) != 1 {
				t.Fatalf("settled %+v", got)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not captured: %+v %v", got, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The runbook's "switch an origin to an alternate gateway temporarily",
// under concurrent traffic (run with -race): pos payments go to whichever
// gateway the policy names when they are routed, web payments are never
// affected, invalid policies interleaved are refused, and nothing is
// charged twice.
func TestRuntimePolicySwitchUnderTraffic(t *testing.T) {
	fs := map[string]*faulty{"a": newFaulty(), "b": newFaulty(), "mock": newFaulty()}
	toA := mustPolicy(t, `{"rules":[{"name":"pos","match":{"origins":["pos"]},"gateways":["a"]}],"default":{"gateways":["b"]}}`)
	toMock := mustPolicy(t, `{"rules":[{"name":"pos","match":{"origins":["pos"]},"gateways":["mock"]}],"default":{"gateways":["b"]}}`)
	invalid := mustPolicy(t, `{"rules":[{"name":"pos","match":{"origins":["pos"]},"gateways":["nope"]}],"default":{"gateways":["a"]}}`)
	r, err := routing.New(gateways(t, fs, "a", "b", "mock"), toA)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	p := newProc(t, r)

	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	var refused atomic.Int64
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			var err error
			switch i % 3 {
			case 0:
				err = r.SetPolicy(toMock)
			case 1:
				if r.SetPolicy(invalid) != nil {
					refused.Add(1)
				}
			case 2:
				err = r.SetPolicy(toA)
			}
			if err != nil {
				t.Error(err)
				return
			}
			time.Sleep(200 * time.Microsecond)
		}
	})
	type result struct{ origin, id, gw string }
	var (
		resMu   sync.Mutex
		results []result
		seq     atomic.Int64
	)
	const maxPayments = 3000 // bounds the run (and the charge checks below) on fast machines
	for range 6 {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := seq.Add(1)
				if i > maxPayments {
					cancel() // enough traffic: stop the policy switcher too
					return
				}
				origin := "pos"
				if i%2 == 0 {
					origin = "web"
				}
				pay, err := p.Authorize(context.Background(), authReq(fmt.Sprintf("k-%d", i), origin, "pm_card_visa"))
				if err != nil || pay.Status != payments.StatusCaptured {
					t.Errorf("payment %d: %v %+v", i, err, pay)
					return
				}
				resMu.Lock()
				results = append(results, result{origin, pay.ID, pay.Gateway})
				resMu.Unlock()
			}
		})
	}
	wg.Wait()
	seen := map[string]int{}
	total := 0
	for _, res := range results {
		total++
		seen[res.origin+"→"+res.gw]++
		switch {
		case res.origin == "web" && res.gw != "b":
			t.Errorf("web payment %s routed to %s", res.id, res.gw)
		case res.origin == "pos" && res.gw != "a" && res.gw != "mock":
			t.Errorf("pos payment %s routed to %s", res.id, res.gw)
		}
		if c := chargesOf(res.id, fs["a"], fs["b"], fs["mock"]); c != 1 {
			t.Errorf("payment %s charged %d times", res.id, c)
		}
	}
	if total < 50 || seen["pos→a"] == 0 || seen["pos→mock"] == 0 || refused.Load() == 0 {
		t.Fatalf("too little exercised: %d payments, %v, %d refused", total, seen, refused.Load())
	}
	// After the switch settles, new pos payments follow the last policy.
	if err := r.SetPolicy(toMock); err != nil {
		t.Fatal(err)
	}
	pay, err := p.Authorize(context.Background(), authReq("after", "pos", "pm_card_visa"))
	if err != nil || pay.Gateway != "mock" {
		t.Fatalf("%v %+v", err, pay)
	}
}

// An open gateway is the last resort of its chain, not refused: when the
// healthy gateways cannot take a payment, the open one still may.
func TestOpenGatewayIsLastResort(t *testing.T) {
	fs := map[string]*faulty{"primary": newFaulty(), "backup": newFaulty()}
	r, err := routing.New(gateways(t, fs, "primary", "backup"), routing.DefaultPolicy("primary", "backup"),
		routing.WithBreaker(routing.BreakerSettings{ConsecutiveFailures: 1, OpenTimeout: time.Hour}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	p := newProc(t, r)
	ctx := context.Background()
	fs["primary"].down.Store(true)
	if pay, err := p.Authorize(ctx, authReq("trip", "web", "pm_card_visa")); err != nil || pay.Gateway != "backup" {
		t.Fatalf("%v %+v", err, pay)
	}
	if r.Health()[0].Breaker != routing.BreakerOpen {
		t.Fatal("primary breaker not open")
	}
	fs["primary"].down.Store(false)
	fs["backup"].down.Store(true)
	pay, err := p.Authorize(ctx, authReq("last-resort", "web", "pm_card_visa"))
	if err != nil || pay.Gateway != "primary" || pay.Status != payments.StatusCaptured {
		t.Fatalf("%v %+v", err, pay)
	}
	if c := chargesOf(pay.ID, fs["primary"], fs["backup"]); c != 1 {
		t.Fatalf("charged %d times", c)
	}
}
