package payments_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/driver"
	"github.com/payrail/payrail/gateway/mock"
	"github.com/payrail/payrail/payments"
	"github.com/payrail/payrail/telemetry"
)

// A processor needs a gateway; the bus, the idempotency store and the
// payment store default to in-memory implementations.
func ExampleNew() {
	ctx := context.Background()
	g, err := gateway.Open(ctx, "mock://") // drivers register themselves: import _ ".../gateway/mock"
	if err != nil {
		log.Fatal(err)
	}
	defer closeLogged("gateway", g.Close)
	p, err := payments.New(payments.WithGateway(g))
	if err != nil {
		log.Fatal(err)
	}
	defer closeLogged("processor", p.Close)

	pay, err := p.Authorize(ctx, payments.AuthorizeRequest{
		Merchant:       "acme",
		IdempotencyKey: "order-1001",
		Amount:         1999, // 19.99 EUR in minor units
		Currency:       "EUR",
		PaymentMethod:  "pm_card_visa",
		Origin:         "web",
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(pay.Status, pay.AmountCaptured, pay.Currency)
	// Output: captured 1999 EUR
}

// A retry with the same idempotency key returns the first payment instead
// of charging again.
func ExampleProcessor_Authorize() {
	ctx := context.Background()
	p, closeAll, err := newMockProcessor()
	if err != nil {
		log.Fatal(err)
	}
	defer closeAll()

	req := payments.AuthorizeRequest{
		Merchant: "acme", IdempotencyKey: "order-1002",
		Amount: 2500, Currency: "usd", PaymentMethod: "pm_card_visa",
	}
	first, err := p.Authorize(ctx, req)
	if err != nil {
		log.Fatal(err)
	}
	retry, err := p.Authorize(ctx, req) // e.g. after a timeout on the client's side
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(first.Status, first.Currency, retry.ID == first.ID)

	req.Amount = 3000 // the same key for a different request
	_, err = p.Authorize(ctx, req)
	fmt.Println(errors.Is(err, payments.ErrIdempotencyReused))
	// Output:
	// captured USD true
	// true
}

// A decline is an error matching payments.ErrDeclined; the declined
// payment is returned with it, and the *payments.Error carries the
// issuer's reason.
func ExampleProcessor_Authorize_declined() {
	ctx := context.Background()
	p, closeAll, err := newMockProcessor()
	if err != nil {
		log.Fatal(err)
	}
	defer closeAll()

	pay, err := p.Authorize(ctx, payments.AuthorizeRequest{
		Merchant: "acme", IdempotencyKey: "order-1003",
		Amount: 500, Currency: "USD", PaymentMethod: "pm_card_insufficientFunds",
	})
	var perr *payments.Error
	switch {
	case errors.Is(err, payments.ErrDeclined) && errors.As(err, &perr):
		fmt.Println(pay.Status, perr.Code, perr.DeclineCode, perr.HTTPStatus())
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Println("approved:", pay.Status)
	}
	// Output: declined payment_declined insufficient_funds 402
}

// With manual capture, Authorize only holds the funds; Capture takes all
// of them or, as here, part (the rest of the authorization is released).
func ExampleProcessor_Capture() {
	ctx := context.Background()
	p, closeAll, err := newMockProcessor()
	if err != nil {
		log.Fatal(err)
	}
	defer closeAll()

	pay, err := p.Authorize(ctx, payments.AuthorizeRequest{
		Merchant: "acme", IdempotencyKey: "order-1004", CaptureMethod: payments.CaptureManual,
		Amount: 10000, Currency: "EUR", PaymentMethod: "pm_card_visa",
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(pay.Status, pay.AmountCaptured)

	// The order shipped partly: capture 80.00 of the 100.00 held.
	pay, err = p.Capture(ctx, payments.CaptureRequest{
		Merchant: "acme", PaymentID: pay.ID, Amount: 8000, IdempotencyKey: "order-1004-capture",
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(pay.Status, pay.AmountCaptured)
	// Output:
	// authorized 0
	// captured 8000
}

// Void cancels an authorization that was not captured. Operations the
// state machine does not allow fail with ErrInvalidTransition.
func ExampleProcessor_Void() {
	ctx := context.Background()
	p, closeAll, err := newMockProcessor()
	if err != nil {
		log.Fatal(err)
	}
	defer closeAll()

	pay, err := p.Authorize(ctx, payments.AuthorizeRequest{
		Merchant: "acme", IdempotencyKey: "order-1005", CaptureMethod: payments.CaptureManual,
		Amount: 4200, Currency: "GBP", PaymentMethod: "pm_card_mastercard",
	})
	if err != nil {
		log.Fatal(err)
	}
	pay, err = p.Void(ctx, payments.VoidRequest{Merchant: "acme", PaymentID: pay.ID})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(pay.Status)

	_, err = p.Capture(ctx, payments.CaptureRequest{Merchant: "acme", PaymentID: pay.ID})
	fmt.Println(errors.Is(err, payments.ErrInvalidTransition))
	// Output:
	// voided
	// true
}

// Refund returns part or all of what was captured; a payment may be
// refunded several times until nothing is left, and is refunded then.
func ExampleProcessor_Refund() {
	ctx := context.Background()
	p, closeAll, err := newMockProcessor()
	if err != nil {
		log.Fatal(err)
	}
	defer closeAll()

	pay, err := p.Authorize(ctx, payments.AuthorizeRequest{
		Merchant: "acme", IdempotencyKey: "order-1006",
		Amount: 3000, Currency: "EUR", PaymentMethod: "pm_card_visa",
	})
	if err != nil {
		log.Fatal(err)
	}
	r, err := p.Refund(ctx, payments.RefundRequest{
		Merchant: "acme", PaymentID: pay.ID, Amount: 1000, IdempotencyKey: "return-1",
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.Amount, r.Status)

	r, err = p.Refund(ctx, payments.RefundRequest{Merchant: "acme", PaymentID: pay.ID}) // the rest
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.Amount, r.Status)

	pay, err = p.Get(ctx, payments.GetRequest{Merchant: "acme", PaymentID: pay.ID})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(pay.Status, pay.AmountRefunded, len(pay.Refunds))
	// Output:
	// 1000 succeeded
	// 2000 succeeded
	// refunded 3000 2
}

// Get reads a payment of a merchant; another merchant's payment is not
// found.
func ExampleProcessor_Get() {
	ctx := context.Background()
	p, closeAll, err := newMockProcessor()
	if err != nil {
		log.Fatal(err)
	}
	defer closeAll()

	created, err := p.Authorize(ctx, payments.AuthorizeRequest{
		Merchant: "acme", IdempotencyKey: "order-1007",
		Amount: 1250, Currency: "EUR", PaymentMethod: "pm_card_visa",
		Metadata: map[string]string{"order": "1007"},
	})
	if err != nil {
		log.Fatal(err)
	}
	pay, err := p.Get(ctx, payments.GetRequest{Merchant: "acme", PaymentID: created.ID})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(pay.Status, pay.Amount, pay.Metadata["order"])

	_, err = p.Get(ctx, payments.GetRequest{Merchant: "globex", PaymentID: created.ID})
	fmt.Println(errors.Is(err, payments.ErrNotFound))
	// Output:
	// captured 1250 1007
	// true
}

// An async payment is accepted as pending and completed by a Worker;
// Wait returns it once its status is final.
func ExampleProcessor_Wait() {
	ctx := context.Background()
	p, closeAll, err := newMockProcessor()
	if err != nil {
		log.Fatal(err)
	}
	defer closeAll()
	w, err := payments.NewWorker(p) // consumes the processor's in-memory bus
	if err != nil {
		log.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(context.Background()) }()

	pay, err := p.Authorize(ctx, payments.AuthorizeRequest{
		Merchant: "acme", IdempotencyKey: "order-1008", Mode: payments.ModeAsync,
		Amount: 1200, Currency: "GBP", PaymentMethod: "pm_card_visa",
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(pay.Status)

	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pay, err = p.Wait(wctx, payments.GetRequest{Merchant: "acme", PaymentID: pay.ID})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(pay.Status, pay.AmountCaptured)

	if err := w.Shutdown(wctx); err != nil {
		log.Fatal(err)
	}
	if err := <-runErr; err != nil {
		log.Fatal(err)
	}
	// Output:
	// pending
	// captured 1200
}

// The Handler mounts under a prefix of an existing mux: strip the prefix
// with http.StripPrefix and tell the handler with WithBasePath, which it
// uses in Location headers.
func ExampleNewHandler() {
	p, closeAll, err := newMockProcessor()
	if err != nil {
		log.Fatal(err)
	}
	defer closeAll()
	auth, err := payments.APIKeys(map[string]string{"sk_test_123": "acme"}, nil)
	if err != nil {
		log.Fatal(err)
	}
	api, err := payments.NewHandler(p, auth, payments.WithBasePath("/v1"))
	if err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux() // the service's own mux and routes
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "1.4.2")
	})
	mux.Handle("/v1/", http.StripPrefix("/v1", api))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	res, err := send(http.MethodPost, srv.URL+"/v1/payments", "sk_test_123", "order-1009",
		`{"amount":1999,"currency":"EUR","payment_method":"pm_card_visa","origin":"web"}`)
	if err != nil {
		log.Fatal(err)
	}
	loc := res.Header.Get("Location")
	fmt.Println(res.StatusCode, strings.HasPrefix(loc, "/v1/payments/pay_"))

	res, err = send(http.MethodGet, srv.URL+loc, "sk_test_123", "", "")
	if err != nil {
		log.Fatal(err)
	}
	var pay payments.Payment
	err = json.NewDecoder(res.Body).Decode(&pay)
	closeLogged("response body", res.Body.Close)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.StatusCode, pay.Status, "/v1/payments/"+pay.ID == loc)
	// Output:
	// 201 true
	// 200 captured true
}

// The one shutdown order: stop routing traffic to the handler, stop the
// HTTP server, stop the processor, let the worker finish the accepted
// async payments, then close the processor and what was opened for it.
// Every step has its own deadline. This is what the reference server
// (examples/server) does on SIGTERM.
func ExampleProcessor_Shutdown() {
	ctx := context.Background()
	// Build: drivers, processor, reconciler and worker, handler; serve.
	g, err := gateway.Open(ctx, "mock://?latency=5ms")
	if err != nil {
		log.Fatal(err)
	}
	store := payments.NewMemoryStore() // owned here: it outlives the processor
	p, err := payments.New(payments.WithGateway(g), payments.WithStore(store),
		payments.WithDrainBudget(10*time.Second)) // what the shutdown below allows
	if err != nil {
		log.Fatal(err)
	}
	rec, err := payments.NewReconciler(p)
	if err != nil {
		log.Fatal(err)
	}
	w, err := payments.NewWorker(p, payments.WithReconciler(rec))
	if err != nil {
		log.Fatal(err)
	}
	api, err := payments.NewHandler(p, payments.DevAuthenticator())
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(context.Background()) }()

	// Traffic: an async payment, accepted (202) and queued.
	req, err := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+"/payments",
		strings.NewReader(`{"amount":700,"currency":"EUR","payment_method":"pm_card_visa"}`))
	if err != nil {
		log.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "order-1010")
	req.Header.Set("Prefer", "respond-async")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	var accepted payments.Payment
	err = json.NewDecoder(res.Body).Decode(&accepted)
	closeLogged("response body", res.Body.Close)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.StatusCode, accepted.Status)

	// SIGTERM. 1. Fail /readyz so that load balancers stop sending traffic.
	api.SetDraining(true)
	// 2. Close the listener and let requests in flight finish.
	step, cancel := context.WithTimeout(ctx, 10*time.Second)
	if err := srv.Shutdown(step); err != nil {
		log.Print("shutdown: HTTP: ", err)
	}
	cancel()
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		log.Print("shutdown: serve: ", err)
	}
	// 3. Refuse new operations and wait for those in flight.
	step, cancel = context.WithTimeout(ctx, 10*time.Second)
	if err := p.Shutdown(step); err != nil {
		log.Print("shutdown: processor: ", err)
	}
	cancel()
	_, err = p.Authorize(ctx, payments.AuthorizeRequest{Merchant: "dev", IdempotencyKey: "late",
		Amount: 100, Currency: "EUR", PaymentMethod: "pm_card_visa"})
	fmt.Println("after Processor.Shutdown:", errors.Is(err, payments.ErrUnavailable))
	// 4. Process every accepted async payment, then stop the worker.
	step, cancel = context.WithTimeout(ctx, 10*time.Second)
	if err := w.Shutdown(step); err != nil {
		log.Print("shutdown: worker: ", err) // Processor.Unfinished names what was left
	}
	cancel()
	if err := <-runErr; err != nil {
		log.Print("shutdown: worker run: ", err)
	}
	// 5. Release the processor, then what was opened for it.
	closeLogged("processor", p.Close)
	closeLogged("payment store", store.Close)
	closeLogged("gateway", g.Close)

	done, err := store.Get(ctx, "dev", accepted.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(done.Status)
	// Output:
	// 202 pending
	// after Processor.Shutdown: true
	// captured
}

// The Reconciler settles payments whose gateway outcome is unknown. Here
// the gateway charges but its answer is lost, and its Lookup is down too:
// the payment stays processing. Once the gateway answers again, a sweep
// looks the authorization up and settles the payment. In a service, pass
// the Reconciler to the Worker (WithReconciler), which runs it, or call
// its Run method.
func ExampleNewReconciler() {
	ctx := context.Background()
	lossy := &lossyGateway{Mock: mock.New()}
	lossy.down.Store(true)
	g, err := gateway.New("lossy", lossy)
	if err != nil {
		log.Fatal(err)
	}
	p, err := payments.New(payments.WithGateway(g),
		payments.WithRetryPolicy(payments.RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Millisecond}))
	if err != nil {
		log.Fatal(err)
	}
	defer closeLogged("processor", p.Close)

	pay, err := p.Authorize(ctx, payments.AuthorizeRequest{
		Merchant: "acme", IdempotencyKey: "order-1011",
		Amount: 4200, Currency: "EUR", PaymentMethod: "pm_card_visa",
	})
	var perr *payments.Error
	if !errors.Is(err, payments.ErrOutcomeUnknown) || !errors.As(err, &perr) {
		log.Fatalf("want an unknown outcome: %v", err)
	}
	fmt.Println(pay.Status, perr.Code)

	lossy.down.Store(false) // the gateway answers again
	rec, err := payments.NewReconciler(p,
		payments.WithReconcileStaleAfter(time.Nanosecond)) // default: minutes, longer than any request
	if err != nil {
		log.Fatal(err)
	}
	res, err := rec.Sweep(ctx)
	if err != nil {
		log.Fatal(err)
	}
	pay, err = p.Get(ctx, payments.GetRequest{Merchant: "acme", PaymentID: pay.ID})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Settled, pay.Status, pay.AmountCaptured)
	// Output:
	// processing payment_outcome_unknown
	// 1 captured 4200
}

