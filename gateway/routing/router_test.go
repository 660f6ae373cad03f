package routing_test

import (
	"context"
	"errors"
	"math"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/mock"
	"github.com/payrail/payrail/gateway/routing"
)

func newRouter(t *testing.T, policy string, opts ...routing.Option) (*routing.Router, map[string]*faulty) {
	t.Helper()
	fs := map[string]*faulty{"a": newFaulty(), "b": newFaulty(), "c": newFaulty()}
	r, err := routing.New(gateways(t, fs, "a", "b", "c"), mustPolicy(t, policy), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r, fs
}

func route(t *testing.T, r *routing.Router, req gateway.RouteRequest) []string {
	t.Helper()
	chain, err := r.Route(context.Background(), &req)
	if err != nil {
		t.Fatal(err)
	}
	return names(chain)
}

func TestRouteMatchesRulesInOrder(t *testing.T) {
	r, _ := newRouter(t, samplePolicy)
	cases := []struct {
		req  gateway.RouteRequest
		want []string
	}{
		{gateway.RouteRequest{Origin: "pos", Currency: "EUR", Amount: 100000}, []string{"b", "a"}}, // pos-big-eur
		{gateway.RouteRequest{Origin: "POS", Currency: "EUR", Amount: 99999}, []string{"a", "b"}},  // below min → pos
		{gateway.RouteRequest{Origin: "pos", Currency: "GBP", Amount: 500000}, []string{"a", "b"}}, // other currency → pos
		{gateway.RouteRequest{Origin: "web", Currency: "EUR", Amount: 100}, []string{"c", "a"}},    // default
		{gateway.RouteRequest{Currency: "EUR", Amount: 100}, []string{"c", "a"}},                   // no origin → default
		{gateway.RouteRequest{Origin: "partner-x", Merchant: "other", Currency: "EUR", Amount: 1}, []string{"c", "a"}},
	}
	for _, c := range cases {
		if got := route(t, r, c.req); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Route(%+v) = %v, want %v", c.req, got, c.want)
		}
	}
}

// A weighted split picks the first gateway in proportion to the weights,
// deterministically per payment id; the rest of the chain follows.
func TestRouteWeightedSplitIsDeterministic(t *testing.T) {
	r, _ := newRouter(t, samplePolicy)
	counts := map[string]int{}
	const n = 20000
	for i := range n {
		req := gateway.RouteRequest{PaymentID: "pay_" + strconv.Itoa(i), Origin: "partner-x", Merchant: "acme", Currency: "EUR", Amount: 1}
		first := route(t, r, req)
		again := route(t, r, req)
		if !reflect.DeepEqual(first, again) {
			t.Fatalf("payment %s routed %v then %v", req.PaymentID, first, again)
		}
		switch first[0] {
		case "a":
			if !reflect.DeepEqual(first, []string{"a", "b", "c"}) {
				t.Fatalf("chain %v", first)
			}
		case "b":
			if !reflect.DeepEqual(first, []string{"b", "a", "c"}) {
				t.Fatalf("chain %v", first)
			}
		default:
			t.Fatalf("unweighted gateway first: %v", first)
		}
		counts[first[0]]++
	}
	// 10% ± 5 standard deviations of a binomial(20000, 0.1).
	share := float64(counts["b"]) / n
	if sd := math.Sqrt(0.1 * 0.9 / n); math.Abs(share-0.1) > 5*sd {
		t.Fatalf("b got %.4f of the traffic, want 0.1 (counts %v)", share, counts)
	}
}

