// Package server is payrail's reference API server, run by the command
// examples/server: the payments HTTP API (package payments) wired entirely
// from environment variables. The variables are documented in package
// examples/internal/config and in .env.example at the repository root.
// Tests may call Run directly, passing a listener and stores in Deps.
//
// Run it locally, with in-memory adapters and the mock gateway:
//
//	cp .env.example .env
//	go run ./examples/server
//
//	curl -i localhost:8080/payments -H 'Content-Type: application/json' \
//	  -H 'Idempotency-Key: order-1' -d '{"amount":1999,"currency":"EUR","payment_method":"pm_card_visa"}'
//
// # Deployment shapes
//
// With MESSAGE_BUS_ADAPTER=inmemory (the default) the processor keeps a
// private in-memory bus and the worker that completes async payments runs
// inside this process; run a single replica, since the bus, the payment
// store and (with IDEMPOTENCY_URL=memory://) the idempotency keys live in
// its memory.
//
// With any other adapter this process only publishes async payment commands
// to the bus; run examples/worker next to it to consume them. The adapter's
// driver package must be compiled in with a blank import in package
// examples/internal/drivers.
//
// # Endpoints
//
// The payments API (see payments.Handler), /healthz, /readyz, and /metrics
// in the Prometheus format. The API is traced with OpenTelemetry (spans are
// named after the route, such as "POST /payments"); set
// OTEL_EXPORTER_OTLP_ENDPOINT to export traces and metrics over OTLP.
//
// # Shutdown
//
// On SIGTERM or SIGINT the server stops gracefully, logging each step:
// /readyz starts failing; the listener closes and in-flight requests finish
// (up to SHUTDOWN_TIMEOUT); the processor refuses new operations (503) and
// waits for those in flight; the in-process worker, if any, drains the
// queue of accepted async payments (up to SHUTDOWN_TIMEOUT) and finishes its
// in-flight commands; then the processor, bus, stores, gateway and telemetry
// are closed. A second signal kills the process at once.
//
// With the in-memory bus, nothing answered 202 is lost: the in-process
// queue accepts an async payment only while, at the processing time the
// worker observes, it can drain within SHUTDOWN_TIMEOUT (past that bound
// async requests get 503 async_queue_full with Retry-After). If the drain
// still does not finish in time (a gateway that stalls during shutdown),
// the log names the count and ids of the accepted payments not finished —
// lost with the memory payment store, resumed by the next worker with a
// durable one — and Run returns an error (exit status 1).
//
// Behind a load balancer, give it time to notice the failing /readyz before
// the listener closes: in Kubernetes, a preStop hook such as "sleep 5".
// Each of the three phases may take up to SHUTDOWN_TIMEOUT, so set
// terminationGracePeriodSeconds above three times SHUTDOWN_TIMEOUT plus
// that pause (or lower SHUTDOWN_TIMEOUT).
//
// Run returns nil after a clean shutdown and an app.ConfigError on a
// configuration error: with app.Main, the exit status is 0 after a clean
// shutdown, 1 on a runtime failure, 2 on a configuration error.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/examples/internal/app"
	"github.com/payrail/payrail/examples/internal/config"
	"github.com/payrail/payrail/payments"

	// Drivers, registered by URL scheme; add yours to package drivers.
	_ "github.com/payrail/payrail/examples/internal/drivers"
)

const (
	// serviceName is the service name when neither OTEL_SERVICE_NAME nor
	// SERVICE_NAME is set.
	serviceName = "payrail-server"

	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
)

// Deps are the dependencies Run takes from its caller instead of building
// them from the configuration; the zero value builds everything.
type Deps struct {
	// Listener is the API listener (default: TCP on PORT). Run closes it.
	Listener net.Listener
	// Store is the payment store (default: from PAYMENTS_STORE_URL). Run
	// does not close it.
	Store payments.Store
	// Logger is the logger (default: JSON on Stdout at LOG_LEVEL).
	Logger *slog.Logger
	// Stdout receives the default logger's output (default: os.Stdout).
	Stdout io.Writer
}