// One telemetry.Providers value, given to the processor and to the
// gateway, makes every component report to the same providers; here an
// in-memory span recorder stands for the application's exporter.
func ExampleWithTelemetry() {
	ctx := context.Background()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer closeLogged("tracer provider", func() error { return tp.Shutdown(context.Background()) })
	tel := telemetry.Providers{TracerProvider: tp} // nil fields: the application's globals

	g, err := gateway.Open(ctx, "mock://", gateway.WithTelemetry(tel))
	if err != nil {
		log.Fatal(err)
	}
	defer closeLogged("gateway", g.Close)
	p, err := payments.New(payments.WithGateway(g), payments.WithTelemetry(tel))
	if err != nil {
		log.Fatal(err)
	}
	defer closeLogged("processor", p.Close)

	if _, err := p.Authorize(ctx, payments.AuthorizeRequest{
		Merchant: "acme", IdempotencyKey: "order-1012",
		Amount: 990, Currency: "EUR", PaymentMethod: "pm_card_visa",
	}); err != nil {
		log.Fatal(err)
	}
	ended := spans.Ended()
	byID := map[trace.SpanID]string{}
	for _, s := range ended {
		byID[s.SpanContext().SpanID()] = s.Name()
	}
	var lines []string
	for _, s := range ended {
		parent, ok := byID[s.Parent().SpanID()]
		if !ok {
			parent = "-"
		}
		lines = append(lines, s.Name()+" (parent: "+parent+")")
	}
	slices.Sort(lines)
	fmt.Println(strings.Join(lines, "\n"))
	// Output:
	// begin (parent: payments.authorize)
	// complete (parent: payments.authorize)
	// gateway.authorize (parent: payments.authorize)
	// payments.authorize (parent: -)
}

