package app

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
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/examples/internal/config"
	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/routing"
	"github.com/payrail/payrail/idempotency"
	"github.com/payrail/payrail/observability"
	"github.com/payrail/payrail/payments"
	"github.com/payrail/payrail/webhook"
)

const (
	// GatewayTimeout bounds each gateway call.
	GatewayTimeout = 30 * time.Second
	// MaxBackoff bounds the delay between attempts of a gateway call, and
	// before a failed command is redelivered.
	MaxBackoff = 5 * time.Second
)

// Logger returns log if it is not nil, and otherwise a JSON logger writing
// to stdout (os.Stdout if nil) at level.
func Logger(log *slog.Logger, stdout io.Writer, level slog.Level) *slog.Logger {
	if log != nil {
		return log
	}
	if stdout == nil {
		// The real process (tests pass their own writer): what the
		// libraries print goes through the same JSON logger.
		l := observability.NewLogger(os.Stdout, level)
		RouteLibraryLogs(l)
		return l
	}
	return observability.NewLogger(stdout, level)
}

// Listen returns ln if it is not nil, and otherwise listens on TCP addr
// (host:port), whose port the environment variable variable configures
// (and whose host LISTEN_HOST does).
func Listen(ln net.Listener, variable, addr string) (net.Listener, error) {
	if ln != nil {
		return ln, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s (LISTEN_HOST, %s): %w", addr, variable, err)
	}
	return ln, nil
}

// LoopbackOnly reports whether ln accepts connections from this machine
// only: a TCP listener on a loopback address, or a non-TCP one (a Unix
// socket). A listener on 0.0.0.0, :: or an interface's address is public.
func LoopbackOnly(ln net.Listener) bool {
	a, ok := ln.Addr().(*net.TCPAddr)
	return !ok || a.IP.IsLoopback()
}

// DevAuthenticator is the authenticator of dev mode (no API key
// configured) for a listener: payments.DevAuthenticator (every request is
// merchant dev, with admin rights) when ln is LoopbackOnly; on a public
// interface every request is still merchant dev but never an admin, so
// /admin/* answers 403 forbidden: admin endpoints are never open to the
// network without a key.
func DevAuthenticator(ln net.Listener) payments.Authenticator {
	if LoopbackOnly(ln) {
		return payments.DevAuthenticator()
	}
	return publicDevAuth{}
}

type publicDevAuth struct{}

func (publicDevAuth) Authenticate(*http.Request) (payments.Principal, error) {
	return payments.Principal{Merchant: payments.DevMerchant}, nil
}

// CloseListener returns a func for Closers.Add that closes ln, ignoring
// that it may be closed already.
func CloseListener(ln net.Listener) func() error {
	return func() error {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	}
}

// NewRegistry returns a Prometheus registry with the Go runtime and
// process collectors registered.
func NewRegistry() (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
	}
	return reg, nil
}

// MetricsHandler serves reg's metrics in the Prometheus format (the
// /metrics endpoint), logging its errors to log.
func MetricsHandler(reg *prometheus.Registry, log *slog.Logger) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry: reg,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError),
	})
}

// SetupTelemetry sets up OpenTelemetry (observability.Setup) under
// serviceName, the service name when neither OTEL_SERVICE_NAME nor
// SERVICE_NAME is set: OTLP export per the OTEL_* environment, and metrics
// exported to reg. It adds the "telemetry" closer to cl, which flushes and
// shuts down within cfg.ShutdownTimeout.
func SetupTelemetry(ctx context.Context, cfg *config.Config, serviceName string, reg *prometheus.Registry, cl *Closers) error {
	shutdown, err := observability.Setup(ctx,
		observability.WithServiceName(serviceName), observability.WithPrometheus(reg))
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	cl.Add("telemetry", func() error {
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		return shutdown(sctx)
	})
	return nil
}

// MockGateway reports whether gatewayURL names the mock gateway.
func MockGateway(gatewayURL string) bool {
	u, err := url.Parse(gatewayURL)
	return err == nil && u.Scheme == "mock"
}

// OpenIdempotency opens the idempotency store IDEMPOTENCY_URL names and
// adds the "idempotency store" closer to cl.
func OpenIdempotency(ctx context.Context, cfg *config.Config, cl *Closers) (*idempotency.Store, error) {
	idem, err := idempotency.Open(ctx, cfg.IdempotencyURL)
	if err != nil {
		return nil, OpenError("IDEMPOTENCY_URL", err, idempotency.ErrUnknownDriver)
	}
	cl.Add("idempotency store", idem.Close)
	return idem, nil
}

