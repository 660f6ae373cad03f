package payments_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/payrail/payrail/payments"
)

// Card numbers (Luhn-valid test PANs) that must never be stored, logged or
// exported, in the forms clients send them.
var hostilePANs = []string{"4242424242424242", "4242 4242 4242 4242", "4242-4242-4242-4242", "5555555555554444", "378282246310005"}

// createCounter counts the payments a store was asked to create.
type createCounter struct {
	*payments.MemoryStore
	n atomic.Int64
}

func (c *createCounter) Create(ctx context.Context, p *payments.Payment) error {
	c.n.Add(1)
	return c.MemoryStore.Create(ctx, p)
}

type hostileReq struct {
	name, method, path, body string
	header                   map[string]string
	// keyed: the request carried a usable Idempotency-Key that must not be
	// consumed by the refusal.
	keyed bool
}

// hostileRequests returns well over 200 malformed or hostile requests across
// every endpoint. paid is an existing captured payment, auth an authorized one.
func hostileRequests(paid, authd string) []hostileReq {
	var out []hostileReq
	add := func(name, method, path, body string, header map[string]string, keyed bool) {
		out = append(out, hostileReq{name: name, method: method, path: path, body: body, header: header, keyed: keyed})
	}
	// Bodies for POST /payments; each is sent with its own fresh key.
	valid := func(extra string) string {
		return `{"amount":1999,"currency":"EUR","payment_method":"pm_card_visa"` + extra + `}`
	}
	createBodies := map[string]string{
		"null": `null`, "array": `[]`, "string": `"pay"`, "number": `1`, "true": `true`, "empty object": `{}`,
		"whitespace only null": " \n null ", "nested array": `[{"amount":1}]`,
		"duplicate amount":    `{"amount":1,"amount":2,"currency":"EUR","payment_method":"pm_card_visa"}`,
		"duplicate currency":  `{"amount":1,"currency":"EUR","currency":"USD","payment_method":"pm_card_visa"}`,
		"duplicate metadata":  valid(`,"metadata":{"a":"1","a":"2"}`),
		"case mismatch":       `{"Amount":1,"amount":2,"currency":"EUR","payment_method":"pm_card_visa"}`,
		"case only":           `{"AMOUNT":100,"currency":"EUR","payment_method":"pm_card_visa"}`,
		"unknown field":       valid(`,"cvv":"123"`),
		"unknown card field":  valid(`,"card":{"number":"4242424242424242"}`),
		"trailing object":     valid(``) + `{}`,
		"trailing garbage":    valid(``) + `x`,
		"truncated":           `{"amount":1999,"currency":"EU`,
		"single quotes":       `{'amount':1999}`,
		"comment":             `{"amount":1999 /* c */,"currency":"EUR","payment_method":"pm_card_visa"}`,
		"NaN":                 `{"amount":NaN,"currency":"EUR","payment_method":"pm_card_visa"}`,
		"amount exp":          `{"amount":1e3,"currency":"EUR","payment_method":"pm_card_visa"}`,
		"amount fraction":     `{"amount":10.0,"currency":"EUR","payment_method":"pm_card_visa"}`,
		"amount leading zero": `{"amount":0100,"currency":"EUR","payment_method":"pm_card_visa"}`,
		"amount minus zero":   `{"amount":-0,"currency":"EUR","payment_method":"pm_card_visa"}`,
		"amount overflow":     `{"amount":9223372036854775808,"currency":"EUR","payment_method":"pm_card_visa"}`,
		"amount huge":         `{"amount":1` + strings.Repeat("0", 400) + `,"currency":"EUR","payment_method":"pm_card_visa"}`,
		"amount string":       `{"amount":"1999","currency":"EUR","payment_method":"pm_card_visa"}`,
		"amount null":         `{"amount":null,"currency":"EUR","payment_method":"pm_card_visa"}`,
		"amount object":       `{"amount":{"value":1},"currency":"EUR","payment_method":"pm_card_visa"}`,
		"amount bool":         `{"amount":true,"currency":"EUR","payment_method":"pm_card_visa"}`,
		"currency NUL":        `{"amount":1999,"currency":"E\u0000R","payment_method":"pm_card_visa"}`,
		"currency symbol":     `{"amount":1999,"currency":"€","payment_method":"pm_card_visa"}`,
		"currency number":     `{"amount":1999,"currency":978,"payment_method":"pm_card_visa"}`,
		"currency long":       `{"amount":1999,"currency":"` + strings.Repeat("E", 5000) + `","payment_method":"pm_card_visa"}`,
		"pm NUL":              `{"amount":1999,"currency":"EUR","payment_method":"pm_card\u0000visa"}`,
		"pm control":          `{"amount":1999,"currency":"EUR","payment_method":"pm_card\u0007visa"}`,
		"pm long":             `{"amount":1999,"currency":"EUR","payment_method":"pm_` + strings.Repeat("a", 400) + `"}`,
		"pm unicode":          `{"amount":1999,"currency":"EUR","payment_method":"pm_cärd"}`,
		"pm sql":              `{"amount":1999,"currency":"EUR","payment_method":"pm_x'); DROP TABLE payrail_payments;--"}`,
		"origin NUL":          valid(`,"origin":"we\u0000b"`),
		"origin newline":      valid(`,"origin":"web\nX-Injected: 1"`),
		"origin long":         valid(`,"origin":"` + strings.Repeat("w", 1000) + `"`),
		"origin unicode":      valid(`,"origin":"wéb"`),
		"origin rtl":          valid(`,"origin":"web\u202e"`),
		"origin number":       valid(`,"origin":7`),
		"capture weird":       valid(`,"capture_method":"AUTOMATIC"`),
		"capture null byte":   valid(`,"capture_method":"manual\u0000"`),
		"metadata array":      valid(`,"metadata":["a"]`),
		"metadata nested":     valid(`,"metadata":{"a":{"b":"c"}}`),
		"metadata number":     valid(`,"metadata":{"a":1}`),
		"metadata NUL value":  valid(`,"metadata":{"a":"x\u0000y"}`),
		"metadata NUL key":    valid(`,"metadata":{"a\u0000":"x"}`),
		"metadata ctrl value": valid(`,"metadata":{"a":"x\u001by"}`),
		"metadata DEL value":  valid(`,"metadata":{"a":"x\u007fy"}`),
		"metadata C1 value":   valid(`,"metadata":{"a":"x\u0085y"}`),
		"metadata empty key":  valid(`,"metadata":{"":"x"}`),
		"metadata long key":   valid(`,"metadata":{"` + strings.Repeat("k", 41) + `":"x"}`),
		"metadata long value": valid(`,"metadata":{"a":"` + strings.Repeat("v", 501) + `"}`),
		"metadata 51 keys":    valid(`,"metadata":{` + manyKeys(51) + `}`),
		"metadata lone surr":  valid(`,"metadata":{"a":"\ud800"}`),
		"deep nesting":        strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
		"deep object":         `{"metadata":` + strings.Repeat(`{"a":`, 5000) + `1` + strings.Repeat(`}`, 5000) + `}`,
		"mode field":          valid(`,"mode":"async"`),
		"merchant field":      valid(`,"merchant":"merchant-b"`),
		"status field":        valid(`,"status":"captured"`),
		"id field":            valid(`,"id":"pay_chosen"`),
	}
	for _, pan := range hostilePANs {
		createBodies["pan as pm "+pan] = `{"amount":1999,"currency":"EUR","payment_method":"` + pan + `"}`
		createBodies["pan in origin "+pan] = valid(`,"origin":"` + pan + `"`)
		createBodies["pan in metadata value "+pan] = valid(`,"metadata":{"note":"card ` + pan + ` exp 12/30"}`)
		createBodies["pan as metadata key "+pan] = valid(`,"metadata":{"` + pan + `":"x"}`)
		createBodies["pan in unknown field "+pan] = valid(`,"` + pan + `":"x"`)
	}
	i := 0
	for name, body := range createBodies {
		i++
		add("create: "+name, "POST", "/payments", body, map[string]string{"Idempotency-Key": fmt.Sprintf("hostile-%d", i)}, true)
	}
	// Invalid UTF-8 sent raw (not as a JSON escape).
	for j, raw := range []string{"\xff", "\xc3\x28", "\xed\xa0\x80", "\xf4\x90\x80\x80", "a\xffb"} {
		add(fmt.Sprintf("create: raw invalid UTF-8 %d", j), "POST", "/payments",
			valid(`,"metadata":{"a":"`+raw+`"}`), map[string]string{"Idempotency-Key": fmt.Sprintf("utf8-%d", j)}, true)
		add(fmt.Sprintf("create: raw invalid UTF-8 key %d", j), "POST", "/payments",
			valid(`,"metadata":{"`+raw+`":"a"}`), map[string]string{"Idempotency-Key": fmt.Sprintf("utf8k-%d", j)}, true)
	}
	// Idempotency keys.
	for j, key := range append([]string{strings.Repeat("k", 256), "clé", "key with\ttab", ""}, hostilePANs...) {
		add(fmt.Sprintf("create: idempotency key %d", j), "POST", "/payments", valid(``), map[string]string{"Idempotency-Key": key}, false)
	}
	// Content types.
	for j, ct := range []string{"text/plain", "application/xml", "multipart/form-data; boundary=x", "application/jsonx", "application/x-www-form-urlencoded"} {
		add(fmt.Sprintf("create: content type %d", j), "POST", "/payments", valid(``),
			map[string]string{"Idempotency-Key": fmt.Sprintf("ct-%d", j), "Content-Type": ct}, true)
	}
	// Hostile ids in every path that takes one (percent-encoded).
	ids := append([]string{"%00", "pay_%00x", "%FF%FE", "pay_\u200b", "a%2Fb", strings.Repeat("p", 300),
		"pay_%0Ax", "pay%20x", "pay_'or'1'='1", "%E2%80%AE"}, hostilePANs...)
	for j, id := range ids {
		if strings.Contains(id, " ") {
			id = url.PathEscape(id)
		}
		add(fmt.Sprintf("get: id %d", j), "GET", "/payments/"+id, "", nil, false)
		add(fmt.Sprintf("capture: id %d", j), "POST", "/payments/"+id+"/capture", "", map[string]string{"Idempotency-Key": fmt.Sprintf("cap-id-%d", j)}, false)
		add(fmt.Sprintf("void: id %d", j), "POST", "/payments/"+id+"/void", "", nil, false)
		add(fmt.Sprintf("refund: id %d", j), "POST", "/payments/"+id+"/refunds", `{"amount":1}`, nil, false)
	}
	// Follow-up bodies on real payments.
	followBodies := map[string]string{
		"null": `null`, "array": `[]`, "string": `"x"`, "number": `5`, "duplicate": `{"amount":1,"amount":2}`,
		"case": `{"Amount":1}`, "unknown": `{"amount":1,"reason":"x"}`, "fraction": `{"amount":1.5}`,
		"string amount": `{"amount":"1"}`, "negative": `{"amount":-1}`, "overflow": `{"amount":99999999999999999999}`,
		"trailing": `{"amount":1}{}`, "truncated": `{"amount":`, "raw invalid utf8": "{\"amount\":1,\"\xff\":1}",
		"deep": strings.Repeat("[", 5000), "pan field": `{"4242424242424242":1}`,
	}
	for name, body := range followBodies {
		add("capture body: "+name, "POST", "/payments/"+authd+"/capture", body, map[string]string{"Idempotency-Key": "cap-" + name}, true)
		add("refund body: "+name, "POST", "/payments/"+paid+"/refunds", body, map[string]string{"Idempotency-Key": "ref-" + name}, true)
		add("void body: "+name, "POST", "/payments/"+authd+"/void", body, map[string]string{"Idempotency-Key": "void-" + name}, true)
	}
	// Methods and admin.
	for _, m := range []string{"PUT", "DELETE", "PATCH", "TRACE", "BREW"} {
		add("method "+m, m, "/payments", valid(``), nil, false)
	}
	for name, body := range map[string]string{"null": `null`, "dup": `{"mode":"sync","mode":"async"}`, "case": `{"Mode":"async"}`, "bad": `{"mode":"fast"}`, "nul": `{"mode":"sync\u0000"}`} {
		add("admin mode: "+name, "PUT", "/admin/mode", body, map[string]string{"Authorization": "Bearer sk_admin"}, false)
	}
	return out
}