// newMockProcessor returns a processor over the mock gateway with
// in-memory defaults, as ExampleNew builds it, and a func that closes the
// processor and then the gateway.
func newMockProcessor(opts ...payments.Option) (*payments.Processor, func(), error) {
	g, err := gateway.Open(context.Background(), "mock://")
	if err != nil {
		return nil, nil, err
	}
	p, err := payments.New(append([]payments.Option{payments.WithGateway(g)}, opts...)...)
	if err != nil {
		closeLogged("gateway", g.Close)
		return nil, nil, err
	}
	return p, func() {
		closeLogged("processor", p.Close)
		closeLogged("gateway", g.Close)
	}, nil
}

// closeLogged closes a resource at the end of an example, logging a
// failure (to standard error: not part of the example's output).
func closeLogged(what string, close func() error) {
	if err := close(); err != nil {
		log.Printf("closing %s: %v", what, err)
	}
}

// send makes an API request with a bearer key, an optional idempotency
// key and an optional JSON body.
func send(method, url, apiKey, idemKey, body string) (*http.Response, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return http.DefaultClient.Do(req)
}

// lossyGateway is the mock gateway behind a connection that, while down
// is set, loses every authorization's answer after the provider processed
// it, and cannot reach Lookup: the outcome is unknown.
type lossyGateway struct {
	*mock.Mock
	down atomic.Bool
}

func (g *lossyGateway) Authorize(ctx context.Context, r *driver.AuthorizeRequest) (*driver.Transaction, error) {
	tx, err := g.Mock.Authorize(ctx, r)
	if err == nil && g.down.Load() {
		return nil, &driver.Error{Kind: driver.KindTransient, Code: "timeout", Message: "answer lost after sending"}
	}
	return tx, err
}

func (g *lossyGateway) Lookup(ctx context.Context, key string) (*driver.Transaction, error) {
	if g.down.Load() {
		return nil, &driver.Error{Kind: driver.KindTransient, Code: "unavailable", NotProcessed: true}
	}
	return g.Mock.Lookup(ctx, key)
}