// OpenTopic opens the bus topic at topicURL. A bus driver that is not
// compiled in is a ConfigError naming MESSAGE_BUS_ADAPTER.
func OpenTopic(ctx context.Context, cfg *config.Config, topicURL string) (*bus.Topic, error) {
	topic, err := bus.OpenTopic(ctx, topicURL)
	if err == nil {
		return topic, nil
	}
	if errors.Is(err, bus.ErrUnknownDriver) {
		return nil, ConfigError{fmt.Errorf("MESSAGE_BUS_ADAPTER=%s: %w%s", cfg.MessageBusAdapter, err, tagHint)}
	}
	return nil, fmt.Errorf("opening the bus topic: %w", err)
}

// ProcessorOptions returns the payments.New options both binaries use: the
// gateway router (OpenRouter), idempotency store, payment store and logger
// given, the retry policy, mode and gateway timeout from cfg, the global
// OpenTelemetry tracer and meter providers, and payments.WithEvents when
// cfg.Events (every process that changes payments records their events).
// The caller adds the bus options.
func ProcessorOptions(cfg *config.Config, gw gateway.Router, idem *idempotency.Store, store payments.Store, log *slog.Logger) []payments.Option {
	opts := []payments.Option{
		payments.WithRouter(gw),
		payments.WithIdempotencyStore(idem),
		payments.WithStore(store),
		payments.WithLogger(log),
		payments.WithRetryPolicy(payments.RetryPolicy{MaxAttempts: cfg.MaxAttempts, MaxBackoff: MaxBackoff}),
		payments.WithRecoveryPolicy(cfg.Recovery),
		payments.WithMode(cfg.DefaultMode),
		payments.WithGatewayTimeout(GatewayTimeout),
		payments.WithTracerProvider(otel.GetTracerProvider()),
		payments.WithMeterProvider(otel.GetMeterProvider()),
	}
	if cfg.Events {
		opts = append(opts, payments.WithEvents())
	}
	return opts
}

// WebhookOptions returns the worker options that deliver the payment
// events to the configured endpoints (payments.WithWebhooks, with a
// webhook.Client built from cfg, whose closer it adds to cl), or none when
// no endpoint is configured. It logs what the process does with events.
func WebhookOptions(cfg *config.Config, log *slog.Logger, cl *Closers) ([]payments.WorkerOption, error) {
	if !cfg.Webhooks() {
		if cfg.Events {
			log.Warn("PAYRAIL_EVENTS=true without webhook endpoints: this process records payment events but delivers none; " +
				"a worker configured with the endpoints delivers them")
		}
		return nil, nil
	}
	client, err := webhook.NewClient(cfg.WebhookClientOptions()...)
	if err != nil {
		return nil, ConfigError{fmt.Errorf("webhook client: %w", err)}
	}
	cl.Add("webhook client", client.Close)
	if cfg.WebhookAllowInsecure {
		log.Warn("PAYRAIL_WEBHOOK_ALLOW_INSECURE=true: webhooks may be sent over plain http; for development only")
	}
	log.Info("delivering webhooks", "endpoints", len(cfg.WebhookEndpoints))
	return []payments.WorkerOption{payments.WithWebhooks(payments.Webhooks{
		Endpoints:     payments.StaticEndpoints(cfg.WebhookEndpoints),
		Client:        client,
		SweepInterval: cfg.WebhookSweepInterval,
	})}, nil
}

// Endpoint is the listener a binary serves on: the API's for the server,
// /metrics and /healthz for the worker.
type Endpoint struct {
	// Listener is the caller's listener, or nil to listen on TCP Host:Port.
	Listener net.Listener
	// Host is the address to listen on when Listener is nil (LISTEN_HOST).
	Host string
	// Variable is the environment variable that configures Port, named in
	// errors.
	Variable string
	// Port is the TCP port to listen on when Listener is nil.
	Port int
	// Name names the listener in shutdown logs.
	Name string
}