// Run serves the API until ctx is done, then shuts down gracefully. It
// returns nil after a clean shutdown, and an app.ConfigError if cfg cannot
// work.
func Run(ctx context.Context, cfg *config.Config, d Deps) (err error) {
	log := app.Logger(d.Logger, d.Stdout, cfg.LogLevel)
	log.Info("payrail server starting", "version", app.Version, "config", cfg)

	var cl app.Closers
	defer func() { err = errors.Join(err, cl.CloseAll(log)) }()

	// Telemetry: OTLP export per the OTEL_* environment, and /metrics.
	ln, reg, err := app.ListenWithTelemetry(ctx, cfg, serviceName,
		app.Endpoint{Listener: d.Listener, Variable: "PORT", Host: cfg.ListenHost, Port: cfg.Port, Name: "listener"}, &cl)
	if err != nil {
		return err
	}

	stopPprof, err := servePprof(log)
	if err != nil {
		return fmt.Errorf("%s: %w", PprofAddrVariable, err)
	}
	defer stopPprof()

	b, err := app.OpenBackends(ctx, cfg, d.Store, log, &cl)
	if err != nil {
		return err
	}
	if strings.HasPrefix(cfg.IdempotencyURL, "memory:") && !cfg.InMemoryBus() {
		log.Warn("IDEMPOTENCY_URL is memory://: idempotency keys are not shared between replicas; use a shared store when running more than one")
	}

	var popts []payments.Option
	if cfg.InMemoryBus() {
		// Without WithTopic, payments.New creates a private in-memory bus
		// that NewWorker consumes in this process.
		// The in-process queue dies with the process: it accepts only the
		// async work a graceful shutdown can complete within
		// SHUTDOWN_TIMEOUT (past it, 503 async_queue_full).
		popts = append(popts, payments.WithLocalSubscriptionOptions(bus.WithConcurrency(cfg.WorkerConcurrency)),
			payments.WithDrainBudget(cfg.ShutdownTimeout))
		log.Info("message bus: in-memory, private to this process; async payments are completed by the in-process worker")
	} else {
		topicURL, _, err := cfg.BusURLs()
		if err != nil {
			return app.ConfigError{Err: err}
		}
		topic, err := app.OpenTopic(ctx, cfg, topicURL)
		if err != nil {
			return err
		}
		cl.Add("bus topic", topic.Close)
		popts = append(popts, payments.WithTopic(topic))
		log.Info("message bus: publishing async payment commands; run examples/worker to process them",
			"adapter", cfg.MessageBusAdapter, "topic", config.Redact(topicURL))
	}
	p, err := b.NewProcessor(cfg, log, &cl, popts...)
	if err != nil {
		return err
	}

	var worker *payments.Worker
	if cfg.InMemoryBus() {
		hooks, err := app.WebhookOptions(cfg, log, &cl)
		if err != nil {
			return err
		}
		if worker, err = app.NewWorker(p, log, "in-process worker", hooks...); err != nil {
			return err
		}
	}

	auth, err := authenticator(cfg, ln, log)
	if err != nil {
		return app.ConfigError{Err: err}
	}
	api, err := payments.NewHandler(p, auth, payments.WithHandlerLogger(log))
	if err != nil {
		return err
	}
	if err := app.MountRoutingAdmin(api, b.Router); err != nil { // /admin/routes, /admin/gateways
		return fmt.Errorf("routing admin: %w", err)
	}

	mux := http.NewServeMux()
	var metrics http.Handler = app.MetricsHandler(reg, log)
	if cfg.AuthEnabled() {
		// Operational data is for operators: with API keys configured,
		// /metrics takes an admin key (Prometheus: authorization.credentials).
		metrics = payments.AdminOnly(auth, metrics)
	}
	mux.Handle("/metrics", metrics)
	mux.Handle("/", api) // the handler traces and measures itself
	// Provider webhooks (e.g. Stripe's, with webhook_secret_env in the
	// gateway URL): authenticated by their signature, not an API key.
	mux.Handle("POST /webhooks/{gateway}", payments.NewGatewayWebhookHandler(p))

	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout(cfg.MaxAttempts),
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// BaseContext stays context.Background: request contexts must not
		// be cancelled by the shutdown signal, so that in-flight payments
		// finish.
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "mode", string(cfg.DefaultMode),
		"adapter", cfg.MessageBusAdapter, "in_process_worker", worker != nil)

	workerCtx, stopWorker := context.WithCancel(context.Background()) // Worker.Shutdown stops it first
	defer stopWorker()
	var workerDone chan error
	if worker != nil {
		workerDone = make(chan error, 1)
		go func() { workerDone <- worker.Run(workerCtx) }()
		log.Info("in-process worker started")
	}

	var failure error
	select {
	case <-ctx.Done():
		log.Info("shutdown: signal received, stopping gracefully", "timeout", cfg.ShutdownTimeout.String())
	case err := <-serveErr:
		failure = fmt.Errorf("http server: %w", err)
		log.Error("http server failed; shutting down", "error", err)
	case err := <-workerDone:
		workerDone = nil
		failure = fmt.Errorf("in-process worker stopped: %w", err)
		log.Error("in-process worker stopped unexpectedly; shutting down", "error", err)
	}

	// 1. Fail readiness, then stop accepting and finish in-flight requests.
	api.SetDraining(true)
	log.Info("shutdown: draining; /readyz reports 503")
	if err := shutdownHTTP(srv, cfg.ShutdownTimeout, log); err != nil {
		failure = errors.Join(failure, err)
	}

	// 2. Refuse new operations and let direct ones in flight finish; then
	// let the in-process worker finish every accepted async payment.
	if err := shutdownProcessor(p, cfg.ShutdownTimeout, log); err != nil {
		failure = errors.Join(failure, err)
	}
	if workerDone != nil {
		if err := stopInProcessWorker(p, worker, cfg.ShutdownTimeout, log); err != nil {
			failure = errors.Join(failure, err)
		}
	}

	// 3. Close the processor, bus, stores, gateway and telemetry (deferred).
	return failure
}

