package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/examples/internal/app"
	"github.com/payrail/payrail/examples/internal/apptest"
	"github.com/payrail/payrail/payments"
)

// countingStore counts created payments: async ones are created pending,
// sync ones processing.
type countingStore struct {
	*payments.MemoryStore
	sync, async atomic.Int64
}

func (s *countingStore) Create(ctx context.Context, p *payments.Payment) error {
	err := s.MemoryStore.Create(ctx, p)
	if err == nil {
		if p.Status == payments.StatusPending {
			s.async.Add(1)
		} else {
			s.sync.Add(1)
		}
	}
	return err
}

type testServer struct {
	t      *testing.T
	base   string
	client *http.Client
	store  *countingStore
	logs   *apptest.SyncBuffer
	cancel context.CancelFunc
	done   chan error
}

// start boots run on 127.0.0.1:0 with the configuration from env and waits
// until it serves /healthz.
func start(t *testing.T, env map[string]string) *testServer {
	t.Helper()
	return startOn(t, "127.0.0.1:0", env)
}

// startOn is start with a listener on addr; the client connects over
// loopback.
func startOn(t *testing.T, addr string, env map[string]string) *testServer {
	t.Helper()
	cfg := apptest.Config(t, env)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &testServer{
		t:      t,
		base:   "http://127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		store:  &countingStore{MemoryStore: payments.NewMemoryStore()},
		logs:   &apptest.SyncBuffer{},
		cancel: cancel,
		done:   make(chan error, 1),
	}
	go func() { s.done <- Run(ctx, cfg, Deps{Listener: ln, Store: s.store, Stdout: s.logs}) }()
	t.Cleanup(func() {
		s.client.CloseIdleConnections()
		if err := s.stop(); err != nil {
			t.Errorf("run: %v", err)
		}
		if t.Failed() {
			t.Logf("server logs:\n%s", s.logs)
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := s.client.Get(s.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not healthy: %v\n%s", err, s.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop cancels run's context and returns run's result.
func (s *testServer) stop() error {
	s.cancel()
	select {
	case err := <-s.done:
		s.done <- err // later calls see it too
		return err
	case <-time.After(15 * time.Second):
		return errors.New("run did not return within 15s")
	}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r *response) payment(t *testing.T) *payments.Payment {
	t.Helper()
	var p payments.Payment
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
	return &p
}

func (s *testServer) try(method, path, body string, header map[string]string) (*response, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

func (s *testServer) do(method, path, body string, header map[string]string) *response {
	s.t.Helper()
	r, err := s.try(method, path, body, header)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

func (s *testServer) expect(r *response, status int) {
	s.t.Helper()
	if r.status != status {
		s.t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
}

const visa = `{"amount":1999,"currency":"EUR","payment_method":"pm_card_visa"}`

// waitStatus polls GET path until the payment reaches want.
func (s *testServer) waitStatus(path string, header map[string]string, want payments.Status) *payments.Payment {
	s.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := s.do(http.MethodGet, path, "", header)
		s.expect(r, http.StatusOK)
		p := r.payment(s.t)
		if p.Status == want {
			return p
		}
		if p.Status.Terminal() || time.Now().After(deadline) {
			s.t.Fatalf("payment %s is %s; want %s", p.ID, p.Status, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCreateAndReplay(t *testing.T) {
	s := start(t, nil)
	key := map[string]string{"Idempotency-Key": "order-1"}
	first := s.do(http.MethodPost, "/payments", visa, key)
	s.expect(first, http.StatusCreated)
	p := first.payment(t)
	if p.Status != payments.StatusCaptured || p.Merchant != payments.DevMerchant || p.AmountCaptured != 1999 {
		t.Fatalf("payment %+v; want captured 1999 for merchant dev", p)
	}
	if loc := first.header.Get("Location"); loc != "/payments/"+p.ID {
		t.Fatalf("Location %q; want /payments/%s", loc, p.ID)
	}
	if first.header.Get("Idempotent-Replayed") != "" {
		t.Fatal("first request marked as replayed")
	}

	replay := s.do(http.MethodPost, "/payments", visa, key)
	s.expect(replay, http.StatusCreated)
	if replay.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay headers %v; want Idempotent-Replayed: true", replay.header)
	}
	if !bytes.Equal(replay.body, first.body) {
		t.Fatalf("replayed body differs:\n%s\n%s", first.body, replay.body)
	}
	if got := s.store.sync.Load(); got != 1 {
		t.Fatalf("%d payments created; the replay must not create another", got)
	}

	got := s.do(http.MethodGet, "/payments/"+p.ID, "", nil)
	s.expect(got, http.StatusOK)
	if g := got.payment(t); g.ID != p.ID || g.Status != payments.StatusCaptured {
		t.Fatalf("GET returned %+v", g)
	}

	mismatch := s.do(http.MethodPost, "/payments", `{"amount":1,"currency":"EUR","payment_method":"pm_card_visa"}`, key)
	if mismatch.status < 400 || mismatch.status >= 500 {
		t.Fatalf("reusing the key for another payload: status %d; want a 4xx", mismatch.status)
	}

	logs := s.logs.String()
	for _, want := range []string{`"level":"WARN","msg":"dev mode: every request is merchant dev"`, "PAYMENTS ARE NOT REAL", "in-process worker started"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs do not contain %q:\n%s", want, logs)
		}
	}
}

func TestAsyncPayment(t *testing.T) {
	s := start(t, nil)
	r := s.do(http.MethodPost, "/payments", visa, map[string]string{"Idempotency-Key": "async-1", "Prefer": "respond-async"})
	s.expect(r, http.StatusAccepted)
	if r.header.Get("Preference-Applied") != "respond-async" {
		t.Fatalf("headers %v; want Preference-Applied: respond-async", r.header)
	}
	p := r.payment(t)
	if p.Status != payments.StatusPending {
		t.Fatalf("accepted payment is %s; want pending", p.Status)
	}
	loc := r.header.Get("Location")
	if loc != "/payments/"+p.ID {
		t.Fatalf("Location %q", loc)
	}
	if done := s.waitStatus(loc, nil, payments.StatusCaptured); done.AmountCaptured != 1999 {
		t.Fatalf("captured %d; want 1999", done.AmountCaptured)
	}
}

func TestAsyncDefaultMode(t *testing.T) {
	s := start(t, map[string]string{"PAYMENTS_DEFAULT_MODE": "async"})
	r := s.do(http.MethodPost, "/payments", visa, map[string]string{"Idempotency-Key": "k"})
	s.expect(r, http.StatusAccepted)
	s.waitStatus(r.header.Get("Location"), nil, payments.StatusCaptured)
}

func TestManualCaptureAndRefund(t *testing.T) {
	s := start(t, nil)
	r := s.do(http.MethodPost, "/payments", `{"amount":5000,"currency":"EUR","payment_method":"pm_card_mastercard","capture_method":"manual"}`,
		map[string]string{"Idempotency-Key": "manual-1"})
	s.expect(r, http.StatusCreated)
	p := r.payment(t)
	if p.Status != payments.StatusAuthorized {
		t.Fatalf("status %s; want authorized", p.Status)
	}

	c := s.do(http.MethodPost, "/payments/"+p.ID+"/capture", "", map[string]string{"Idempotency-Key": "capture-1"})
	s.expect(c, http.StatusOK)
	if cp := c.payment(t); cp.Status != payments.StatusCaptured || cp.AmountCaptured != 5000 {
		t.Fatalf("after capture: %+v", cp)
	}

	ref := s.do(http.MethodPost, "/payments/"+p.ID+"/refunds", `{"amount":1500}`, map[string]string{"Idempotency-Key": "refund-1"})
	s.expect(ref, http.StatusCreated)
	var refund payments.Refund
	if err := json.Unmarshal(ref.body, &refund); err != nil || refund.Amount != 1500 || refund.PaymentID != p.ID {
		t.Fatalf("refund %s (%v)", ref.body, err)
	}
	again := s.do(http.MethodPost, "/payments/"+p.ID+"/refunds", `{"amount":1500}`, map[string]string{"Idempotency-Key": "refund-1"})
	if again.header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(again.body, ref.body) {
		t.Fatalf("refund replay: %d %v %s", again.status, again.header, again.body)
	}
	g := s.do(http.MethodGet, "/payments/"+p.ID, "", nil).payment(t)
	if g.Status != payments.StatusCaptured || g.AmountRefunded != 1500 || len(g.Refunds) != 1 {
		t.Fatalf("after partial refund: %+v", g)
	}

	rest := s.do(http.MethodPost, "/payments/"+p.ID+"/refunds", "", map[string]string{"Idempotency-Key": "refund-2"})
	s.expect(rest, http.StatusCreated)
	g = s.do(http.MethodGet, "/payments/"+p.ID, "", nil).payment(t)
	if g.Status != payments.StatusRefunded || g.AmountRefunded != 5000 {
		t.Fatalf("after full refund: %+v", g)
	}
}

func TestProbesAndMetrics(t *testing.T) {
	s := start(t, nil)
	s.expect(s.do(http.MethodGet, "/healthz", "", nil), http.StatusOK)
	s.expect(s.do(http.MethodGet, "/readyz", "", nil), http.StatusOK)
	s.expect(s.do(http.MethodPost, "/payments", visa, map[string]string{"Idempotency-Key": "m-1"}), http.StatusCreated)

	m := s.do(http.MethodGet, "/metrics", "", nil)
	s.expect(m, http.StatusOK)
	body := string(m.body)
	// The OTel Prometheus exporter turns the counter payrail.payment.operations
	// (unit {operation}) into payrail_payment_operations_total.
	for _, want := range []string{
		"# TYPE payrail_payment_operations_total counter",
		`payrail_payment_operations_total{`,
		`payrail_operation="authorize"`,
		`payrail_outcome="captured"`,
		"payrail_payment_operation_duration_seconds_bucket{",
		"payrail_gateway_request_duration_seconds_bucket{",
		// otelhttp's server metrics, labelled with the route.
		`http_server_request_duration_seconds_count{`,
		`http_route="/payments"`,
		"go_goroutines ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics does not contain %q", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}

func TestAPIKeys(t *testing.T) {
	s := start(t, map[string]string{
		"PAYRAIL_API_KEYS":   "sk_test_alpha:merchant-a,sk_test_beta:merchant-b",
		"PAYRAIL_ADMIN_KEYS": "sk_test_admin",
	})
	alpha := map[string]string{"Authorization": "Bearer sk_test_alpha"}
	beta := map[string]string{"Authorization": "Bearer sk_test_beta"}

	r := s.do(http.MethodPost, "/payments", visa, map[string]string{"Idempotency-Key": "k1"})
	s.expect(r, http.StatusUnauthorized)
	if r.header.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}
	s.expect(s.do(http.MethodPost, "/payments", visa, map[string]string{"Idempotency-Key": "k1", "Authorization": "Bearer wrong"}), http.StatusUnauthorized)

	r = s.do(http.MethodPost, "/payments", visa, map[string]string{"Idempotency-Key": "k1", "Authorization": alpha["Authorization"]})
	s.expect(r, http.StatusCreated)
	p := r.payment(t)
	if p.Merchant != "merchant-a" {
		t.Fatalf("merchant %q; want merchant-a", p.Merchant)
	}
	s.expect(s.do(http.MethodGet, "/payments/"+p.ID, "", alpha), http.StatusOK)
	s.expect(s.do(http.MethodGet, "/payments/"+p.ID, "", beta), http.StatusNotFound)
	s.expect(s.do(http.MethodGet, "/payments/"+p.ID, "", nil), http.StatusUnauthorized)
	s.expect(s.do(http.MethodPost, "/payments/"+p.ID+"/refunds", "", map[string]string{"Authorization": beta["Authorization"]}), http.StatusNotFound)

	// The same idempotency key under another merchant is another payment.
	r = s.do(http.MethodPost, "/payments", visa, map[string]string{"Idempotency-Key": "k1", "Authorization": beta["Authorization"]})
	s.expect(r, http.StatusCreated)
	if r.header.Get("Idempotent-Replayed") != "" || r.payment(t).ID == p.ID {
		t.Fatal("idempotency keys leak between merchants")
	}

	s.expect(s.do(http.MethodGet, "/admin/mode", "", alpha), http.StatusForbidden)
	s.expect(s.do(http.MethodGet, "/admin/mode", "", map[string]string{"Authorization": "Bearer sk_test_admin"}), http.StatusOK)
	s.expect(s.do(http.MethodGet, "/healthz", "", nil), http.StatusOK)

	logs := s.logs.String()
	if strings.Contains(logs, "dev mode") || strings.Contains(logs, "sk_test_") {
		t.Fatalf("logs mention dev mode or a key:\n%s", logs)
	}
}

// TestGracefulShutdown cancels run while synchronous requests wait on a slow
// gateway and async payments are being accepted: every accepted request
// must complete and every accepted payment must be processed.
func TestGracefulShutdown(t *testing.T) {
	s := start(t, map[string]string{"GATEWAY_URL": "mock://?latency=300ms"})
	const nSync, nAsync = 5, 50

	type result struct {
		r   *response
		err error
	}
	syncRes := make([]result, nSync)
	asyncRes := make([]result, nAsync)
	var wg sync.WaitGroup
	for i := range nSync {
		wg.Go(func() {
			r, err := s.try(http.MethodPost, "/payments", visa, map[string]string{"Idempotency-Key": fmt.Sprintf("sync-%d", i)})
			syncRes[i] = result{r, err}
		})
	}
	for i := range nAsync {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 3 * time.Millisecond) // keep requests arriving during the shutdown
			r, err := s.try(http.MethodPost, "/payments", visa, map[string]string{
				"Idempotency-Key": fmt.Sprintf("async-%d", i), "Prefer": "respond-async"})
			asyncRes[i] = result{r, err}
		})
	}

	// Cancel once every sync request waits on the gateway and some async
	// payments were accepted.
	deadline := time.Now().Add(5 * time.Second)
	for s.store.sync.Load() < nSync || s.store.async.Load() < nAsync*3/5 {
		if time.Now().After(deadline) {
			t.Fatalf("requests did not arrive: %d sync, %d async", s.store.sync.Load(), s.store.async.Load())
		}
		time.Sleep(2 * time.Millisecond)
	}
	acceptedAtCancel := s.store.async.Load()
	start := time.Now()
	if err := s.stop(); err != nil {
		t.Fatalf("run returned %v; want nil", err)
	}
	t.Logf("shutdown took %v", time.Since(start))
	wg.Wait()

	for i, r := range syncRes {
		if r.err != nil {
			t.Errorf("sync request %d: %v", i, r.err)
			continue
		}
		if r.r.status != http.StatusCreated || r.r.payment(t).Status != payments.StatusCaptured {
			t.Errorf("sync request %d: %d %s", i, r.r.status, r.r.body)
		}
	}
	accepted := 0
	ctx := context.Background()
	for i, r := range asyncRes {
		if r.err != nil {
			continue // refused after the listener closed: never accepted
		}
		if r.r.status != http.StatusAccepted {
			t.Errorf("async request %d: %d %s", i, r.r.status, r.r.body)
			continue
		}
		accepted++
		id := r.r.payment(t).ID
		p, err := s.store.Get(ctx, payments.DevMerchant, id)
		if err != nil {
			t.Errorf("accepted payment %s: %v", id, err)
			continue
		}
		if p.Status != payments.StatusCaptured {
			t.Errorf("accepted payment %s is %s after shutdown; want captured", id, p.Status)
		}
	}
	if int64(accepted) < acceptedAtCancel || int64(accepted) != s.store.async.Load() {
		t.Errorf("%d async payments answered 202, %d created (%d before the cancel)", accepted, s.store.async.Load(), acceptedAtCancel)
	}
	left, err := s.store.ListStale(ctx, []payments.Status{payments.StatusPending, payments.StatusProcessing}, time.Now().Add(time.Hour), 0)
	if err != nil || len(left) > 0 {
		t.Errorf("%d payments left pending or processing (%v)", len(left), err)
	}
	t.Logf("%d sync and %d async payments accepted; %d async refused after the listener closed", nSync, accepted, nAsync-accepted)

	logs := s.logs.String()
	for _, step := range []string{
		"shutdown: signal received",
		"shutdown: draining; /readyz reports 503",
		"shutdown: HTTP server stopped",
		"shutdown: processor stopped; no operation in flight",
		"shutdown: in-process queue drained; worker stopped",
		"shutdown: closed processor",
		"shutdown: closed gateway",
		"shutdown: closed idempotency store",
		"shutdown: closed telemetry",
	} {
		if !strings.Contains(logs, step) {
			t.Errorf("logs lack %q", step)
		}
	}
	if strings.Contains(logs, `"level":"ERROR"`) {
		t.Errorf("errors logged during a clean shutdown")
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"adapter without URLs", map[string]string{"MESSAGE_BUS_ADAPTER": "kafka"}, "BUS_TOPIC_URL"},
		{"driver not compiled in", map[string]string{"MESSAGE_BUS_ADAPTER": "kafka", // bus/kafka is compiled in; nats is not
			"BUS_TOPIC_URL": "nats://localhost:4222/payments", "BUS_SUBSCRIPTION_URL": "nats://localhost:4222/payments"}, `payrail ships no bus driver for "nats"`},
		{"gateway driver not compiled in", map[string]string{"GATEWAY_URL": "adyen://"}, `payrail ships no gateway driver for "adyen"`},
		{"idempotency driver not compiled in", map[string]string{"IDEMPOTENCY_URL": "memcached://localhost:11211"}, `payrail ships no idempotency driver for "memcached"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := apptest.Config(t, tt.env)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var logs apptest.SyncBuffer
			err = Run(context.Background(), cfg, Deps{Listener: ln, Stdout: &logs})
			if err == nil || !strings.Contains(err.Error(), tt.want) || app.ExitCode(err) != 2 {
				t.Fatalf("Run() = %v (exit code %d); want a configuration error mentioning %q", err, app.ExitCode(err), tt.want)
			}
			if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("listener not closed after a failed start: %v", err)
			}
		})
	}
}

// The in-process queue answers 202 only for work a shutdown can finish
// within SHUTDOWN_TIMEOUT at the processing time it observes: past that
// bound async requests get 503 async_queue_full with Retry-After. When the
// drain still cannot finish (here the worker's estimate lags a gateway
// slower than it assumed), Run fails, and its log names exactly the
// accepted payments that are lost with the memory store.
func TestShutdownBoundsAndReportsTheInProcessQueue(t *testing.T) {
	s := start(t, map[string]string{"GATEWAY_URL": "mock://?latency=250ms", "WORKER_CONCURRENCY": "1", "SHUTDOWN_TIMEOUT": "300ms"})
	var accepted []string
	var full *response
	for i := 0; i < 20 && full == nil; i++ {
		r, err := s.try(http.MethodPost, "/payments", visa, map[string]string{
			"Idempotency-Key": fmt.Sprintf("q-%d", i), "Prefer": "respond-async"})
		if err != nil {
			t.Fatal(err)
		}
		switch r.status {
		case http.StatusAccepted:
			accepted = append(accepted, r.payment(t).ID)
		case http.StatusServiceUnavailable:
			full = r
		default:
			t.Fatalf("request %d: %d %s", i, r.status, r.body)
		}
	}
	if full == nil || len(accepted) == 0 {
		t.Fatalf("accepted %d, never refused: the queue is unbounded", len(accepted))
	}
	var pr struct{ Code string }
	if err := json.Unmarshal(full.body, &pr); err != nil || pr.Code != "async_queue_full" ||
		full.header.Get("Retry-After") == "" || full.header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("refusal: %d %v %s", full.status, full.header, full.body)
	}
	// Stop at once: the queue holds more than 300ms of 250ms payments.
	err := s.stop()
	if err == nil || !strings.Contains(err.Error(), "accepted payments not finished") {
		t.Fatalf("run returned %v; want an error naming the unfinished payments", err)
	}
	// Nothing starts after the worker stopped, so the payments still
	// pending now are exactly those reported as never processed; those in
	// flight at the report may have finished since.
	ctx := context.Background()
	var pending, processing []string
	for _, id := range accepted {
		p, gerr := s.store.Get(ctx, "dev", id)
		if gerr != nil {
			t.Fatal(gerr)
		}
		switch p.Status {
		case payments.StatusPending:
			pending = append(pending, id)
		case payments.StatusProcessing:
			processing = append(processing, id)
		}
	}
	if len(pending) == 0 {
		t.Fatal("every payment started: the test did not exercise a failed drain")
	}
	var lost struct {
		Count    int      `json:"count"`
		Pending  []string `json:"pending_ids"`
		InFlight []string `json:"in_flight_ids"`
	}
	for line := range strings.SplitSeq(s.logs.String(), "\n") {
		if strings.Contains(line, "are LOST") {
			if err := json.Unmarshal([]byte(line), &lost); err != nil {
				t.Fatal(err)
			}
		}
	}
	slices.Sort(lost.Pending)
	slices.Sort(pending)
	if !slices.Equal(lost.Pending, pending) || lost.Count != len(lost.Pending)+len(lost.InFlight) {
		t.Fatalf("log reports %d: never processed %v, in flight %v; the store has pending %v", lost.Count, lost.Pending, lost.InFlight, pending)
	}
	for _, id := range processing {
		if !slices.Contains(lost.InFlight, id) {
			t.Fatalf("payment %s still processing but not reported in flight (%v)", id, lost.InFlight)
		}
	}
	t.Logf("accepted %d, refused the next with 503; reported %d never processed, %d in flight", len(accepted), len(lost.Pending), len(lost.InFlight))
	<-s.done
	s.done <- nil // the failure was expected: the cleanup's stop must not report it
}

// With API keys configured, /metrics is operational data for operators:
// it takes an admin key (401 without a key, 403 with a merchant's).
func TestMetricsNeedAnAdminKeyWhenKeysAreConfigured(t *testing.T) {
	s := start(t, map[string]string{"PAYRAIL_API_KEYS": "sk_m:merchant-a", "PAYRAIL_ADMIN_KEYS": "sk_admin"})
	for _, tc := range []struct {
		key  string
		want int
	}{{"", http.StatusUnauthorized}, {"sk_m", http.StatusForbidden}, {"sk_wrong", http.StatusUnauthorized}, {"sk_admin", http.StatusOK}} {
		h := map[string]string{}
		if tc.key != "" {
			h["Authorization"] = "Bearer " + tc.key
		}
		r, err := s.try(http.MethodGet, "/metrics", "", h)
		if err != nil {
			t.Fatal(err)
		}
		if r.status != tc.want {
			t.Fatalf("/metrics with key %q: %d, want %d", tc.key, r.status, tc.want)
		}
		if tc.want != http.StatusOK && r.header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("/metrics refusal: %v %s", r.header, r.body)
		}
		if tc.want == http.StatusOK && !strings.Contains(string(r.body), "payrail_") {
			t.Fatalf("/metrics body lacks payrail metrics: %.200s", r.body)
		}
	}
}

// With the embedded defaults (no LISTEN_HOST, no Deps.Listener) the server
// listens on loopback only: a development server is not on the network.
func TestDevModeListensOnLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := apptest.Config(t, map[string]string{"PORT": strconv.Itoa(port)})
	logs := &apptest.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, Deps{Stdout: logs}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	want := `"msg":"listening","addr":"127.0.0.1:` + strconv.Itoa(port) + `"`
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s in the log:\n%s", want, logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Reachable on loopback, with the admin endpoints open (dev mode).
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/admin/mode")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /admin/mode on loopback in dev mode: %d, want 200", resp.StatusCode)
	}
	// Not on the machine's other addresses.
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		ip, ok := a.(*net.IPNet)
		if !ok || ip.IP.IsLoopback() || ip.IP.To4() == nil {
			continue
		}
		c, err := net.DialTimeout("tcp", net.JoinHostPort(ip.IP.String(), strconv.Itoa(port)), time.Second)
		if err == nil {
			c.Close()
			t.Errorf("the dev server accepted a connection on %s", ip.IP)
		}
	}
}

// In dev mode on a public interface (LISTEN_HOST=0.0.0.0 without keys) the
// payments API works as merchant dev, but /admin/* is refused: admin
// endpoints are never open to the network without a key. With an admin key
// configured they work with that key.
func TestAdminRefusedOnAPublicInterfaceWithoutKeys(t *testing.T) {
	s := startOn(t, "0.0.0.0:0", nil)
	s.expect(s.do(http.MethodPost, "/payments", visa, map[string]string{"Idempotency-Key": "pub-1"}), http.StatusCreated)
	s.expect(s.do(http.MethodGet, "/metrics", "", nil), http.StatusOK)
	for _, r := range []struct{ method, path, body string }{
		{http.MethodGet, "/admin/mode", ""},
		{http.MethodPut, "/admin/mode", `{"mode":"async"}`},
		{http.MethodGet, "/admin/routes", ""},
		{http.MethodGet, "/admin/gateways", ""},
	} {
		resp := s.do(r.method, r.path, r.body, nil)
		if resp.status != http.StatusForbidden || resp.header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s on a public interface in dev mode: %d %s, want 403 problem+json", r.method, r.path, resp.status, resp.body)
		}
	}
	if m := s.do(http.MethodGet, "/payments/none", "", nil); m.status != http.StatusNotFound {
		t.Errorf("GET /payments/none: %d, want 404 (the API stays served)", m.status)
	}
	if !strings.Contains(s.logs.String(), "dev mode on a public interface") {
		t.Errorf("no warning in the log:\n%s", s.logs)
	}

	k := startOn(t, "0.0.0.0:0", map[string]string{"PAYRAIL_ADMIN_KEYS": "sk_admin"})
	k.expect(k.do(http.MethodGet, "/admin/mode", "", nil), http.StatusUnauthorized)
	k.expect(k.do(http.MethodGet, "/admin/mode", "", map[string]string{"Authorization": "Bearer sk_admin"}), http.StatusOK)
}
