// Package config loads the configuration of payrail's reference deployment
// (examples/server and examples/worker) from environment variables, after
// loading a .env file from the working directory if there is one. Variables
// already set in the environment always win over the .env file, so a .env
// file suits local development and is harmless in containers.
//
// Every variable is optional; an empty value means "use the default". The
// variables, grouped as in .env.example:
//
// # HTTP
//
//   - LISTEN_HOST (default 127.0.0.1): the address the API server's and the
//     standalone worker's listeners bind. The default, loopback, keeps a
//     development server off the network; containers set 0.0.0.0 (the
//     Dockerfile, compose.yaml and infra/k8s do), or an interface's address.
//     On any address but loopback, a server without PAYRAIL_ADMIN_KEYS (dev
//     mode) refuses /admin/* (403): admin endpoints are never open on a
//     public interface without authentication.
//   - PORT (default 8080): TCP port the API server listens on.
//   - METRICS_PORT (default 9464, the OpenTelemetry Prometheus exporter's
//     port: 9090 is Prometheus's own): TCP port of the standalone worker's
//     /metrics and /healthz endpoints (the API server serves /metrics on
//     PORT).
//   - SHUTDOWN_TIMEOUT (default 30s): Go duration bounding each graceful
//     shutdown phase (finishing in-flight requests, draining the in-process
//     queue, finishing in-flight messages).
//
// # Message bus
//
//   - MESSAGE_BUS_ADAPTER (default inmemory): one of inmemory, sns-sqs,
//     pubsub, servicebus, kafka. inmemory runs the worker inside the API
//     server process; any other adapter needs a standalone worker
//     (examples/worker) and the adapter's driver compiled in.
//   - QUEUE_TYPE (default standard): standard or fifo (SQS queue type).
//   - PAYMENTS_TOPIC_ARN: the SNS topic ARN (sns-sqs adapter).
//   - PAYMENTS_QUEUE_URL: the SQS queue URL (sns-sqs adapter).
//   - BUS_TOPIC_URL, BUS_SUBSCRIPTION_URL: explicit bus URLs, such as
//     kafka://broker:9092/payments; they override the adapter's mapping (see
//     Config.BusURLs).
//
// # Payments
//
//   - GATEWAY_URL (default mock://): the payment gateway. mock:// never
//     moves money.
//   - GATEWAY_URLS: more gateways for routing, comma-separated, each named
//     with ?name= or written name=URL, e.g.
//     "stripe-us=stripe://?api_key_env=STRIPE_US_KEY,mock://?name=mock".
//     Opened at start; payments go to them only where the routing policy
//     says so.
//   - GATEWAY_ROUTES: the routing policy (docs/routing.md), inline JSON or
//     the path of a JSON file; unset routes every payment to GATEWAY_URL's
//     gateway. Operators replace it at runtime with PUT /admin/routes.
//     With a postgres:// PAYMENTS_STORE_URL the policy is shared through
//     the payment database by every server and worker: the first process
//     to start stores its GATEWAY_ROUTES, later ones follow the stored
//     policy, and a PUT through any process reaches all of them within
//     ROUTING_POLL_INTERVAL (default 2s).
//   - IDEMPOTENCY_URL (default memory://): the idempotency-key store.
//   - PAYMENTS_STORE_URL (default memory://): the payment store, by
//     registered scheme: memory:// (one process only) or
//     postgres://user@host:5432/db (package payments/postgres; apply its
//     schema with `opsctl db migrate --apply` first).
//   - PAYMENTS_DEFAULT_MODE (default sync): sync or async, the mode of
//     requests that do not send Prefer: respond-async.
//   - PAYMENTS_MAX_ATTEMPTS (default 3): gateway attempts per synchronous
//     request, and deliveries of an async command before its payment is
//     failed.
//   - RECOVERY_INTERVAL (default 30s), RECOVERY_STALE_AFTER (default 2m):
//     how often a worker's recovery sweep runs and how long an accepted
//     async payment must have stayed pending before its command is
//     republished (payments.RecoveryPolicy).
//   - RECONCILE_INTERVAL (default 30s), RECONCILE_STALE_AFTER (default:
//     2 × attempts × (gateway timeout + back-off) + 30s, at least 2m),
//     RECONCILE_MAX_AGE (default 24h): how often the reconciler sweeps,
//     how long a payment must have stayed processing before it is looked
//     up, and the provider's idempotency window, past which a payment is
//     no longer resumed with its key (failed if never processed, moved to
//     requires_review if its outcome is still unknown).
//   - WORKER_CONCURRENCY (default 16): commands a standalone worker
//     processes at once.
//
// # Authentication
//
//   - PAYRAIL_API_KEYS: merchant API keys, "key1:merchantA,key2:merchantB".
//   - PAYRAIL_ADMIN_KEYS: admin API keys, "keyX,keyY".
//
// Without any key the API server runs in development mode, where every
// request acts as merchant "dev". Key values never appear in errors or
// logs.
//
// # Webhooks
//
//   - PAYRAIL_WEBHOOK_ENDPOINTS_FILE, PAYRAIL_WEBHOOK_ENDPOINTS: the
//     merchants' webhook endpoints, a JSON array in a file (mounted from a
//     secret) or inline; see webhooks.go and docs/webhooks.md.
//   - PAYRAIL_WEBHOOK_ALLOW_INSECURE (default false): allow http:// URLs,
//     in development.
//   - PAYRAIL_WEBHOOK_ALLOWED_NETWORKS: private CIDR prefixes deliveries
//     may reach (default none).
//   - PAYRAIL_WEBHOOK_SWEEP_INTERVAL (default 1s): how often workers look
//     for deliveries due.
//   - PAYRAIL_EVENTS: record payment events (default: when endpoints are
//     configured; true records them without endpoints).
//
// Secrets never appear in errors or logs.
//
// # Observability
//
//   - LOG_LEVEL (default info): debug, info, warn or error.
//   - SERVICE_NAME (default payrail-server or payrail-worker): service name
//     of traces and metrics; OTEL_SERVICE_NAME takes precedence.
//   - OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL (grpc or
//     http/protobuf) and the other standard OTEL_* variables: read by
//     observability.Setup itself, not by this package. Without an endpoint
//     nothing is exported over OTLP; /metrics always works.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/joho/godotenv"

	"github.com/payrail/payrail/internal/registry"
	"github.com/payrail/payrail/payments"
	"github.com/payrail/payrail/webhook"
)

