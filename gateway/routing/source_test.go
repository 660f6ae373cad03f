package routing_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/routing"
	"github.com/payrail/payrail/internal/testkit"
	"github.com/payrail/payrail/payments"
)

func TestMemorySourceConformance(t *testing.T) {
	testkit.PolicySourceTests(t, func(*testing.T) routing.Source { return routing.NewMemorySource() })
}

// sharedRouter is one process's router over gateways a, b and c, sharing
// its policy through src.
func sharedRouter(t *testing.T, src routing.Source, initial string, names ...string) *routing.Router {
	t.Helper()
	if len(names) == 0 {
		names = []string{"a", "b", "c"}
	}
	fs := map[string]*faulty{}
	for _, n := range names {
		fs[n] = newFaulty()
	}
	r, err := routing.New(gateways(t, fs, names...), mustPolicy(t, initial), routing.WithSource(src, 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	if err := r.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

const onlyA = `{"default": {"gateways": ["a"]}}`

// A policy PUT through one process's /admin/routes reaches every process
// sharing the source: the first process seeds the source, later ones
// adopt its policy (not their own start-up one), and a change is followed
// by Watch within the poll interval, with the same version everywhere.
func TestSharedPolicyReachesEveryProcess(t *testing.T) {
	src := routing.NewMemorySource()
	server := sharedRouter(t, src, onlyA)
	worker := sharedRouter(t, src, `{"default": {"gateways": ["c"]}}`) // its GATEWAY_ROUTES lost to the shared one
	if got := route(t, worker, gateway.RouteRequest{Currency: "EUR"}); strings.Join(got, ",") != "a" {
		t.Fatalf("worker routes %v at start; want the seeded shared policy [a]", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = worker.Watch(ctx) }()

	p := newProc(t, server)
	auth, err := payments.APIKeys(nil, []string{"sk_admin"})
	if err != nil {
		t.Fatal(err)
	}
	h, err := payments.NewHandler(p, auth)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.HandleAdmin("routes", routing.AdminHandler(server)); err != nil {
		t.Fatal(err)
	}
	if err := h.HandleAdmin("gateways", routing.HealthHandler(worker)); err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("PUT", "/admin/routes", strings.NewReader(`{"default": {"gateways": ["b", "a"]}}`))
	req.Header.Set("Authorization", "Bearer sk_admin")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("If-Match", `"1"`)
	res := httptest.NewRecorder()
	h.ServeHTTP(res, req)
	if res.Code != http.StatusOK || res.Header().Get("ETag") != `"2"` {
		t.Fatalf("PUT: %d %s (ETag %s); want 200 with version 2", res.Code, res.Body, res.Header().Get("ETag"))
	}
	deadline := time.Now().Add(5 * time.Second)
	for strings.Join(route(t, worker, gateway.RouteRequest{Currency: "EUR"}), ",") != "b,a" {
		if time.Now().After(deadline) {
			t.Fatalf("the worker still routes %v 5 s after the change", route(t, worker, gateway.RouteRequest{Currency: "EUR"}))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if worker.Version() != 2 || server.Version() != 2 {
		t.Errorf("versions: worker %d, server %d; want 2 both", worker.Version(), server.Version())
	}
	// The worker's admin view: its effective version, shared.
	req = httptest.NewRequest("GET", "/admin/gateways", nil)
	req.Header.Set("Authorization", "Bearer sk_admin")
	res = httptest.NewRecorder()
	h.ServeHTTP(res, req)
	var health struct{ Policy routing.SourceStatus }
	if err := json.Unmarshal(res.Body.Bytes(), &health); err != nil || !health.Policy.Shared || health.Policy.Version != 2 || health.Policy.Error != "" {
		t.Fatalf("worker status %s (%v); want shared at version 2", res.Body, err)
	}

	// A stale If-Match is refused, and nothing changes anywhere.
	req = httptest.NewRequest("PUT", "/admin/routes", strings.NewReader(onlyA))
	req.Header.Set("Authorization", "Bearer sk_admin")
	req.Header.Set("If-Match", `"1"`)
	res = httptest.NewRecorder()
	h.ServeHTTP(res, req)
	if res.Code != http.StatusPreconditionFailed {
		t.Fatalf("stale PUT: %d %s; want 412", res.Code, res.Body)
	}
	if _, v, _ := src.Load(context.Background()); v != 2 {
		t.Fatalf("source at version %d after a refused PUT; want 2", v)
	}
}

// A shared policy naming a gateway one process lacks is not applied there:
// that process keeps routing by its current policy and says why.
func TestSharedPolicyThisProcessCannotApply(t *testing.T) {
	src := routing.NewMemorySource()
	full := sharedRouter(t, src, onlyA)
	partial := sharedRouter(t, src, onlyA, "a") // only gateway a configured here
	if err := full.SetPolicy(mustPolicy(t, `{"default": {"gateways": ["c"]}}`)); err != nil {
		t.Fatal(err)
	}
	if err := partial.Sync(context.Background()); err == nil {
		t.Fatal("Sync applied a policy naming a gateway this router lacks")
	}
	if got := route(t, partial, gateway.RouteRequest{Currency: "EUR"}); strings.Join(got, ",") != "a" {
		t.Fatalf("partial routes %v; want its last good policy [a]", got)
	}
	st := partial.SourceStatus()
	if !st.Shared || st.Version != 1 || !strings.Contains(st.Error, "version 2") {
		t.Fatalf("status %+v; want version 1 in force and an error about version 2", st)
	}
	// And a PUT through it is validated against its own gateways first.
	if err := partial.SetPolicy(mustPolicy(t, `{"default": {"gateways": ["b"]}}`)); err == nil {
		t.Fatal("SetPolicy stored a policy this router cannot apply")
	}
	if _, v, _ := src.Load(context.Background()); v != 2 {
		t.Fatalf("source at version %d; want 2", v)
	}
}
