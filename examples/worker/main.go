// Command worker is payrail's reference standalone worker: it consumes the
// async payment commands that examples/server publishes to an external
// message bus, calls the gateway, and stores each outcome in the payment
// store it shares with the API server. It is configured by the same
// environment variables as the server (see package examples/internal/config
// and .env.example); WORKER_CONCURRENCY bounds the commands it processes
// at once, and METRICS_PORT is where it serves /metrics and /healthz.
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
// compiled in, with blank imports like the ones below.
//
// On SIGTERM or SIGINT it stops receiving, lets in-flight commands finish
// and be acknowledged (up to SHUTDOWN_TIMEOUT), then closes everything. A
// second signal kills the process at once.
//
// Exit status: 0 after a clean shutdown, 1 on a runtime failure, 2 on a
// configuration error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/examples/internal/config"
	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/idempotency"
	"github.com/payrail/payrail/observability"
	"github.com/payrail/payrail/payments"

	// Drivers, registered by URL scheme. Add the bus driver of your
	// MESSAGE_BUS_ADAPTER and the gateway and store drivers you use.
	_ "github.com/payrail/payrail/gateway/mock"
	_ "github.com/payrail/payrail/idempotency/memory"
)

const (
	// serviceName is the service name when neither OTEL_SERVICE_NAME nor
	// SERVICE_NAME is set.
	serviceName = "payrail-worker"

	// gatewayTimeout bounds each gateway call, and maxBackoff the delay
	// before a failed command is redelivered.
	gatewayTimeout = 30 * time.Second
	maxBackoff     = 5 * time.Second
)

func main() { os.Exit(realMain()) }

func realMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		// After the first signal, restore the default behaviour so that a
		// second one kills the process.
		<-ctx.Done()
		stop()
	}()
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", serviceName, err)
		return 2
	}
	if err := run(ctx, cfg, deps{}); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", serviceName, err)
		return exitCode(err)
	}
	return 0
}

// deps are the dependencies run takes from its caller instead of building
// them from the configuration; the zero value builds everything.
type deps struct {
	// MetricsListener serves /metrics and /healthz (default: TCP on
	// METRICS_PORT). run closes it.
	MetricsListener net.Listener
	// Store is the payment store shared with the API server (default: from
	// PAYMENTS_STORE_URL). run does not close it.
	Store payments.Store
	// Topic and Subscription are the bus (default: opened from the bus
	// URLs, the subscription with WORKER_CONCURRENCY). run does not close
	// them. Set both or neither.
	Topic        *bus.Topic
	Subscription *bus.Subscription
	// Logger is the logger (default: JSON on Stdout at LOG_LEVEL).
	Logger *slog.Logger
	// Stdout receives the default logger's output (default: os.Stdout).
	Stdout io.Writer
}

// configError marks errors caused by the configuration (exit status 2).
type configError struct{ err error }

func (e configError) Error() string { return e.err.Error() }
func (e configError) Unwrap() error { return e.err }

func exitCode(err error) int {
	if errors.As(err, new(configError)) {
		return 2
	}
	return 1
}

// Refusals: configurations a standalone worker cannot work with.
var (
	errInMemoryBus = errors.New("MESSAGE_BUS_ADAPTER=inmemory: the in-memory bus lives inside the API server process, " +
		"which runs the worker itself (examples/server); a standalone worker cannot reach it. " +
		"Set MESSAGE_BUS_ADAPTER to sns-sqs, pubsub, servicebus or kafka, or run only the API server")
	errMemoryStore = errors.New("PAYMENTS_STORE_URL=memory://: the worker must share the API server's payment store, " +
		"and an in-memory store lives inside a single process; the worker would never see the server's payments. " +
		"Configure a persistent payment store shared by the API server and the workers " +
		"(none ships with payrail yet: implement payments.Store and pass it with payments.WithStore)")
)

// check refuses configurations a standalone worker cannot work with, and
// returns the bus URLs to open.
func check(cfg *config.Config, d deps) (topicURL, subURL string, err error) {
	if cfg.InMemoryBus() {
		return "", "", configError{errInMemoryBus}
	}
	if d.Store == nil && cfg.MemoryStore() {
		return "", "", configError{errMemoryStore}
	}
	if (d.Topic == nil) != (d.Subscription == nil) {
		return "", "", errors.New("worker: deps.Topic and deps.Subscription must be set together")
	}
	if d.Topic != nil {
		return "", "", nil
	}
	topicURL, subURL, err = cfg.BusURLs()
	if err != nil {
		return "", "", configError{err}
	}
	for _, s := range []string{topicURL, subURL} {
		if u, err := url.Parse(s); err == nil && u.Scheme == "inmemory" {
			return "", "", configError{fmt.Errorf("bus URL %s: %w", config.Redact(s), errInMemoryBus)}
		}
	}
	return topicURL, subURL, nil
}