// Message bus adapters, the allowed values of MESSAGE_BUS_ADAPTER.
const (
	AdapterInMemory   = "inmemory"
	AdapterSNSSQS     = "sns-sqs"
	AdapterPubSub     = "pubsub"
	AdapterServiceBus = "servicebus"
	AdapterKafka      = "kafka"
)

// Adapters lists the allowed values of MESSAGE_BUS_ADAPTER.
func Adapters() []string {
	return []string{AdapterInMemory, AdapterSNSSQS, AdapterPubSub, AdapterServiceBus, AdapterKafka}
}

// Queue types, the allowed values of QUEUE_TYPE.
const (
	QueueStandard = "standard"
	QueueFIFO     = "fifo"
)

// InMemoryBusURL is the bus URL of the inmemory adapter, for both the topic
// and the subscription.
const InMemoryBusURL = "inmemory://payments"

// Defaults of the variables that have one.
const (
	DefaultListenHost        = "127.0.0.1"
	DefaultPort              = 8080
	DefaultMetricsPort       = 9464
	DefaultAdapter           = AdapterInMemory
	DefaultQueueType         = QueueStandard
	DefaultGatewayURL        = "mock://"
	DefaultIdempotencyURL    = "memory://"
	DefaultPaymentsStoreURL  = "memory://"
	DefaultMode              = payments.ModeSync
	DefaultMaxAttempts       = 3
	DefaultWorkerConcurrency = 16
	DefaultShutdownTimeout   = 30 * time.Second
	DefaultLogLevel          = slog.LevelInfo

	DefaultPaymentsTopic        = "payments"
	DefaultPaymentsSubscription = "payments-worker"
	DefaultKafkaGroupID         = "payments-worker"
)

// Limits on numeric settings, to catch typos such as an extra zero.
const (
	maxAttemptsLimit  = 100
	concurrencyLimit  = 10_000
	shutdownTimeLimit = 1 * time.Hour
	recoveryTimeLimit = 24 * time.Hour
)