func manyKeys(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%d":"v"`, i)
	}
	return b.String()
}

// Over 200 malformed and hostile requests across every endpoint: none gets
// a 5xx, every refusal is an RFC 9457 problem with a stable code, nothing
// is created or stored under a refused request's key, no refused request
// reaches the gateway, and no card number reaches the metrics or the logs.
func TestHostileRequests(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&syncWriter{w: &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reader := sdkmetric.NewManualReader()
	store := &createCounter{MemoryStore: payments.NewMemoryStore()}
	e := newEnv(t, envOption{procOpts: []payments.Option{payments.WithStore(store), payments.WithLogger(logger),
		payments.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))}})
	// Two real payments for the follow-up endpoints.
	paid := e.create("seed-paid", payBody("pm_card_visa"))
	wantStatus(t, paid, http.StatusCreated)
	authd := e.create("seed-auth", `{"amount":500,"currency":"EUR","payment_method":"pm_card_visa","capture_method":"manual"}`)
	wantStatus(t, authd, http.StatusCreated)
	paidID, authID := paid.json(t)["id"].(string), authd.json(t)["id"].(string)
	before := store.n.Load()
	gatewayBefore := e.mock.Calls("authorize") + e.mock.Calls("capture") + e.mock.Calls("void") + e.mock.Calls("refund")

	reqs := hostileRequests(paidID, authID)
	if len(reqs) < 200 {
		t.Fatalf("only %d hostile requests", len(reqs))
	}
	codes := map[string]int{}
	for _, hr := range reqs {
		header := map[string]string{auth: bearer("sk_a"), "Content-Type": "application/json"}
		for k, v := range hr.header {
			header[k] = v
		}
		r := e.doRaw(hr.method, hr.path, hr.body, header)
		if r.status >= 500 {
			t.Errorf("%s: %d %s", hr.name, r.status, r.body)
			continue
		}
		if r.status < 400 {
			t.Errorf("%s: accepted with %d %s", hr.name, r.status, r.body)
			continue
		}
		if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s: %d with Content-Type %q", hr.name, r.status, ct)
			continue
		}
		var pr struct {
			Type, Title, Code string
			Status            int
		}
		if err := json.Unmarshal(r.body, &pr); err != nil || pr.Code == "" || pr.Status != r.status || !strings.HasSuffix(pr.Type, "#"+pr.Code) {
			t.Errorf("%s: problem document %s (%v)", hr.name, r.body, err)
			continue
		}
		codes[pr.Code]++
		for _, pan := range hostilePANs {
			if bytes.Contains(r.body, []byte(pan)) {
				t.Errorf("%s: the problem echoes a card number: %s", hr.name, r.body)
			}
		}
	}
	t.Logf("%d hostile requests, answered by code: %v", len(reqs), codes)

	if n := store.n.Load() - before; n != 0 {
		t.Errorf("%d payments created by refused requests", n)
	}
	gatewayAfter := e.mock.Calls("authorize") + e.mock.Calls("capture") + e.mock.Calls("void") + e.mock.Calls("refund")
	if gatewayAfter != gatewayBefore {
		t.Errorf("refused requests reached the gateway %d times", gatewayAfter-gatewayBefore)
	}
	// Nothing was stored under a refused request's key: the same key with
	// a valid request creates a payment (not a replay, not a conflict).
	for _, hr := range reqs {
		if !hr.keyed || hr.method != "POST" || hr.path != "/payments" {
			continue
		}
		key := hr.header["Idempotency-Key"]
		r := e.create(key, payBody("pm_card_visa"))
		if r.status != http.StatusCreated || r.header.Get("Idempotent-Replayed") != "" {
			t.Errorf("%s: key %q was consumed by the refusal: %d %s", hr.name, key, r.status, r.body)
		}
	}
	// No card number in the metrics or the logs.
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	dump, _ := json.Marshal(rm)
	for _, pan := range hostilePANs {
		digits := strings.NewReplacer(" ", "", "-", "").Replace(pan)
		for _, where := range []struct {
			name string
			b    []byte
		}{{"metrics", dump}, {"logs", logs.Bytes()}} {
			if bytes.Contains(where.b, []byte(pan)) || bytes.Contains(where.b, []byte(digits)) {
				t.Errorf("card number %s found in the %s", pan, where.name)
			}
		}
	}
}

// doRaw sends a request written byte for byte on a new connection, so that
// hostile bytes (invalid UTF-8, control characters) reach the server as
// sent: net/http's client would refuse to send some of them.
func (e *env) doRaw(method, path, body string, header map[string]string) resp {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: payrail.test\r\nConnection: close\r\nContent-Length: %d\r\n", method, path, len(body))
	for k, v := range header {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	if _, err := io.WriteString(conn, b.String()); err != nil {
		e.t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		e.t.Fatalf("%s %q: %v", method, path, err)
	}
	defer res.Body.Close()
	rb, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: rb}
}

// syncWriter serialises writes from concurrent loggers.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
