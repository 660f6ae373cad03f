package routing_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/payrail/payrail/gateway/routing"
	"github.com/payrail/payrail/payments"
)

type adminEnv struct {
	t   *testing.T
	srv *httptest.Server
	r   *routing.Router
}

// newAdminEnv serves the payments API with the routing policy mounted at
// /admin/routes and breaker health at /admin/gateways, behind API keys.
func newAdminEnv(t *testing.T) *adminEnv {
	t.Helper()
	r, _ := newRouter(t, samplePolicy)
	p := newProc(t, r)
	auth, err := payments.APIKeys(map[string]string{"sk_merchant": "acme"}, []string{"sk_admin"})
	if err != nil {
		t.Fatal(err)
	}
	h, err := payments.NewHandler(p, auth)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.HandleAdmin("routes", routing.AdminHandler(r)); err != nil {
		t.Fatal(err)
	}
	if err := h.HandleAdmin("gateways", routing.HealthHandler(r)); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &adminEnv{t: t, srv: srv, r: r}
}

type adminResp struct {
	status int
	header http.Header
	body   string
}

func (e *adminEnv) do(method, path, key, body string, hdr ...string) adminResp {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return adminResp{res.StatusCode, res.Header, string(b)}
}

func wantProblemCode(t *testing.T, r adminResp, status int, code string) map[string]any {
	t.Helper()
	if r.status != status || r.header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("status %d %s, want %d problem; body %s", r.status, r.header.Get("Content-Type"), status, r.body)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatal(err)
	}
	if m["code"] != code || m["status"] != float64(status) || !strings.HasSuffix(m["type"].(string), "#"+code) {
		t.Fatalf("problem %s, want code %s", r.body, code)
	}
	return m
}

func TestAdminRoutesRequiresAdminKey(t *testing.T) {
	e := newAdminEnv(t)
	wantProblemCode(t, e.do("GET", "/admin/routes", "", ""), 401, "unauthorized")
	wantProblemCode(t, e.do("GET", "/admin/routes", "sk_wrong", ""), 401, "unauthorized")
	wantProblemCode(t, e.do("PUT", "/admin/routes", "sk_merchant", `{"default":{"gateways":["a"]}}`), 403, "forbidden")
	if e.r.Policy().Default.Gateways[0] != "c" {
		t.Fatal("a forbidden PUT changed the policy")
	}
}

// The runbook step: GET the policy, switch an origin to another gateway,
// PUT it back; a bad policy is refused whole with every problem listed.
func TestAdminRoutesViewAndReplace(t *testing.T) {
	e := newAdminEnv(t)
	got := e.do("GET", "/admin/routes", "sk_admin", "")
	if got.status != 200 || got.header.Get("ETag") != `"1"` {
		t.Fatalf("GET: %d %v %s", got.status, got.header, got.body)
	}
	p, err := routing.ParsePolicy([]byte(got.body))
	if err != nil {
		t.Fatalf("GET body is not a policy: %v\n%s", err, got.body)
	}
	p.Rules[1].Gateways = []string{"c"} // pos → c, temporarily
	b, _ := json.Marshal(p)

	bad := `{"rules":[{"name":"pos","match":{"origins":["pos"]},"gateways":["zz"]},{"name":"pos","match":{"origins":["web"]},"gateways":[]}],"default":{"gateways":["a"]}}`
	m := wantProblemCode(t, e.do("PUT", "/admin/routes", "sk_admin", bad), 422, "validation_failed")
	fields := map[string]bool{}
	for _, f := range m["errors"].([]any) {
		fields[f.(map[string]any)["field"].(string)] = true
	}
	for _, f := range []string{"rules[0].gateways[0]", "rules[1].name", "rules[1].gateways"} {
		if !fields[f] {
			t.Errorf("problem for %s missing: %s", f, m["errors"])
		}
	}
	wantProblemCode(t, e.do("PUT", "/admin/routes", "sk_admin", `{"default":`), 400, "malformed_request")
	wantProblemCode(t, e.do("PUT", "/admin/routes", "sk_admin", `{"default":{"gateways":["a"]},"extra":1}`), 400, "malformed_request")
	wantProblemCode(t, e.do("PUT", "/admin/routes", "sk_admin", string(b), "Content-Type", "text/plain"), 415, "unsupported_media_type")
	wantProblemCode(t, e.do("DELETE", "/admin/routes", "sk_admin", ""), 405, "method_not_allowed")
	if e.r.Version() != 1 {
		t.Fatal("a refused PUT changed the policy")
	}

	wantProblemCode(t, e.do("PUT", "/admin/routes", "sk_admin", string(b), "If-Match", `"7"`), 412, routing.CodeVersionMismatch)
	put := e.do("PUT", "/admin/routes", "sk_admin", string(b), "If-Match", `"1"`)
	if put.status != 200 || put.header.Get("ETag") != `"2"` {
		t.Fatalf("PUT: %d %s", put.status, put.body)
	}
	if got := e.r.Policy().Rules[1].Gateways; len(got) != 1 || got[0] != "c" {
		t.Fatalf("policy not switched: %v", got)
	}
	again := e.do("GET", "/admin/routes", "sk_admin", "")
	if again.body != put.body {
		t.Fatalf("GET after PUT differs:\n%s\n%s", again.body, put.body)
	}
	// Unconditional PUT (no If-Match) also works.
	if r := e.do("PUT", "/admin/routes", "sk_admin", `{"default":{"gateways":["b"]}}`); r.status != 200 || e.r.Policy().Default.Gateways[0] != "b" {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
}

func TestAdminGatewaysHealth(t *testing.T) {
	e := newAdminEnv(t)
	r := e.do("GET", "/admin/gateways", "sk_admin", "")
	var body struct {
		Gateways []routing.GatewayHealth `json:"gateways"`
	}
	if r.status != 200 || json.Unmarshal([]byte(r.body), &body) != nil || len(body.Gateways) != 3 ||
		body.Gateways[0].Name != "a" || body.Gateways[0].Breaker != routing.BreakerClosed {
		t.Fatalf("%d %s", r.status, r.body)
	}
	wantProblemCode(t, e.do("PUT", "/admin/gateways", "sk_admin", "{}"), 405, "method_not_allowed")
}