// Config is the deployment's configuration. Load fills it from the
// environment; the zero value is not meaningful.
type Config struct {
	// ListenHost is the address the listeners bind (LISTEN_HOST): an IP
	// address, or localhost.
	ListenHost string
	// Port is the API server's TCP port (PORT).
	Port int
	// MetricsPort is the standalone worker's /metrics and /healthz port
	// (METRICS_PORT).
	MetricsPort int
	// ShutdownTimeout bounds each graceful shutdown phase (SHUTDOWN_TIMEOUT).
	ShutdownTimeout time.Duration

	// MessageBusAdapter is one of Adapters() (MESSAGE_BUS_ADAPTER).
	MessageBusAdapter string
	// QueueType is QueueStandard or QueueFIFO (QUEUE_TYPE).
	QueueType string
	// PaymentsTopicARN is the SNS topic ARN for sns-sqs (PAYMENTS_TOPIC_ARN).
	PaymentsTopicARN string
	// PaymentsQueueURL is the SQS queue URL for sns-sqs (PAYMENTS_QUEUE_URL).
	PaymentsQueueURL string
	// KafkaBrokers is the comma-separated broker list for kafka (KAFKA_BROKERS).
	KafkaBrokers string
	// KafkaGroupID is the worker's consumer group for kafka (KAFKA_GROUP_ID).
	KafkaGroupID string
	// PubSubProjectID is the Google Cloud project for pubsub (PUBSUB_PROJECT_ID).
	PubSubProjectID string
	// PaymentsTopic is the topic name for kafka, pubsub and servicebus
	// topics (PAYMENTS_TOPIC).
	PaymentsTopic string
	// PaymentsSubscription is the subscription name for pubsub and
	// servicebus topics (PAYMENTS_SUBSCRIPTION).
	PaymentsSubscription string
	// PaymentsQueue is the Service Bus queue; when set it is used instead of
	// a topic and subscription (PAYMENTS_QUEUE).
	PaymentsQueue string
	// BusTopicURL and BusSubscriptionURL override the adapter's bus URLs
	// (BUS_TOPIC_URL, BUS_SUBSCRIPTION_URL).
	BusTopicURL        string
	BusSubscriptionURL string

	// GatewayURL opens the payment gateway (GATEWAY_URL).
	GatewayURL string
	// GatewayURLs open more gateways, for routing (GATEWAY_URLS): URLs
	// naming their gateway with ?name=, normalised from the name=URL form.
	GatewayURLs []string
	// GatewayRoutes is the routing policy, inline JSON or a file path
	// (GATEWAY_ROUTES); empty routes every payment to GATEWAY_URL's gateway.
	GatewayRoutes string
	// RoutingPollInterval is how often a process reads the shared routing
	// policy (ROUTING_POLL_INTERVAL; 0: routing.DefaultPollInterval).
	RoutingPollInterval time.Duration
	// IdempotencyURL opens the idempotency store (IDEMPOTENCY_URL).
	IdempotencyURL string
	// PaymentsStoreURL names the payment store (PAYMENTS_STORE_URL).
	PaymentsStoreURL string
	// DefaultMode is the processor's initial default mode
	// (PAYMENTS_DEFAULT_MODE).
	DefaultMode payments.Mode
	// MaxAttempts is the gateway attempts of a sync request and deliveries
	// of an async command (PAYMENTS_MAX_ATTEMPTS).
	MaxAttempts int
	// WorkerConcurrency bounds the standalone worker's concurrent commands
	// (WORKER_CONCURRENCY).
	WorkerConcurrency int
	// Recovery holds the recovery timings (RECOVERY_INTERVAL,
	// RECOVERY_STALE_AFTER, RECONCILE_INTERVAL, RECONCILE_STALE_AFTER,
	// RECONCILE_MAX_AGE); zero fields take payments.RecoveryPolicy's
	// defaults.
	Recovery payments.RecoveryPolicy

	// APIKeys maps merchant API keys to merchants (PAYRAIL_API_KEYS). Secret.
	APIKeys map[string]string
	// AdminKeys are the admin API keys (PAYRAIL_ADMIN_KEYS). Secret.
	AdminKeys []string

	// Events is whether the processes record payment events for webhooks
	// (payments.WithEvents): PAYRAIL_EVENTS, true by default when
	// endpoints are configured.
	Events bool
	// WebhookEndpoints are the merchants' webhook endpoints, from
	// PAYRAIL_WEBHOOK_ENDPOINTS_FILE and PAYRAIL_WEBHOOK_ENDPOINTS. Their
	// secrets never print.
	WebhookEndpoints []webhook.Endpoint
	// WebhookEndpointsFile is PAYRAIL_WEBHOOK_ENDPOINTS_FILE.
	WebhookEndpointsFile string
	// WebhookAllowInsecure allows http:// endpoint URLs
	// (PAYRAIL_WEBHOOK_ALLOW_INSECURE; development only).
	WebhookAllowInsecure bool
	// WebhookAllowedNetworks are private prefixes the webhook client may
	// reach (PAYRAIL_WEBHOOK_ALLOWED_NETWORKS).
	WebhookAllowedNetworks []netip.Prefix
	// WebhookSweepInterval is how often a worker looks for deliveries due
	// (PAYRAIL_WEBHOOK_SWEEP_INTERVAL; 0: payments' default, 1s).
	WebhookSweepInterval time.Duration

	// LogLevel is the minimum level logged (LOG_LEVEL).
	LogLevel slog.Level
	// ServiceName is SERVICE_NAME, empty if unset; observability.Setup reads
	// the variable itself, and each binary supplies its own fallback.
	ServiceName string
}

