package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/examples/internal/apptest"
	"github.com/payrail/payrail/examples/internal/config"
	"github.com/payrail/payrail/examples/internal/server"
	"github.com/payrail/payrail/examples/internal/worker"
	"github.com/payrail/payrail/payments"
)

// stackOptions tune startStack; the zero value suits most tests.
type stackOptions struct {
	// Store is the payment store the server and the worker share (nil:
	// each opens PAYMENTS_STORE_URL).
	Store payments.Store
	// Logs receives both binaries' logs (nil: a buffer per binary,
	// printed if the test fails).
	Logs io.Writer
	// Ready is the probe polled until it answers 200 (default /healthz),
	// for up to ReadyTimeout (default 30s).
	Ready        string
	ReadyTimeout time.Duration
	// StopTimeout bounds how long Stop waits for each binary (default
	// 60s).
	StopTimeout time.Duration
}

// stack is the reference server, and the standalone worker unless the bus
// is in-memory (the server then runs the worker itself), running in
// process on loopback listeners.
type stack struct {
	tb testing.TB
	// Base is the API's base URL; WorkerBase the standalone worker's
	// admin port (/metrics, /healthz, /admin/routes), if it runs.
	Base, WorkerBase string
	// Client is the HTTP client of the helpers.
	Client *http.Client
	// Store is the shared payment store given in stackOptions.
	Store payments.Store
	// ServerLogs and WorkerLogs hold the binaries' logs, unless
	// stackOptions.Logs took them.
	ServerLogs, WorkerLogs *apptest.SyncBuffer

	cancel      context.CancelFunc
	done        map[string]chan error
	stopTimeout time.Duration
	stopOnce    sync.Once
}

// startStack starts the server (and the worker, see stack) with cfg,
// waits until the server's probe answers 200, and stops both at the end of
// the test.
func startStack(tb testing.TB, cfg *config.Config, o stackOptions) *stack {
	tb.Helper()
	if o.Ready == "" {
		o.Ready = "/healthz"
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 30 * time.Second
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = 60 * time.Second
	}
	s := &stack{
		tb:          tb,
		Client:      &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}},
		Store:       o.Store,
		ServerLogs:  &apptest.SyncBuffer{},
		WorkerLogs:  &apptest.SyncBuffer{},
		done:        map[string]chan error{},
		stopTimeout: o.StopTimeout,
	}
	serverOut, workerOut := io.Writer(s.ServerLogs), io.Writer(s.WorkerLogs)
	if o.Logs != nil {
		serverOut, workerOut = o.Logs, o.Logs
	}
	apiLn := listen(tb)
	s.Base = "http://" + apiLn.Addr().String()
	var metricsLn net.Listener
	withWorker := !cfg.InMemoryBus()
	if withWorker {
		metricsLn = listen(tb)
		s.WorkerBase = "http://" + metricsLn.Addr().String()
	}

	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.run("server", func() error {
		return server.Run(ctx, cfg, server.Deps{Listener: apiLn, Store: o.Store, Stdout: serverOut})
	})
	if withWorker {
		s.run("worker", func() error {
			return worker.Run(ctx, cfg, worker.Deps{MetricsListener: metricsLn, Store: o.Store, Stdout: workerOut})
		})
	}
	tb.Cleanup(func() {
		s.Stop()
		if tb.Failed() && o.Logs == nil {
			if withWorker {
				tb.Logf("server logs:\n%s\nworker logs:\n%s", s.ServerLogs, s.WorkerLogs)
			} else {
				tb.Logf("server logs:\n%s", s.ServerLogs)
			}
		}
	})
	s.waitReady(o.Ready, o.ReadyTimeout)
	return s
}

func listen(tb testing.TB) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return ln
}

// run runs a binary in a goroutine; Stop collects its result.
func (s *stack) run(name string, fn func() error) {
	done := make(chan error, 1)
	s.done[name] = done
	go func() { done <- fn() }()
}