// Only health failures trip a breaker; declines and invalid requests are
// the gateway answering. An open gateway moves to the end of the chain;
// calls to it are never refused. Once the open timeout passes a probe that
// succeeds closes it again.
func TestBreakerCountsOnlyHealthFailures(t *testing.T) {
	r, fs := newRouter(t, `{"default":{"gateways":["a","b","c"]}}`,
		routing.WithBreaker(routing.BreakerSettings{ConsecutiveFailures: 3, OpenTimeout: 100 * time.Millisecond}))
	ga, _ := r.Gateway("a")
	ctx := context.Background()
	auth := func(pm string) error {
		_, err := ga.Authorize(ctx, &gateway.AuthorizeRequest{IdempotencyKey: pm + strconv.Itoa(int(time.Now().UnixNano())),
			Amount: 100, Currency: "EUR", PaymentMethod: pm, CaptureMethod: gateway.CaptureAutomatic})
		return err
	}
	for range 10 {
		if err := auth("pm_card_chargeDeclined"); !errors.Is(err, gateway.ErrDeclined) {
			t.Fatalf("decline: %v", err)
		}
		if err := auth("tok_invalid"); !errors.Is(err, gateway.ErrInvalidRequest) {
			t.Fatalf("invalid: %v", err)
		}
	}
	if h := r.Health()[0]; h.Breaker != routing.BreakerClosed || h.TotalFailures != 0 {
		t.Fatalf("declines and invalid requests counted as failures: %+v", h)
	}
	fs["a"].down.Store(true)
	for range 3 {
		if err := auth("pm_card_visa"); !errors.Is(err, gateway.ErrTransient) {
			t.Fatalf("down: %v", err)
		}
	}
	if h := r.Health()[0]; h.Breaker != routing.BreakerOpen {
		t.Fatalf("breaker %+v after 3 failures", h)
	}
	if got := route(t, r, gateway.RouteRequest{}); !reflect.DeepEqual(got, []string{"b", "c", "a"}) {
		t.Fatalf("route with a open = %v, want [b c a]", got)
	}
	// A call to the open gateway still goes through (unrecorded).
	reached := fs["a"].reached.Load()
	fs["a"].down.Store(false)
	if err := auth("pm_card_visa"); err != nil {
		t.Fatalf("call to an open gateway: %v", err)
	}
	if fs["a"].reached.Load() != reached+1 {
		t.Fatal("the open breaker refused the call")
	}
	if h := r.Health()[0]; h.Breaker != routing.BreakerOpen {
		t.Fatalf("a call while open changed the breaker: %+v", h)
	}
	time.Sleep(120 * time.Millisecond)
	if got := route(t, r, gateway.RouteRequest{}); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Fatalf("route after the open timeout = %v, want [a b c]", got)
	}
	if h := r.Health()[0]; h.Breaker != routing.BreakerHalfOpen {
		t.Fatalf("breaker %+v after the open timeout", h)
	}
	if err := auth("pm_card_visa"); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if h := r.Health()[0]; h.Breaker != routing.BreakerClosed {
		t.Fatalf("breaker %+v after a successful probe", h)
	}
}

// When every gateway of the chain is open, Route returns the chain as is.
func TestRouteAllOpenKeepsChain(t *testing.T) {
	var mu sync.Mutex
	var changes []string
	r, fs := newRouter(t, `{"default":{"gateways":["a","b"]}}`,
		routing.WithBreaker(routing.BreakerSettings{ConsecutiveFailures: 1, OpenTimeout: time.Hour}),
		routing.WithBreakerObserver(func(g string, from, to routing.BreakerState) {
			mu.Lock()
			changes = append(changes, g+":"+string(from)+"→"+string(to))
			mu.Unlock()
		}))
	for _, n := range []string{"a", "b"} {
		fs[n].down.Store(true)
		g, _ := r.Gateway(n)
		_, _ = g.Lookup(context.Background(), "k")
	}
	if got := route(t, r, gateway.RouteRequest{}); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("all open: %v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if !reflect.DeepEqual(changes, []string{"a:closed→open", "b:closed→open"}) {
		t.Fatalf("observer saw %v", changes)
	}
}