// Names returns the names of the variables Load reads, in documentation
// order. The OTEL_* variables are read by observability.Setup and are not
// included.
func Names() []string {
	return []string{
		"LISTEN_HOST", "PORT", "METRICS_PORT", "SHUTDOWN_TIMEOUT",
		"MESSAGE_BUS_ADAPTER", "QUEUE_TYPE", "PAYMENTS_TOPIC_ARN", "PAYMENTS_QUEUE_URL",
		"KAFKA_BROKERS", "KAFKA_GROUP_ID", "PUBSUB_PROJECT_ID",
		"PAYMENTS_TOPIC", "PAYMENTS_SUBSCRIPTION", "PAYMENTS_QUEUE",
		"BUS_TOPIC_URL", "BUS_SUBSCRIPTION_URL",
		"GATEWAY_URL", "GATEWAY_URLS", "GATEWAY_ROUTES", "ROUTING_POLL_INTERVAL", "IDEMPOTENCY_URL", "PAYMENTS_STORE_URL",
		"PAYMENTS_DEFAULT_MODE", "PAYMENTS_MAX_ATTEMPTS",
		"RECOVERY_INTERVAL", "RECOVERY_STALE_AFTER", "RECONCILE_INTERVAL", "RECONCILE_STALE_AFTER", "RECONCILE_MAX_AGE",
		"WORKER_CONCURRENCY",
		"PAYRAIL_API_KEYS", "PAYRAIL_ADMIN_KEYS",
		"PAYRAIL_EVENTS", "PAYRAIL_WEBHOOK_ENDPOINTS_FILE", "PAYRAIL_WEBHOOK_ENDPOINTS", "PAYRAIL_WEBHOOK_ALLOW_INSECURE",
		"PAYRAIL_WEBHOOK_ALLOWED_NETWORKS", "PAYRAIL_WEBHOOK_SWEEP_INTERVAL",
		"LOG_LEVEL", "SERVICE_NAME",
	}
}

// DotEnvFile is the file Load reads from the working directory.
const DotEnvFile = ".env"

// Load loads DotEnvFile from the working directory if it exists, without
// overriding variables already set in the environment, then parses the
// environment with Parse.
func Load() (*Config, error) {
	if err := loadDotEnv(DotEnvFile); err != nil {
		return nil, err
	}
	return Parse(os.LookupEnv)
}

func loadDotEnv(name string) error {
	if _, err := os.Stat(name); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := godotenv.Load(name); err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return fmt.Errorf("config: reading %s: %w", name, err)
		}
		// godotenv's parse errors quote the rest of the file, which may hold
		// secrets such as API keys, so they are not repeated here.
		return fmt.Errorf("config: cannot parse %s: use NAME=value lines with names of letters, digits, '_' or '.', and close every quote", name)
	}
	return nil
}

