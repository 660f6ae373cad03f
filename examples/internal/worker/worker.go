// Package worker is payrail's reference standalone worker, run by the
// command examples/worker: it consumes the async payment commands that
// examples/server publishes to an external message bus, calls the gateway, and stores each outcome in the payment
// store it shares with the API server. It is configured by the same
// environment variables as the server (see package examples/internal/config
// and .env.example); WORKER_CONCURRENCY bounds the commands it processes
// at once, and METRICS_PORT is where it serves /metrics, /healthz and,
// behind the admin keys, its effective routing policy (/admin/routes,
// /admin/gateways).
//
// Run as many replicas as the load needs. A command is acknowledged only
// after its outcome is stored, and redelivered commands never charge twice.
// The worker also sweeps the payment store for payments left pending or
// processing and republishes their commands to the topic.
//
// The worker needs two things the in-memory defaults cannot give, and
// refuses to start (exit status 2) without them:
//
//   - an external bus: with MESSAGE_BUS_ADAPTER=inmemory the bus lives
//     inside the API server process, which runs the worker itself;
//   - a payment store shared with the API server: PAYMENTS_STORE_URL=memory://
//     would be private to this process.
//
// It also needs the driver packages of the bus, gateway and stores it uses
// compiled in, with blank imports in package examples/internal/drivers.
//
// On SIGTERM or SIGINT it stops receiving, lets in-flight commands finish
// and be acknowledged (up to SHUTDOWN_TIMEOUT), then closes everything. A
// second signal kills the process at once.
//
// Run returns nil after a clean shutdown and an app.ConfigError on a
// configuration error: with app.Main, the exit status is 0 after a clean
// shutdown, 1 on a runtime failure, 2 on a configuration error. Tests may
// call Run directly, passing a listener, store and bus in Deps.
package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/examples/internal/app"
	"github.com/payrail/payrail/examples/internal/config"
	"github.com/payrail/payrail/gateway/routing"
	"github.com/payrail/payrail/payments"

	// Drivers, registered by URL scheme; add yours to package drivers.
	_ "github.com/payrail/payrail/examples/internal/drivers"
)

// serviceName is the service name when neither OTEL_SERVICE_NAME nor
// SERVICE_NAME is set.
const serviceName = "payrail-worker"

// Deps are the dependencies Run takes from its caller instead of building
// them from the configuration; the zero value builds everything.
type Deps struct {
	// MetricsListener serves /metrics and /healthz (default: TCP on
	// METRICS_PORT). Run closes it.
	MetricsListener net.Listener
	// Store is the payment store shared with the API server (default: from
	// PAYMENTS_STORE_URL). Run does not close it.
	Store payments.Store
	// Topic and Subscription are the bus (default: opened from the bus
	// URLs, the subscription with WORKER_CONCURRENCY). Run does not close
	// them. Set both or neither.
	Topic        *bus.Topic
	Subscription *bus.Subscription
	// Logger is the logger (default: JSON on Stdout at LOG_LEVEL).
	Logger *slog.Logger
	// Stdout receives the default logger's output (default: os.Stdout).
	Stdout io.Writer
}

// Refusals: configurations a standalone worker cannot work with.
var (
	errInMemoryBus = errors.New("MESSAGE_BUS_ADAPTER=inmemory: the in-memory bus lives inside the API server process, " +
		"which runs the worker itself (examples/server); a standalone worker cannot reach it. " +
		"Set MESSAGE_BUS_ADAPTER to sns-sqs, pubsub, servicebus or kafka, or run only the API server")
	errMemoryStore = errors.New("PAYMENTS_STORE_URL=memory://: the worker must share the API server's payment store, " +
		"and an in-memory store lives inside a single process; the worker would never see the server's payments. " +
		"Configure a persistent payment store shared by the API server and the workers, " +
		"such as PAYMENTS_STORE_URL=postgres://user@host:5432/db (apply its schema with opsctl db migrate --apply)")
)

// check refuses configurations a standalone worker cannot work with, and
// returns the bus URLs to open.
func check(cfg *config.Config, d Deps) (topicURL, subURL string, err error) {
	if cfg.InMemoryBus() {
		return "", "", app.ConfigError{Err: errInMemoryBus}
	}
	if d.Store == nil && cfg.MemoryStore() {
		return "", "", app.ConfigError{Err: errMemoryStore}
	}
	if (d.Topic == nil) != (d.Subscription == nil) {
		return "", "", errors.New("worker: Deps.Topic and Deps.Subscription must be set together")
	}
	if d.Topic != nil {
		return "", "", nil
	}
	topicURL, subURL, err = cfg.BusURLs()
	if err != nil {
		return "", "", app.ConfigError{Err: err}
	}
	for _, s := range []string{topicURL, subURL} {
		if u, err := url.Parse(s); err == nil && u.Scheme == "inmemory" {
			return "", "", app.ConfigError{Err: fmt.Errorf("bus URL %s: %w", config.Redact(s), errInMemoryBus)}
		}
	}
	return topicURL, subURL, nil
}