// Stop cancels the binaries' context and waits for each to return,
// reporting an error it returned or its not stopping in time. Only the
// first call does so; it is safe to call again, and the test's cleanup
// calls it.
func (s *stack) Stop() {
	s.stopOnce.Do(func() {
		s.Client.CloseIdleConnections()
		s.cancel()
		for name, ch := range s.done {
			select {
			case err := <-ch:
				if err != nil {
					s.tb.Errorf("%s returned %v", name, err)
				}
			case <-time.After(s.stopTimeout):
				s.tb.Errorf("%s did not stop", name)
			}
		}
	})
}

func (s *stack) waitReady(path string, timeout time.Duration) {
	s.tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := s.Client.Get(s.Base + path)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("%s%s not healthy: %v", s.Base, path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// response is an HTTP response, read.
type response struct {
	Status int
	Header http.Header
	Body   []byte
	// JSON is Body decoded, if it is a JSON object.
	JSON map[string]any
}

// Do sends a request to the API (body, if any, as JSON) with the header
// pairs given (name, value, name, value...) and reads the response.
func (s *stack) Do(method, path, body string, header ...string) response {
	s.tb.Helper()
	r, err := s.try(method, path, body, header)
	if err != nil {
		s.tb.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

func (s *stack) try(method, path, body string, header []string) (response, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.Base+path, rd)
	if err != nil {
		return response{}, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	r := response{Status: resp.StatusCode, Header: resp.Header, Body: b}
	_ = json.Unmarshal(b, &r.JSON)
	return r, nil
}

// Post POSTs a payment with an Idempotency-Key and, if async, Prefer:
// respond-async, and the header pairs given.
func (s *stack) Post(key, body string, async bool, header ...string) response {
	s.tb.Helper()
	header = append([]string{"Idempotency-Key", key}, header...)
	if async {
		header = append(header, "Prefer", "respond-async")
	}
	return s.Do(http.MethodPost, "/payments", body, header...)
}

// paymentView is a payment as the API shows it, as far as the tests read
// it.
type paymentView struct {
	ID     string          `json:"id"`
	Status payments.Status `json:"status"`
}

// Get GETs a payment at loc (its Location) with the header pairs given;
// anything but a 200 with a payment fails the test.
func (s *stack) Get(loc string, header ...string) paymentView {
	s.tb.Helper()
	r := s.Do(http.MethodGet, loc, "", header...)
	var p paymentView
	if err := json.Unmarshal(r.Body, &p); err != nil || r.Status != http.StatusOK {
		s.tb.Fatalf("GET %s = %d, %v", loc, r.Status, err)
	}
	return p
}

// waitFinal polls every payment of want (its Location → the final status
// wanted) over HTTP until it has that status, and returns how many reached
// each status and their ids. A payment that reaches another final status,
// or is still pending or processing when ctx is done, fails the test.
func (s *stack) waitFinal(ctx context.Context, want map[string]payments.Status, header ...string) (map[payments.Status]int, []string) {
	s.tb.Helper()
	got := map[payments.Status]int{}
	var ids []string
	for loc, status := range want {
		for {
			p := s.Get(loc, header...)
			if p.Status == status {
				got[status]++
				ids = append(ids, p.ID)
				break
			}
			if p.Status != payments.StatusPending && p.Status != payments.StatusProcessing {
				s.tb.Fatalf("payment %s ended %s; want %s", p.ID, p.Status, status)
			}
			if ctx.Err() != nil {
				s.tb.Fatalf("payment %s still %s; want %s", p.ID, p.Status, status)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return got, ids
}

// outcome picks the payment method of payment i of a mix, and the final
// status it ends in.
type outcome func(i int) (pm string, status payments.Status)

// tenthsMix: one payment in ten declined (i%10 == 3), one in ten failing
// transiently on every attempt (i%10 == 7), the others captured.
func tenthsMix(i int) (string, payments.Status) {
	switch i % 10 {
	case 3:
		return "pm_card_chargeDeclined", payments.StatusDeclined
	case 7:
		return "pm_card_processingError", payments.StatusFailed
	}
	return "pm_card_visa", payments.StatusCaptured
}

// driveAsync POSTs n async payments (amounts 1000+i, Idempotency-Key
// keyPrefix-i) with the payment methods of mix, then polls each over HTTP
// until it reaches its final state (waitFinal), and checks how many ended
// captured, declined and failed.
func (s *stack) driveAsync(ctx context.Context, n int, keyPrefix string, mix outcome, captured, declined, failed int) {
	s.tb.Helper()
	want := map[string]payments.Status{}
	for i := range n {
		pm, status := mix(i)
		body := fmt.Sprintf(`{"amount":%d,"currency":"EUR","payment_method":%q,"origin":"web"}`, 1000+i, pm)
		r := s.Post(fmt.Sprintf("%s-%d", keyPrefix, i), body, true)
		if r.Status != http.StatusAccepted || r.Header.Get("Location") == "" {
			s.tb.Fatalf("POST /payments #%d = %d %s (Location %q); want 202 with a Location", i, r.Status, r.Body, r.Header.Get("Location"))
		}
		want[r.Header.Get("Location")] = status
	}
	got, _ := s.waitFinal(ctx, want)
	if got[payments.StatusCaptured] != captured || got[payments.StatusDeclined] != declined || got[payments.StatusFailed] != failed {
		s.tb.Fatalf("final states %v; want %d captured, %d declined, %d failed", got, captured, declined, failed)
	}
}

// checkDeadLetters opens the worker's subscription at subURL (closed at
// the end of the test) and checks that it holds n dead letters, each
// dead-lettered by the worker after PAYMENTS_MAX_ATTEMPTS=3 deliveries.
func checkDeadLetters(tb testing.TB, ctx context.Context, subURL string, n int) *bus.Subscription {
	tb.Helper()
	sub, err := bus.OpenSubscription(ctx, subURL)
	if err != nil {
		tb.Fatalf("OpenSubscription(%s): %v", subURL, err)
	}
	tb.Cleanup(func() { _ = sub.Close() })
	dls, err := sub.DeadLetters(ctx, 0)
	if err != nil {
		tb.Fatalf("DeadLetters: %v", err)
	}
	if len(dls) != n {
		tb.Fatalf("%d dead letters, want the %d transiently failing payment(s)", len(dls), n)
	}
	for _, dl := range dls {
		if !strings.Contains(dl.Reason, "failed after 3 attempts") || dl.Message.DeliveryAttempt != 3 {
			tb.Errorf("dead letter %s: reason %q, attempt %d; want failed after 3 attempts", dl.Message.ID, dl.Reason, dl.Message.DeliveryAttempt)
		}
	}
	return sub
}

// benchAsync measures end-to-end async payments per second through s:
// b.N payments (pm_card_visa) are POSTed over HTTP with Prefer:
// respond-async by 8 concurrent clients, and the clock stops when the last
// one is captured, as read from the shared store (stackOptions.Store).
func benchAsync(b *testing.B, s *stack, keyPrefix string) {
	ctx := context.Background()
	run := fmt.Sprint(time.Now().UnixNano())
	ids := make([]string, b.N)
	var next atomic.Int64
	errc := make(chan error, 8)
	b.ResetTimer()
	for range 8 {
		go func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					errc <- nil
					return
				}
				body := fmt.Sprintf(`{"amount":%d,"currency":"EUR","payment_method":"pm_card_visa","origin":"web"}`, 1000+i)
				r, err := s.try(http.MethodPost, "/payments", body,
					[]string{"Idempotency-Key", keyPrefix + "-" + run + "-" + fmt.Sprint(i), "Prefer", "respond-async"})
				if err != nil {
					errc <- err
					return
				}
				loc := r.Header.Get("Location")
				if r.Status != http.StatusAccepted || loc == "" {
					errc <- fmt.Errorf("POST = %d", r.Status)
					return
				}
				ids[i] = loc[strings.LastIndex(loc, "/")+1:]
			}
		}()
	}
	for range 8 {
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Minute)
	for _, id := range ids {
		for {
			p, err := s.Store.Get(ctx, "dev", id)
			if err == nil && p.Status == payments.StatusCaptured {
				break
			}
			if err == nil && p.Status != payments.StatusPending && p.Status != payments.StatusProcessing {
				b.Fatalf("payment %s ended %s", id, p.Status)
			}
			if time.Now().After(deadline) {
				b.Fatalf("payment %s not captured (%v, %v)", id, p, err)
			}
			time.Sleep(time.Millisecond)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "payments/s")
}