// Parse builds a Config from the variables lookup returns (os.LookupEnv in
// Load). Unset and empty variables take their defaults. It reports every
// invalid variable at once, each error naming its variable; secret values
// are never included.
func Parse(lookup func(string) (string, bool)) (*Config, error) {
	p := parser{lookup: lookup}
	c := &Config{
		ListenHost:           p.host("LISTEN_HOST", DefaultListenHost),
		Port:                 p.port("PORT", DefaultPort),
		MetricsPort:          p.port("METRICS_PORT", DefaultMetricsPort),
		ShutdownTimeout:      p.duration("SHUTDOWN_TIMEOUT", DefaultShutdownTimeout),
		MessageBusAdapter:    p.oneOf("MESSAGE_BUS_ADAPTER", DefaultAdapter, Adapters()...),
		QueueType:            p.oneOf("QUEUE_TYPE", DefaultQueueType, QueueStandard, QueueFIFO),
		PaymentsTopicARN:     p.str("PAYMENTS_TOPIC_ARN", ""),
		PaymentsQueueURL:     p.str("PAYMENTS_QUEUE_URL", ""),
		KafkaBrokers:         p.str("KAFKA_BROKERS", ""),
		KafkaGroupID:         p.str("KAFKA_GROUP_ID", DefaultKafkaGroupID),
		PubSubProjectID:      p.str("PUBSUB_PROJECT_ID", ""),
		PaymentsTopic:        p.str("PAYMENTS_TOPIC", DefaultPaymentsTopic),
		PaymentsSubscription: p.str("PAYMENTS_SUBSCRIPTION", DefaultPaymentsSubscription),
		PaymentsQueue:        p.str("PAYMENTS_QUEUE", ""),
		BusTopicURL:          p.url("BUS_TOPIC_URL", ""),
		BusSubscriptionURL:   p.url("BUS_SUBSCRIPTION_URL", ""),
		GatewayURL:           p.url("GATEWAY_URL", DefaultGatewayURL),
		GatewayURLs:          p.gatewayURLs("GATEWAY_URLS"),
		GatewayRoutes:        p.str("GATEWAY_ROUTES", ""),
		RoutingPollInterval:  p.durationUpTo("ROUTING_POLL_INTERVAL", 0, time.Hour),
		IdempotencyURL:       p.url("IDEMPOTENCY_URL", DefaultIdempotencyURL),
		PaymentsStoreURL:     p.url("PAYMENTS_STORE_URL", DefaultPaymentsStoreURL),
		DefaultMode:          payments.Mode(p.oneOf("PAYMENTS_DEFAULT_MODE", string(DefaultMode), string(payments.ModeSync), string(payments.ModeAsync))),
		MaxAttempts:          p.intRange("PAYMENTS_MAX_ATTEMPTS", DefaultMaxAttempts, 1, maxAttemptsLimit),
		WorkerConcurrency:    p.intRange("WORKER_CONCURRENCY", DefaultWorkerConcurrency, 1, concurrencyLimit),
		Recovery: payments.RecoveryPolicy{
			SweepInterval:       p.durationUpTo("RECOVERY_INTERVAL", 0, recoveryTimeLimit),
			StaleAfter:          p.durationUpTo("RECOVERY_STALE_AFTER", 0, recoveryTimeLimit),
			ReconcileInterval:   p.durationUpTo("RECONCILE_INTERVAL", 0, recoveryTimeLimit),
			ReconcileStaleAfter: p.durationUpTo("RECONCILE_STALE_AFTER", 0, recoveryTimeLimit),
			MaxAge:              p.durationUpTo("RECONCILE_MAX_AGE", 0, 7*24*time.Hour),
		},
		APIKeys:     p.apiKeys("PAYRAIL_API_KEYS"),
		AdminKeys:   p.adminKeys("PAYRAIL_ADMIN_KEYS"),
		LogLevel:    p.level("LOG_LEVEL", DefaultLogLevel),
		ServiceName: p.str("SERVICE_NAME", ""),
	}
	p.webhooks(c) // webhooks.go
	p.check(c)
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return c, nil
}

// AuthEnabled reports whether any API key is configured; without keys the
// API server runs in development mode.
func (c *Config) AuthEnabled() bool { return len(c.APIKeys) > 0 || len(c.AdminKeys) > 0 }