// shutdownHTTP stops the listener and waits up to timeout for in-flight
// requests, then closes the connections still open.
func shutdownHTTP(srv *http.Server, timeout time.Duration, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Error("shutdown: in-flight requests did not finish in time; closing their connections", "error", err)
		_ = srv.Close()
		return fmt.Errorf("http shutdown: %w", err)
	}
	log.Info("shutdown: HTTP server stopped; in-flight requests finished")
	return nil
}

// shutdownProcessor refuses new operations and waits up to timeout for
// those in flight.
func shutdownProcessor(p *payments.Processor, timeout time.Duration, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		log.Error("shutdown: payment operations still in flight; their payments stay resumable", "error", err)
		return err
	}
	log.Info("shutdown: processor stopped; no operation in flight")
	return nil
}

// stopInProcessWorker lets the in-process worker drain the queue of
// accepted async payments and stop, within timeout. If it cannot, it
// reports exactly which accepted payments are not final: with the memory
// payment store they are lost when the process exits, with a durable one a
// later worker's recovery sweep resumes them.
func stopInProcessWorker(p *payments.Processor, w *payments.Worker, timeout time.Duration, log *slog.Logger) error {
	log.Info("shutdown: the in-process worker is finishing accepted async payments")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	err := w.Shutdown(ctx)
	cancel()
	if err == nil {
		log.Info("shutdown: in-process queue drained; worker stopped")
		return nil
	}
	lctx, lcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer lcancel()
	left, lerr := p.Unfinished(lctx, time.Now().Add(time.Hour), 0)
	var pending, inFlight []string // never started; gateway call under way
	for _, pay := range left {
		if pay.Status == payments.StatusPending {
			pending = append(pending, pay.ID)
		} else {
			inFlight = append(inFlight, pay.ID)
		}
	}
	switch {
	case lerr != nil:
		log.Error("shutdown: the in-process queue did not drain in time, and the unfinished payments could not be listed",
			"error", err, "list_error", lerr)
	case p.DurableStore():
		log.Error("shutdown: the in-process queue did not drain in time; these payments stay in the payment store and the next worker's recovery sweep resumes them",
			"count", len(left), "pending_ids", pending, "in_flight_ids", inFlight, "error", err)
	default:
		log.Error("shutdown: the in-process queue did not drain in time; with the memory payment store the accepted payments not processed are LOST (pending_ids: never sent to the gateway) and those in flight end with an outcome unknown to anyone (in_flight_ids)",
			"count", len(left), "pending_ids", pending, "in_flight_ids", inFlight, "error", err)
	}
	return fmt.Errorf("in-process worker: %d accepted payments not finished (%d never processed, %d in flight): %w",
		len(left), len(pending), len(inFlight), err)
}

// authenticator returns API-key authentication if keys are configured, and
// the development authenticator otherwise.
// In dev mode on a public interface (LISTEN_HOST other than loopback), the
// admin endpoints are refused.
func authenticator(cfg *config.Config, ln net.Listener, log *slog.Logger) (payments.Authenticator, error) {
	if !cfg.AuthEnabled() {
		log.Warn("dev mode: every request is merchant dev",
			"hint", "set PAYRAIL_API_KEYS (and PAYRAIL_ADMIN_KEYS) to require API keys")
		if !app.LoopbackOnly(ln) {
			log.Warn("dev mode on a public interface: /admin/* is refused (403) until PAYRAIL_ADMIN_KEYS is set",
				"addr", ln.Addr().String())
		}
		return app.DevAuthenticator(ln), nil
	}
	auth, err := payments.APIKeys(cfg.APIKeys, cfg.AdminKeys)
	if err != nil {
		return nil, fmt.Errorf("PAYRAIL_API_KEYS/PAYRAIL_ADMIN_KEYS: %w", err)
	}
	log.Info("authentication: API keys required", "merchant_keys", len(cfg.APIKeys), "admin_keys", len(cfg.AdminKeys))
	return auth, nil
}

// writeTimeout covers a synchronous payment's worst case: every gateway
// attempt timing out, with back-off, and then a reconciling lookup doing
// the same.
func writeTimeout(attempts int) time.Duration {
	return 2*time.Duration(attempts)*(app.GatewayTimeout+app.MaxBackoff) + 10*time.Second
}