// ListenWithTelemetry starts what a binary sets up first: the listener of
// e (Listen), closed by cl under e.Name, and a Prometheus registry
// (NewRegistry) to which telemetry (SetupTelemetry, under serviceName)
// exports metrics.
func ListenWithTelemetry(ctx context.Context, cfg *config.Config, serviceName string, e Endpoint, cl *Closers) (net.Listener, *prometheus.Registry, error) {
	ln, err := Listen(e.Listener, e.Variable, net.JoinHostPort(e.Host, strconv.Itoa(e.Port)))
	if err != nil {
		return nil, nil, err
	}
	cl.Add(e.Name, CloseListener(ln))
	reg, err := NewRegistry()
	if err != nil {
		return nil, nil, err
	}
	if err := SetupTelemetry(ctx, cfg, serviceName, reg, cl); err != nil {
		return nil, nil, err
	}
	return ln, reg, nil
}

// Backends are the payments processor's dependencies that both binaries
// open from the configuration.
type Backends struct {
	// Router routes payments to the gateways (OpenRouter).
	Router *routing.Router
	// Idempotency is the idempotency store (OpenIdempotency).
	Idempotency *idempotency.Store
	// Store is the payment store.
	Store payments.Store
}

// OpenBackends opens the gateway router (GATEWAY_URL, GATEWAY_URLS,
// GATEWAY_ROUTES), the idempotency store (IDEMPOTENCY_URL) and, unless
// store is given, the payment store PAYMENTS_STORE_URL names, adding their
// closers to cl (a given store is not closed).
//
// With a PostgreSQL payment store the routing policy is shared through it
// (SharedPolicySource).
func OpenBackends(ctx context.Context, cfg *config.Config, store payments.Store, log *slog.Logger, cl *Closers) (Backends, error) {
	if store == nil {
		var err error
		if store, err = payments.OpenStore(ctx, cfg.PaymentsStoreURL); err != nil {
			return Backends{}, OpenError("PAYMENTS_STORE_URL", err, payments.ErrUnknownStoreDriver)
		}
		cl.Add("payment store", store.Close)
	}
	gw, err := OpenRouter(ctx, cfg, log, cl, SharedPolicySource(store))
	if err != nil {
		return Backends{}, err
	}
	idem, err := OpenIdempotency(ctx, cfg, cl)
	if err != nil {
		return Backends{}, err
	}
	WarnMemoryStores(cfg, store, log)
	return Backends{Router: gw, Idempotency: idem, Store: store}, nil
}

// WarnMemoryStores logs one warning if the idempotency store
// (IDEMPOTENCY_URL) or the payment store is an in-process memory one.
func WarnMemoryStores(cfg *config.Config, store payments.Store, log *slog.Logger) {
	var mem []string
	if u, err := url.Parse(cfg.IdempotencyURL); err == nil && u.Scheme == "memory" {
		mem = append(mem, "IDEMPOTENCY_URL")
	}
	if _, ok := store.(*payments.MemoryStore); ok {
		mem = append(mem, "PAYMENTS_STORE_URL")
	}
	if len(mem) > 0 {
		log.Warn("memory stores are single-process and not durable: a restart loses their records "+
			"(idempotency keys, payments), and replicas do not share them; use shared stores in production",
			"stores", mem)
	}
}

// NewProcessor creates the payments processor over b with the options of
// ProcessorOptions followed by busOpts, and adds the "processor" closer to
// cl.
func (b Backends) NewProcessor(cfg *config.Config, log *slog.Logger, cl *Closers, busOpts ...payments.Option) (*payments.Processor, error) {
	p, err := payments.New(append(ProcessorOptions(cfg, b.Router, b.Idempotency, b.Store, log), busOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("payments processor: %w", err)
	}
	cl.Add("processor", p.Close)
	return p, nil
}

// NewWorker returns a worker for p, with opts, logging to log, that also
// runs the reconciler, which settles payments left processing with an
// unknown outcome through the gateway's Lookup. The worker's own error is
// prefixed with name.
func NewWorker(p *payments.Processor, log *slog.Logger, name string, opts ...payments.WorkerOption) (*payments.Worker, error) {
	rec, err := payments.NewReconciler(p, payments.WithReconcileLogger(log))
	if err != nil {
		return nil, fmt.Errorf("reconciler: %w", err)
	}
	w, err := payments.NewWorker(p, append(opts, payments.WithWorkerLogger(log), payments.WithReconciler(rec))...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return w, nil
}