// InMemoryBus reports whether the bus is the in-process inmemory adapter.
func (c *Config) InMemoryBus() bool { return c.MessageBusAdapter == AdapterInMemory }

// MemoryStore reports whether PAYMENTS_STORE_URL names the in-process
// memory store.
func (c *Config) MemoryStore() bool { return scheme(c.PaymentsStoreURL) == "memory" }

// BusURLs returns the topic and subscription URLs of the message bus.
//
// BUS_TOPIC_URL and BUS_SUBSCRIPTION_URL, when both set, win. Otherwise each
// adapter maps its own variables:
//
//	inmemory    inmemory://payments (both)
//	kafka       kafka://<KAFKA_BROKERS>/<PAYMENTS_TOPIC>
//	            kafka://<KAFKA_BROKERS>/<PAYMENTS_TOPIC>?group=<KAFKA_GROUP_ID>
//	sns-sqs     sns-sqs://?topic_arn=<PAYMENTS_TOPIC_ARN> (or ?queue_url=<PAYMENTS_QUEUE_URL>
//	            when no topic ARN is set: publish straight to the queue)
//	            sns-sqs://?queue_url=<PAYMENTS_QUEUE_URL>
//	            both with &fifo=true when QUEUE_TYPE=fifo
//	pubsub      pubsub://<PUBSUB_PROJECT_ID>/<PAYMENTS_TOPIC>
//	            pubsub://<PUBSUB_PROJECT_ID>/<PAYMENTS_TOPIC>?subscription=<PAYMENTS_SUBSCRIPTION>
//	servicebus  servicebus://<PAYMENTS_QUEUE> (both), or
//	            servicebus://<PAYMENTS_TOPIC> and servicebus://<PAYMENTS_TOPIC>?subscription=<PAYMENTS_SUBSCRIPTION>
//	            (credentials: SERVICEBUS_CONNECTION_STRING, read by the driver)
//
// The adapter's driver package must be compiled into the binary; bus.OpenTopic
// names the import when it is missing.
func (c *Config) BusURLs() (topic, subscription string, err error) {
	if c.BusTopicURL != "" && c.BusSubscriptionURL != "" {
		return c.BusTopicURL, c.BusSubscriptionURL, nil
	}
	need := func(vars ...string) error {
		return fmt.Errorf("config: MESSAGE_BUS_ADAPTER=%s needs %s (or BUS_TOPIC_URL and BUS_SUBSCRIPTION_URL)",
			c.MessageBusAdapter, strings.Join(vars, " and "))
	}
	esc := url.PathEscape
	switch c.MessageBusAdapter {
	case AdapterInMemory:
		return InMemoryBusURL, InMemoryBusURL, nil
	case AdapterKafka:
		if c.KafkaBrokers == "" {
			return "", "", need("KAFKA_BROKERS")
		}
		t := "kafka://" + strings.ReplaceAll(c.KafkaBrokers, " ", "") + "/" + esc(c.PaymentsTopic)
		return t, t + "?group=" + url.QueryEscape(c.KafkaGroupID), nil
	case AdapterSNSSQS:
		if c.PaymentsQueueURL == "" {
			return "", "", need("PAYMENTS_QUEUE_URL")
		}
		fifo := ""
		if c.QueueType == QueueFIFO {
			fifo = "&fifo=true"
		}
		sub := "sns-sqs://?queue_url=" + url.QueryEscape(c.PaymentsQueueURL) + fifo
		if c.PaymentsTopicARN == "" {
			return sub, sub, nil
		}
		return "sns-sqs://?topic_arn=" + url.QueryEscape(c.PaymentsTopicARN) + fifo, sub, nil
	case AdapterPubSub:
		if c.PubSubProjectID == "" {
			return "", "", need("PUBSUB_PROJECT_ID")
		}
		t := "pubsub://" + esc(c.PubSubProjectID) + "/" + esc(c.PaymentsTopic)
		return t, t + "?subscription=" + url.QueryEscape(c.PaymentsSubscription), nil
	case AdapterServiceBus:
		if c.PaymentsQueue != "" {
			q := "servicebus://" + esc(c.PaymentsQueue)
			return q, q, nil
		}
		t := "servicebus://" + esc(c.PaymentsTopic)
		return t, t + "?subscription=" + url.QueryEscape(c.PaymentsSubscription), nil
	}
	return "", "", fmt.Errorf("config: unknown MESSAGE_BUS_ADAPTER %q", c.MessageBusAdapter)
}