func TestSetPolicyRefusesInvalidWhole(t *testing.T) {
	r, _ := newRouter(t, samplePolicy)
	before := r.Policy()
	v := r.Version()
	bad := mustPolicy(t, `{"rules":[{"name":"pos","match":{"origins":["pos"]},"gateways":["b"]}],"default":{"gateways":["nope"]}}`)
	err := r.SetPolicy(bad)
	var pe *routing.PolicyError
	if !errors.As(err, &pe) || len(pe.Problems) != 1 || pe.Problems[0].Field != "default.gateways[0]" {
		t.Fatalf("SetPolicy(bad) = %v", err)
	}
	if !reflect.DeepEqual(r.Policy(), before) || r.Version() != v {
		t.Fatal("a refused policy changed the router")
	}
	if got := route(t, r, gateway.RouteRequest{Origin: "pos", Currency: "GBP", Amount: 1}); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("route after refused policy: %v", got)
	}
	good := mustPolicy(t, `{"rules":[{"name":"pos","match":{"origins":["pos"],"currencies":["gbp"]},"gateways":["b"]}],"default":{"gateways":["c"]}}`)
	if err := r.SetPolicy(good); err != nil {
		t.Fatal(err)
	}
	if r.Version() != v+1 {
		t.Fatalf("version %d, want %d", r.Version(), v+1)
	}
	if got := r.Policy().Rules[0].Match.Currencies; !reflect.DeepEqual(got, []string{"GBP"}) {
		t.Fatalf("currencies not normalised: %v", got)
	}
	if got := route(t, r, gateway.RouteRequest{Origin: "pos", Currency: "GBP", Amount: 1}); !reflect.DeepEqual(got, []string{"b"}) {
		t.Fatalf("route after new policy: %v", got)
	}
	// Policy returns a copy.
	p := r.Policy()
	p.Default.Gateways[0] = "a"
	if r.Policy().Default.Gateways[0] != "c" {
		t.Fatal("Policy shares state with the router")
	}
	if _, err := r.SetPolicyIf(good, v); !errors.Is(err, routing.ErrVersionMismatch) {
		t.Fatalf("SetPolicyIf with a stale version: %v", err)
	}
	if nv, err := r.SetPolicyIf(good, v+1); err != nil || nv != v+2 {
		t.Fatalf("SetPolicyIf: %d %v", nv, err)
	}
}

func TestNewRefusesBadSetup(t *testing.T) {
	fs := map[string]*faulty{"a": newFaulty()}
	g := gateways(t, fs, "a")
	if _, err := routing.New(nil, routing.DefaultPolicy("a")); err == nil {
		t.Fatal("no gateways accepted")
	}
	if _, err := routing.New([]*gateway.Gateway{g[0], g[0]}, routing.DefaultPolicy("a")); err == nil {
		t.Fatal("duplicate names accepted")
	}
	if _, err := routing.New(g, routing.DefaultPolicy("b")); !errors.Is(err, routing.ErrInvalidPolicy) {
		t.Fatalf("policy naming an unknown gateway: %v", err)
	}
}

func TestSoftDeclinePolicy(t *testing.T) {
	r, _ := newRouter(t, samplePolicy)
	var sp gateway.SoftDeclinePolicy = r
	if !sp.AllowSoftDeclineRetry(&gateway.RouteRequest{Origin: "pos", Currency: "GBP", Amount: 1}, "a", "try_again_later") {
		t.Fatal("pos rule allows soft-decline retries")
	}
	if sp.AllowSoftDeclineRetry(&gateway.RouteRequest{Origin: "pos", Currency: "GBP", Amount: 1}, "c", "try_again_later") {
		t.Fatal("retry allowed from a gateway outside the rule's chain")
	}
	if sp.AllowSoftDeclineRetry(&gateway.RouteRequest{Origin: "web", Currency: "GBP", Amount: 1}, "c", "try_again_later") {
		t.Fatal("default route does not allow soft-decline retries")
	}
}