// run processes payment commands until ctx is done, then stops gracefully.
// It returns nil after a clean shutdown.
func run(ctx context.Context, cfg *config.Config, d deps) (err error) {
	topicURL, subURL, err := check(cfg, d)
	if err != nil {
		return err
	}
	if d.Stdout == nil {
		d.Stdout = os.Stdout
	}
	log := d.Logger
	if log == nil {
		log = observability.NewLogger(d.Stdout, cfg.LogLevel)
	}
	log.Info("payrail worker starting", "config", cfg)

	var cl closers
	defer func() { err = errors.Join(err, cl.closeAll(log)) }()

	ln := d.MetricsListener
	if ln == nil {
		if ln, err = net.Listen("tcp", ":"+strconv.Itoa(cfg.MetricsPort)); err != nil {
			return fmt.Errorf("listening on METRICS_PORT %d: %w", cfg.MetricsPort, err)
		}
	}
	cl.add("metrics listener", func() error {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	})

	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("registering metrics: %w", err)
		}
	}
	shutdownTelemetry, err := observability.Setup(ctx,
		observability.WithServiceName(serviceName), observability.WithPrometheus(reg))
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	cl.add("telemetry", func() error {
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		return shutdownTelemetry(sctx)
	})

	// /metrics and /healthz, served from the start and stopped last.
	var running atomic.Bool
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry: reg,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError),
	}))
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
	cl.add("metrics server", func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return msrv.Shutdown(sctx)
	})
	log.Info("serving /metrics and /healthz", "addr", ln.Addr().String())

	gw, err := gateway.Open(ctx, cfg.GatewayURL)
	if err != nil {
		return openError("GATEWAY_URL", err, gateway.ErrUnknownDriver)
	}
	cl.add("gateway", gw.Close)
	if u, err := url.Parse(cfg.GatewayURL); err == nil && u.Scheme == "mock" {
		log.Warn("GATEWAY_URL is the mock gateway: PAYMENTS ARE NOT REAL and no money moves; never use it in production",
			"gateway", gw.Name())
	}

	idem, err := idempotency.Open(ctx, cfg.IdempotencyURL)
	if err != nil {
		return openError("IDEMPOTENCY_URL", err, idempotency.ErrUnknownDriver)
	}
	cl.add("idempotency store", idem.Close)

	store := d.Store
	if store == nil {
		// Only memory:// exists today, and check refused it: a persistent
		// store driver is needed here.
		return configError{fmt.Errorf("PAYMENTS_STORE_URL: %s is not supported", config.Redact(cfg.PaymentsStoreURL))}
	}

	topic, sub := d.Topic, d.Subscription
	if topic == nil {
		if topic, err = openTopic(ctx, cfg, topicURL); err != nil {
			return err
		}
		cl.add("bus topic", topic.Close)
		sub, err = bus.OpenSubscription(ctx, subURL,
			bus.WithConcurrency(cfg.WorkerConcurrency), bus.WithLogger(log))
		if err != nil {
			return fmt.Errorf("opening the bus subscription: %w", err)
		}
		cl.add("bus subscription", sub.Close)
		log.Info("message bus opened", "adapter", cfg.MessageBusAdapter,
			"topic", config.Redact(topicURL), "subscription", config.Redact(subURL), "concurrency", cfg.WorkerConcurrency)
	}

	p, err := payments.New(
		payments.WithTopic(topic),
		payments.WithGateway(gw),
		payments.WithIdempotencyStore(idem),
		payments.WithStore(store),
		payments.WithLogger(log),
		payments.WithRetryPolicy(payments.RetryPolicy{MaxAttempts: cfg.MaxAttempts, MaxBackoff: maxBackoff}),
		payments.WithMode(cfg.DefaultMode),
		payments.WithGatewayTimeout(gatewayTimeout),
		payments.WithTracerProvider(otel.GetTracerProvider()),
		payments.WithMeterProvider(otel.GetMeterProvider()),
	)
	if err != nil {
		return fmt.Errorf("payments processor: %w", err)
	}
	cl.add("processor", p.Close)
	w, err := payments.NewWorker(p, payments.WithSubscription(sub), payments.WithWorkerLogger(log))
	if err != nil {
		return fmt.Errorf("worker: %w", err)
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

func openTopic(ctx context.Context, cfg *config.Config, topicURL string) (*bus.Topic, error) {
	topic, err := bus.OpenTopic(ctx, topicURL)
	if err == nil {
		return topic, nil
	}
	if errors.Is(err, bus.ErrUnknownDriver) {
		return nil, configError{fmt.Errorf("MESSAGE_BUS_ADAPTER=%s: %w", cfg.MessageBusAdapter, err)}
	}
	return nil, fmt.Errorf("opening the bus topic: %w", err)
}

// openError wraps the error of opening what variable names; a driver that
// is not compiled in is a configuration error.
func openError(variable string, err, unknownDriver error) error {
	err = fmt.Errorf("%s: %w", variable, err)
	if errors.Is(err, unknownDriver) {
		return configError{err}
	}
	return err
}

// closers closes resources in the reverse order of their creation.
type closers []namedCloser

type namedCloser struct {
	name  string
	close func() error
}

func (c *closers) add(name string, close func() error) {
	*c = append(*c, namedCloser{name, close})
}

// closeAll closes everything, logging each step, and returns the errors.
func (c closers) closeAll(log *slog.Logger) error {
	var errs []error
	for i := len(c) - 1; i >= 0; i-- {
		if err := c[i].close(); err != nil {
			log.Error("shutdown: closing "+c[i].name+" failed", "error", err)
			errs = append(errs, fmt.Errorf("closing %s: %w", c[i].name, err))
			continue
		}
		log.Info("shutdown: closed " + c[i].name)
	}
	return errors.Join(errs...)
}