// LogValue implements slog.LogValuer: the configuration with URLs redacted
// and API keys reduced to counts.
func (c *Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("listen_host", c.ListenHost),
		slog.Int("port", c.Port),
		slog.Int("metrics_port", c.MetricsPort),
		slog.String("shutdown_timeout", c.ShutdownTimeout.String()),
		slog.String("message_bus_adapter", c.MessageBusAdapter),
		slog.String("queue_type", c.QueueType),
		slog.String("payments_topic_arn", c.PaymentsTopicARN),
		slog.String("payments_queue_url", Redact(c.PaymentsQueueURL)),
		slog.String("bus_topic_url", Redact(c.BusTopicURL)),
		slog.String("bus_subscription_url", Redact(c.BusSubscriptionURL)),
		slog.String("gateway_url", Redact(c.GatewayURL)),
		slog.Any("gateway_urls", redactAll(c.GatewayURLs)),
		slog.String("gateway_routes", routesForLog(c.GatewayRoutes)),
		slog.String("idempotency_url", Redact(c.IdempotencyURL)),
		slog.String("payments_store_url", Redact(c.PaymentsStoreURL)),
		slog.String("default_mode", string(c.DefaultMode)),
		slog.Int("max_attempts", c.MaxAttempts),
		slog.Int("worker_concurrency", c.WorkerConcurrency),
		slog.Int("api_keys", len(c.APIKeys)),
		slog.Int("admin_keys", len(c.AdminKeys)),
		slog.Group("webhooks", c.webhooksForLog()...),
		slog.String("log_level", c.LogLevel.String()),
		slog.String("service_name", c.ServiceName),
	)
}

// Redact returns a URL for logs: its password and the values of query
// parameters that look like credentials (key, secret, token, password...)
// replaced by "xxxxx". A string that does not parse is replaced entirely.
func Redact(rawURL string) string {
	if rawURL == "" {
		return ""
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable URL)"
	}
	return registry.Redact(u)
}

func scheme(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return u.Scheme
}

// parser reads variables and collects one error per invalid variable.
type parser struct {
	lookup func(string) (string, bool)
	errs   []error
}

func (p *parser) fail(name, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("config: %s: "+format, append([]any{name}, args...)...))
}

// raw returns the trimmed value of name, or "" if unset.
func (p *parser) raw(name string) string {
	v, _ := p.lookup(name)
	return strings.TrimSpace(v)
}

func (p *parser) str(name, def string) string {
	if v := p.raw(name); v != "" {
		return v
	}
	return def
}

func (p *parser) oneOf(name, def string, allowed ...string) string {
	v := p.raw(name)
	if v == "" {
		return def
	}
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	p.fail(name, "%q is not allowed; want one of %s", v, strings.Join(allowed, ", "))
	return def
}

func (p *parser) intRange(name string, def, lo, hi int) int {
	v := p.raw(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		p.fail(name, "%q is invalid; want an integer from %d to %d", v, lo, hi)
		return def
	}
	return n
}

// host accepts an IP address (0.0.0.0 and :: for every interface) or
// localhost: the host part of a listen address.
func (p *parser) host(name, def string) string {
	v := p.raw(name)
	if v == "" {
		return def
	}
	if v != "localhost" && net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(v, "["), "]")) == nil {
		p.fail(name, "%q is not an IP address; want 127.0.0.1 (this machine only), 0.0.0.0 or :: (every interface), or one interface's address", v)
		return def
	}
	return strings.TrimSuffix(strings.TrimPrefix(v, "["), "]")
}

// ListenAddr returns the address to listen on at port: ListenHost and port.
func (c *Config) ListenAddr(port int) string {
	return net.JoinHostPort(c.ListenHost, strconv.Itoa(port))
}

func (p *parser) port(name string, def int) int {
	return p.intRange(name, def, 1, 65535)
}

func (p *parser) duration(name string, def time.Duration) time.Duration {
	return p.durationUpTo(name, def, shutdownTimeLimit)
}