func TestGatewaysAndClose(t *testing.T) {
	r, fs := newRouter(t, samplePolicy)
	if got := names(r.Gateways()); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Fatalf("Gateways = %v", got)
	}
	if _, ok := r.Gateway("zz"); ok {
		t.Fatal("unknown gateway found")
	}
	g, _ := r.Gateway("b")
	var mm *mock.Mock
	if !g.As(&mm) || mm != fs["b"].Mock {
		t.Fatal("As does not reach the driver behind the breaker")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Route(context.Background(), &gateway.RouteRequest{}); !errors.Is(err, gateway.ErrClosed) {
		t.Fatalf("Route after Close: %v", err)
	}
	if _, err := g.Lookup(context.Background(), "k"); !errors.Is(err, gateway.ErrClosed) {
		t.Fatalf("gateway after Close: %v", err)
	}
}

// Route and SetPolicy race freely (go test -race): every Route sees one
// whole policy.
func TestSetPolicyConcurrentWithRoute(t *testing.T) {
	r, _ := newRouter(t, `{"default":{"gateways":["a","b"]}}`)
	p1 := mustPolicy(t, `{"rules":[{"name":"pos","match":{"origins":["pos"]},"gateways":["b","c"]}],"default":{"gateways":["a","b"]}}`)
	p2 := mustPolicy(t, `{"rules":[{"name":"pos","match":{"origins":["pos"]},"gateways":["c","a"]}],"default":{"gateways":["a","b"]}}`)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			p := p1
			if i%2 == 1 {
				p = p2
			}
			if err := r.SetPolicy(p); err != nil {
				t.Error(err)
				return
			}
		}
	})
	allowed := map[string]bool{"b,c": true, "c,a": true, "a,b": true}
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				chain, err := r.Route(ctx, &gateway.RouteRequest{Origin: "pos", Currency: "EUR", Amount: 5})
				if err != nil {
					t.Error(err)
					return
				}
				if k := names(chain); !allowed[k[0]+","+k[1]] {
					t.Errorf("torn chain %v", k)
					return
				}
			}
		})
	}
	wg.Wait()
}

// A call through the router's breaker-guarded gateway is traced once, not
// again by the caller's gateway inside it.
func TestRoutedCallsTracedOnce(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	inner, err := gateway.New("a", newFaulty(), gateway.WithTracerProvider(tp))
	if err != nil {
		t.Fatal(err)
	}
	r, err := routing.New([]*gateway.Gateway{inner}, routing.DefaultPolicy("a"), routing.WithGatewayOptions(gateway.WithTracerProvider(tp)))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	g, _ := r.Gateway("a")
	if _, err := g.Authorize(context.Background(), &gateway.AuthorizeRequest{IdempotencyKey: "k", Amount: 1, Currency: "EUR",
		PaymentMethod: "pm_card_visa", CaptureMethod: gateway.CaptureAutomatic}); err != nil {
		t.Fatal(err)
	}
	spans := rec.Ended()
	if len(spans) != 1 || spans[0].Name() != "gateway.authorize" {
		t.Fatalf("%d spans: %v", len(spans), spans)
	}
}

// KnownOrigin answers from the current policy's rules (case-insensitively),
// and follows policy changes: metrics label only these origins.
func TestKnownOrigin(t *testing.T) {
	r, _ := newRouter(t, `{"rules":[{"name":"ch","match":{"origins":["web","POS"]},"gateways":["a"]}],"default":{"gateways":["b"]}}`)
	for o, want := range map[string]bool{"web": true, "WEB": true, "pos": true, "partner-x": false, "": false, "4242424242424242": false} {
		if got := r.KnownOrigin(o); got != want {
			t.Errorf("KnownOrigin(%q) = %v, want %v", o, got, want)
		}
	}
	if err := r.SetPolicy(routing.DefaultPolicy("a")); err != nil {
		t.Fatal(err)
	}
	if r.KnownOrigin("web") {
		t.Error("KnownOrigin(web) after a policy without origins")
	}
}