// Run processes payment commands until ctx is done, then stops gracefully.
// It returns nil after a clean shutdown, and an app.ConfigError if cfg
// cannot work.
func Run(ctx context.Context, cfg *config.Config, d Deps) (err error) {
	topicURL, subURL, err := check(cfg, d)
	if err != nil {
		return err
	}
	log := app.Logger(d.Logger, d.Stdout, cfg.LogLevel)
	log.Info("payrail worker starting", "version", app.Version, "config", cfg)

	var cl app.Closers
	defer func() { err = errors.Join(err, cl.CloseAll(log)) }()

	ln, reg, err := app.ListenWithTelemetry(ctx, cfg, serviceName,
		app.Endpoint{Listener: d.MetricsListener, Variable: "METRICS_PORT", Host: cfg.ListenHost, Port: cfg.MetricsPort, Name: "metrics listener"}, &cl)
	if err != nil {
		return err
	}

	// /metrics and /healthz, served from the start and stopped last.
	var running atomic.Bool
	mux := http.NewServeMux()
	metrics := app.MetricsHandler(reg, log) // open without admin keys, as on the API server
	// Without admin keys, as on the API server in dev mode: the admin
	// endpoints are open on loopback and refused (403) on a public
	// interface.
	auth := app.DevAuthenticator(ln)
	if len(cfg.AdminKeys) > 0 {
		// As on the API server: with admin keys configured, /metrics takes one.
		if auth, err = payments.APIKeys(nil, cfg.AdminKeys); err != nil {
			return app.ConfigError{Err: fmt.Errorf("PAYRAIL_ADMIN_KEYS: %w", err)}
		}
		metrics = payments.AdminOnly(auth, metrics)
	} else if !app.LoopbackOnly(ln) {
		log.Warn("no PAYRAIL_ADMIN_KEYS on a public interface: /admin/* is refused (403)", "addr", ln.Addr().String())
	}
	adminOnly := func(h http.Handler) http.Handler { return payments.AdminOnly(auth, h) }
	mux.Handle("/metrics", metrics)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if !running.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"status":"not running"}`+"\n")
			return
		}
		_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
	})
	msrv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	metricsErr := make(chan error, 1)
	go func() { metricsErr <- msrv.Serve(ln) }()
	cl.Add("metrics server", func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return msrv.Shutdown(sctx)
	})
	log.Info("serving /metrics and /healthz", "addr", ln.Addr().String())

	// Without d.Store, the payment store is opened from PAYMENTS_STORE_URL:
	// check refused memory://, so it is a shared store.
	b, err := app.OpenBackends(ctx, cfg, d.Store, log, &cl)
	if err != nil {
		return err
	}
	// The effective routing policy and its (shared) version, on the admin
	// port: GET /admin/routes (ETag: the version; PUT writes the shared
	// policy, as on the API server) and GET /admin/gateways (breakers and
	// the shared policy's sync status).
	mux.Handle("/admin/routes", adminOnly(routing.AdminHandler(b.Router)))
	mux.Handle("/admin/gateways", adminOnly(routing.HealthHandler(b.Router)))

	topic, sub := d.Topic, d.Subscription
	if topic == nil {
		if topic, err = app.OpenTopic(ctx, cfg, topicURL); err != nil {
			return err
		}
		cl.Add("bus topic", topic.Close)
		sub, err = bus.OpenSubscription(ctx, subURL,
			bus.WithConcurrency(cfg.WorkerConcurrency), bus.WithLogger(log))
		if err != nil {
			return fmt.Errorf("opening the bus subscription: %w", err)
		}
		cl.Add("bus subscription", sub.Close)
		log.Info("message bus opened", "adapter", cfg.MessageBusAdapter,
			"topic", config.Redact(topicURL), "subscription", config.Redact(subURL), "concurrency", cfg.WorkerConcurrency)
	}

	p, err := b.NewProcessor(cfg, log, &cl, payments.WithTopic(topic))
	if err != nil {
		return err
	}
	hooks, err := app.WebhookOptions(cfg, log, &cl)
	if err != nil {
		return err
	}
	w, err := app.NewWorker(p, log, "worker", append(hooks, payments.WithSubscription(sub))...)
	if err != nil {
		return err
	}

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	done := make(chan error, 1)
	running.Store(true)
	go func() {
		// Run returns once runCtx is done and every in-flight command has
		// finished and been acknowledged.
		err := w.Run(runCtx)
		running.Store(false)
		done <- err
	}()
	log.Info("worker running")

	var failure error
	select {
	case <-ctx.Done():
		log.Info("shutdown: signal received; finishing in-flight commands", "timeout", cfg.ShutdownTimeout.String())
	case err := <-metricsErr:
		failure = fmt.Errorf("metrics server: %w", err)
		log.Error("metrics server failed; shutting down", "error", err)
	case err := <-done:
		if err == nil {
			err = errors.New("stopped without a shutdown signal")
		}
		log.Error("worker stopped unexpectedly; shutting down", "error", err)
		return fmt.Errorf("worker: %w", err)
	}
	stopRun()
	select {
	case err := <-done:
		if err != nil {
			failure = errors.Join(failure, fmt.Errorf("worker: %w", err))
		}
		log.Info("shutdown: worker stopped; in-flight commands finished")
	case <-time.After(cfg.ShutdownTimeout):
		log.Error("shutdown: in-flight commands did not finish in time; the bus redelivers them")
		failure = errors.Join(failure, errors.New("worker did not stop within SHUTDOWN_TIMEOUT"))
	}
	return failure
}