func (p *parser) durationUpTo(name string, def, limit time.Duration) time.Duration {
	v := p.raw(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 || d > limit {
		p.fail(name, "%q is invalid; want a positive Go duration up to %s, such as 30s", v, limit)
		return def
	}
	return d
}

func (p *parser) level(name string, def slog.Level) slog.Level {
	v := p.raw(name)
	if v == "" {
		return def
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(v)); err != nil {
		p.fail(name, "%q is invalid; want debug, info, warn or error", v)
		return def
	}
	return l
}

// url checks that the value is an absolute URL (scheme://...). URLs may
// carry credentials, so the value is not repeated in errors.
func (p *parser) url(name, def string) string {
	v := p.raw(name)
	if v == "" {
		return def
	}
	u, err := url.Parse(v)
	if err != nil || u.Scheme == "" || !strings.Contains(v, "://") {
		p.fail(name, "not a valid URL; want <scheme>://..., such as %s", urlExample(name))
		return def
	}
	return v
}

func urlExample(name string) string {
	switch name {
	case "GATEWAY_URL":
		return DefaultGatewayURL
	case "IDEMPOTENCY_URL", "PAYMENTS_STORE_URL":
		return "memory://"
	}
	return "kafka://broker:9092/payments"
}

func (p *parser) apiKeys(name string) map[string]string {
	v := p.raw(name)
	if v == "" {
		return nil
	}
	keys, err := payments.ParseAPIKeys(v) // its errors never include key material
	if err != nil {
		p.fail(name, "%v", strings.TrimPrefix(err.Error(), "payments: "))
		return nil
	}
	if len(keys) == 0 {
		p.fail(name, "set but holds no key:merchant entry")
		return nil
	}
	return keys
}

func (p *parser) adminKeys(name string) []string {
	v := p.raw(name)
	if v == "" {
		return nil
	}
	var keys []string
	for item := range strings.SplitSeq(v, ",") {
		if k := strings.TrimSpace(item); k != "" {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		p.fail(name, "set but holds no key")
	}
	return keys
}

// check validates relations between variables.
func (p *parser) check(c *Config) {
	p.checkRoutes(c) // routing.go
	if s := scheme(c.PaymentsStoreURL); s != "" && !slices.Contains(payments.StoreDrivers(), s) {
		p.fail("PAYMENTS_STORE_URL", "scheme %q has no payment store driver compiled in (registered: %s); add a blank import to examples/internal/drivers, such as github.com/payrail/payrail/payments/postgres",
			s, strings.Join(payments.StoreDrivers(), ", "))
	}
	if c.PaymentsTopicARN != "" && !strings.HasPrefix(c.PaymentsTopicARN, "arn:") {
		p.fail("PAYMENTS_TOPIC_ARN", "%q is not an ARN; want arn:aws:sns:<region>:<account>:<topic>", c.PaymentsTopicARN)
	}
	if c.PaymentsQueueURL != "" {
		if u, err := url.Parse(c.PaymentsQueueURL); err != nil || u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
			p.fail("PAYMENTS_QUEUE_URL", "not a valid queue URL; want https://sqs.<region>.amazonaws.com/<account>/<queue>")
		}
	}
	if c.QueueType == QueueFIFO {
		// SNS and SQS require FIFO topic and queue names to end in .fifo.
		if c.PaymentsTopicARN != "" && !strings.HasSuffix(c.PaymentsTopicARN, ".fifo") {
			p.fail("PAYMENTS_TOPIC_ARN", "QUEUE_TYPE=fifo needs a FIFO topic, whose name ends in .fifo")
		}
		if c.PaymentsQueueURL != "" && !strings.HasSuffix(strings.TrimSuffix(c.PaymentsQueueURL, "/"), ".fifo") {
			p.fail("PAYMENTS_QUEUE_URL", "QUEUE_TYPE=fifo needs a FIFO queue, whose name ends in .fifo")
		}
	}
	if c.MessageBusAdapter == AdapterInMemory && (c.BusTopicURL != "" || c.BusSubscriptionURL != "") {
		p.fail("MESSAGE_BUS_ADAPTER", "inmemory ignores BUS_TOPIC_URL and BUS_SUBSCRIPTION_URL; unset them, or choose the adapter they belong to")
	}
}
