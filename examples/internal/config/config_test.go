package config

import (
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/joho/godotenv"

	"github.com/payrail/payrail/payments"
)

func lookupMap(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}

// wantParseError checks that Parse fails on env with an error holding
// every string of want and none of secrets.
func wantParseError(t *testing.T, env map[string]string, want []string, secrets ...string) {
	t.Helper()
	c, err := Parse(lookupMap(env))
	if err == nil {
		t.Fatalf("Parse succeeded with %+v; want an error", c)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q leaks %q", err, s)
		}
	}
}

func TestParseDefaults(t *testing.T) {
	c, err := Parse(lookupMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		ListenHost:           "127.0.0.1", // dev mode is not reachable from the network
		Port:                 8080,
		MetricsPort:          9464,
		ShutdownTimeout:      30 * time.Second,
		MessageBusAdapter:    "inmemory",
		QueueType:            "standard",
		KafkaGroupID:         "payments-worker",
		PaymentsTopic:        "payments",
		PaymentsSubscription: "payments-worker",
		GatewayURL:           "mock://",
		IdempotencyURL:       "memory://",
		PaymentsStoreURL:     "memory://",
		DefaultMode:          payments.ModeSync,
		MaxAttempts:          3,
		WorkerConcurrency:    16,
		LogLevel:             slog.LevelInfo,
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("defaults:\n got %+v\nwant %+v", c, want)
	}
	if c.AuthEnabled() || !c.InMemoryBus() || !c.MemoryStore() {
		t.Fatalf("AuthEnabled=%v InMemoryBus=%v MemoryStore=%v", c.AuthEnabled(), c.InMemoryBus(), c.MemoryStore())
	}
	topic, sub, err := c.BusURLs()
	if err != nil || topic != "inmemory://payments" || sub != "inmemory://payments" {
		t.Fatalf("BusURLs() = %q, %q, %v", topic, sub, err)
	}
}

func TestParseValues(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		check func(*Config) bool
	}{
		{"port", map[string]string{"PORT": "3000"}, func(c *Config) bool { return c.Port == 3000 }},
		{"port trimmed", map[string]string{"PORT": " 3000 "}, func(c *Config) bool { return c.Port == 3000 }},
		{"empty means default", map[string]string{"PORT": "", "LOG_LEVEL": ""}, func(c *Config) bool { return c.Port == 8080 && c.LogLevel == slog.LevelInfo }},
		{"listen on every interface", map[string]string{"LISTEN_HOST": "0.0.0.0"}, func(c *Config) bool { return c.ListenAddr(8080) == "0.0.0.0:8080" }},
		{"listen on IPv6", map[string]string{"LISTEN_HOST": "[::]"}, func(c *Config) bool { return c.ListenAddr(8080) == "[::]:8080" }},
		{"listen on localhost", map[string]string{"LISTEN_HOST": "localhost"}, func(c *Config) bool { return c.ListenAddr(1) == "localhost:1" }},
		{"metrics port", map[string]string{"METRICS_PORT": "9100"}, func(c *Config) bool { return c.MetricsPort == 9100 }},
		{"shutdown timeout", map[string]string{"SHUTDOWN_TIMEOUT": "1m30s"}, func(c *Config) bool { return c.ShutdownTimeout == 90*time.Second }},
		{"recovery timings", map[string]string{"RECOVERY_INTERVAL": "10s", "RECOVERY_STALE_AFTER": "5m", "RECONCILE_INTERVAL": "1m",
			"RECONCILE_STALE_AFTER": "10m", "RECONCILE_MAX_AGE": "48h"}, func(c *Config) bool {
			return c.Recovery == payments.RecoveryPolicy{SweepInterval: 10 * time.Second, StaleAfter: 5 * time.Minute,
				ReconcileInterval: time.Minute, ReconcileStaleAfter: 10 * time.Minute, MaxAge: 48 * time.Hour}
		}},
		{"kafka", map[string]string{"MESSAGE_BUS_ADAPTER": "kafka"}, func(c *Config) bool { return c.MessageBusAdapter == "kafka" && !c.InMemoryBus() }},
		{"sns-sqs", map[string]string{"MESSAGE_BUS_ADAPTER": "sns-sqs", "PAYMENTS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:payments", "PAYMENTS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/payments"},
			func(c *Config) bool {
				return c.MessageBusAdapter == "sns-sqs" && c.PaymentsTopicARN == "arn:aws:sns:us-east-1:123456789012:payments" &&
					c.PaymentsQueueURL == "https://sqs.us-east-1.amazonaws.com/123456789012/payments"
			}},
		{"fifo", map[string]string{"QUEUE_TYPE": "fifo", "PAYMENTS_TOPIC_ARN": "arn:aws:sns:us-east-1:1:payments.fifo", "PAYMENTS_QUEUE_URL": "http://localhost:4566/000000000000/payments.fifo"},
			func(c *Config) bool { return c.QueueType == "fifo" }},
		{"pubsub", map[string]string{"MESSAGE_BUS_ADAPTER": "pubsub"}, func(c *Config) bool { return c.MessageBusAdapter == "pubsub" }},
		{"servicebus", map[string]string{"MESSAGE_BUS_ADAPTER": "servicebus"}, func(c *Config) bool { return c.MessageBusAdapter == "servicebus" }},
		{"gateway", map[string]string{"GATEWAY_URL": "mock://?latency=20ms"}, func(c *Config) bool { return c.GatewayURL == "mock://?latency=20ms" }},
		{"idempotency", map[string]string{"IDEMPOTENCY_URL": "memory://?max_entries=10"}, func(c *Config) bool { return c.IdempotencyURL == "memory://?max_entries=10" }},
		{"async", map[string]string{"PAYMENTS_DEFAULT_MODE": "async"}, func(c *Config) bool { return c.DefaultMode == payments.ModeAsync }},
		{"attempts", map[string]string{"PAYMENTS_MAX_ATTEMPTS": "5"}, func(c *Config) bool { return c.MaxAttempts == 5 }},
		{"concurrency", map[string]string{"WORKER_CONCURRENCY": "64"}, func(c *Config) bool { return c.WorkerConcurrency == 64 }},
		{"log level", map[string]string{"LOG_LEVEL": "DEBUG"}, func(c *Config) bool { return c.LogLevel == slog.LevelDebug }},
		{"log level warn", map[string]string{"LOG_LEVEL": "warn"}, func(c *Config) bool { return c.LogLevel == slog.LevelWarn }},
		{"service name", map[string]string{"SERVICE_NAME": "payments-api"}, func(c *Config) bool { return c.ServiceName == "payments-api" }},
		{"api keys", map[string]string{"PAYRAIL_API_KEYS": "ka:merchant-a, kb:merchant-b"},
			func(c *Config) bool {
				return reflect.DeepEqual(c.APIKeys, map[string]string{"ka": "merchant-a", "kb": "merchant-b"}) && c.AuthEnabled()
			}},
		{"admin keys", map[string]string{"PAYRAIL_ADMIN_KEYS": "x1, ,x2,"},
			func(c *Config) bool { return reflect.DeepEqual(c.AdminKeys, []string{"x1", "x2"}) && c.AuthEnabled() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(lookupMap(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Fatalf("unexpected config %+v", c)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string // substrings of the error
		// secret must not appear in the error.
		secret string
	}{
		{"port not a number", map[string]string{"PORT": "http"}, []string{"PORT", `"http"`}, ""},
		{"listen host with a port", map[string]string{"LISTEN_HOST": "0.0.0.0:8080"}, []string{"LISTEN_HOST", "not an IP address"}, ""},
		{"listen host a name", map[string]string{"LISTEN_HOST": "example.com"}, []string{"LISTEN_HOST", "not an IP address"}, ""},
		{"port out of range", map[string]string{"PORT": "70000"}, []string{"PORT", "1 to 65535"}, ""},
		{"port zero", map[string]string{"PORT": "0"}, []string{"PORT"}, ""},
		{"metrics port", map[string]string{"METRICS_PORT": "-1"}, []string{"METRICS_PORT"}, ""},
		{"adapter unknown", map[string]string{"MESSAGE_BUS_ADAPTER": "rabbitmq"}, []string{"MESSAGE_BUS_ADAPTER", "inmemory, sns-sqs, pubsub, servicebus, kafka"}, ""},
		{"adapter case", map[string]string{"MESSAGE_BUS_ADAPTER": "Kafka"}, []string{"MESSAGE_BUS_ADAPTER"}, ""},
		{"adapter old spelling", map[string]string{"MESSAGE_BUS_ADAPTER": "sqs"}, []string{"MESSAGE_BUS_ADAPTER"}, ""},
		{"queue type", map[string]string{"QUEUE_TYPE": "priority"}, []string{"QUEUE_TYPE", "standard, fifo"}, ""},
		{"topic arn", map[string]string{"PAYMENTS_TOPIC_ARN": "payments"}, []string{"PAYMENTS_TOPIC_ARN", "ARN"}, ""},
		{"queue url", map[string]string{"PAYMENTS_QUEUE_URL": "payments"}, []string{"PAYMENTS_QUEUE_URL"}, ""},
		{"fifo topic", map[string]string{"QUEUE_TYPE": "fifo", "PAYMENTS_TOPIC_ARN": "arn:aws:sns:us-east-1:1:payments"}, []string{"PAYMENTS_TOPIC_ARN", ".fifo"}, ""},
		{"fifo queue", map[string]string{"QUEUE_TYPE": "fifo", "PAYMENTS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/payments"}, []string{"PAYMENTS_QUEUE_URL", ".fifo"}, ""},
		{"bus url", map[string]string{"MESSAGE_BUS_ADAPTER": "kafka", "BUS_TOPIC_URL": "broker:9092"}, []string{"BUS_TOPIC_URL", "not a valid URL"}, ""},
		{"bus url with inmemory", map[string]string{"BUS_TOPIC_URL": "kafka://b/payments"}, []string{"MESSAGE_BUS_ADAPTER", "BUS_TOPIC_URL"}, ""},
		{"gateway url hides secret", map[string]string{"GATEWAY_URL": "sk_live_supersecret"}, []string{"GATEWAY_URL", "not a valid URL"}, "supersecret"},
		{"idempotency url", map[string]string{"IDEMPOTENCY_URL": "memory"}, []string{"IDEMPOTENCY_URL"}, ""},
		{"store not supported", map[string]string{"PAYMENTS_STORE_URL": "cassandra://db/payments"}, []string{"PAYMENTS_STORE_URL", "no payment store driver", "payments/postgres"}, ""},
		{"mode", map[string]string{"PAYMENTS_DEFAULT_MODE": "batch"}, []string{"PAYMENTS_DEFAULT_MODE", "sync, async"}, ""},
		{"attempts zero", map[string]string{"PAYMENTS_MAX_ATTEMPTS": "0"}, []string{"PAYMENTS_MAX_ATTEMPTS"}, ""},
		{"attempts text", map[string]string{"PAYMENTS_MAX_ATTEMPTS": "three"}, []string{"PAYMENTS_MAX_ATTEMPTS"}, ""},
		{"concurrency", map[string]string{"WORKER_CONCURRENCY": "0"}, []string{"WORKER_CONCURRENCY"}, ""},
		{"shutdown timeout unitless", map[string]string{"SHUTDOWN_TIMEOUT": "30"}, []string{"SHUTDOWN_TIMEOUT"}, ""},
		{"shutdown timeout negative", map[string]string{"SHUTDOWN_TIMEOUT": "-5s"}, []string{"SHUTDOWN_TIMEOUT"}, ""},
		{"reconcile max age too long", map[string]string{"RECONCILE_MAX_AGE": "720h"}, []string{"RECONCILE_MAX_AGE"}, ""},
		{"recovery interval unitless", map[string]string{"RECOVERY_INTERVAL": "30"}, []string{"RECOVERY_INTERVAL"}, ""},
		{"log level", map[string]string{"LOG_LEVEL": "verbose"}, []string{"LOG_LEVEL", "debug, info, warn or error"}, ""},
		{"api keys malformed hides key", map[string]string{"PAYRAIL_API_KEYS": "sk_topsecret_value"}, []string{"PAYRAIL_API_KEYS", "key:merchant"}, "topsecret"},
		{"api keys duplicate hides key", map[string]string{"PAYRAIL_API_KEYS": "sk_topsecret:a,sk_topsecret:b"}, []string{"PAYRAIL_API_KEYS", "duplicate"}, "topsecret"},
		{"api keys bad merchant hides key", map[string]string{"PAYRAIL_API_KEYS": "sk_topsecret:a b"}, []string{"PAYRAIL_API_KEYS", "merchant"}, "topsecret"},
		{"api keys empty list", map[string]string{"PAYRAIL_API_KEYS": ",,"}, []string{"PAYRAIL_API_KEYS", "no key"}, ""},
		{"admin keys empty list", map[string]string{"PAYRAIL_ADMIN_KEYS": " , "}, []string{"PAYRAIL_ADMIN_KEYS", "no key"}, ""},
		{"several at once", map[string]string{"PORT": "x", "LOG_LEVEL": "loud"}, []string{"PORT", "LOG_LEVEL"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var secrets []string
			if tt.secret != "" {
				secrets = append(secrets, tt.secret)
			}
			wantParseError(t, tt.env, tt.want, secrets...)
		})
	}
}

func TestBusURLs(t *testing.T) {
	tests := []struct {
		name          string
		env           map[string]string
		topic, sub    string
		wantErr       []string
		forbidInError string
	}{
		{name: "inmemory", env: nil, topic: "inmemory://payments", sub: "inmemory://payments"},
		{name: "explicit", env: map[string]string{"MESSAGE_BUS_ADAPTER": "kafka", "BUS_TOPIC_URL": "kafka://b:9092/payments", "BUS_SUBSCRIPTION_URL": "kafka://b:9092/payments?group=workers"},
			topic: "kafka://b:9092/payments", sub: "kafka://b:9092/payments?group=workers"},
		{name: "kafka mapping", env: map[string]string{"MESSAGE_BUS_ADAPTER": "kafka", "KAFKA_BROKERS": "b1:9092, b2:9092"},
			topic: "kafka://b1:9092,b2:9092/payments", sub: "kafka://b1:9092,b2:9092/payments?group=payments-worker"},
		{name: "kafka custom topic and group", env: map[string]string{"MESSAGE_BUS_ADAPTER": "kafka", "KAFKA_BROKERS": "b:9092", "PAYMENTS_TOPIC": "pay", "KAFKA_GROUP_ID": "g1"},
			topic: "kafka://b:9092/pay", sub: "kafka://b:9092/pay?group=g1"},
		{name: "kafka without brokers", env: map[string]string{"MESSAGE_BUS_ADAPTER": "kafka"},
			wantErr: []string{"MESSAGE_BUS_ADAPTER=kafka", "KAFKA_BROKERS", "BUS_TOPIC_URL and BUS_SUBSCRIPTION_URL"}},
		{name: "sns-sqs topic and queue", env: map[string]string{"MESSAGE_BUS_ADAPTER": "sns-sqs", "PAYMENTS_TOPIC_ARN": "arn:aws:sns:us-east-1:1:p", "PAYMENTS_QUEUE_URL": "http://q/1/p"},
			topic: "sns-sqs://?topic_arn=arn%3Aaws%3Asns%3Aus-east-1%3A1%3Ap", sub: "sns-sqs://?queue_url=http%3A%2F%2Fq%2F1%2Fp"},
		{name: "sns-sqs queue only, fifo", env: map[string]string{"MESSAGE_BUS_ADAPTER": "sns-sqs", "QUEUE_TYPE": "fifo", "PAYMENTS_QUEUE_URL": "http://q/1/p.fifo"},
			topic: "sns-sqs://?queue_url=http%3A%2F%2Fq%2F1%2Fp.fifo&fifo=true", sub: "sns-sqs://?queue_url=http%3A%2F%2Fq%2F1%2Fp.fifo&fifo=true"},
		{name: "sns-sqs without queue", env: map[string]string{"MESSAGE_BUS_ADAPTER": "sns-sqs", "PAYMENTS_TOPIC_ARN": "arn:aws:sns:us-east-1:1:p"},
			wantErr: []string{"sns-sqs", "PAYMENTS_QUEUE_URL"}},
		{name: "pubsub mapping", env: map[string]string{"MESSAGE_BUS_ADAPTER": "pubsub", "PUBSUB_PROJECT_ID": "proj"},
			topic: "pubsub://proj/payments", sub: "pubsub://proj/payments?subscription=payments-worker"},
		{name: "pubsub without project", env: map[string]string{"MESSAGE_BUS_ADAPTER": "pubsub", "BUS_TOPIC_URL": "pubsub://p/t"},
			wantErr: []string{"pubsub", "PUBSUB_PROJECT_ID"}},
		{name: "servicebus queue", env: map[string]string{"MESSAGE_BUS_ADAPTER": "servicebus", "PAYMENTS_QUEUE": "payments"},
			topic: "servicebus://payments", sub: "servicebus://payments"},
		{name: "servicebus topic", env: map[string]string{"MESSAGE_BUS_ADAPTER": "servicebus", "PAYMENTS_TOPIC": "t", "PAYMENTS_SUBSCRIPTION": "s"},
			topic: "servicebus://t", sub: "servicebus://t?subscription=s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(lookupMap(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			topic, sub, err := c.BusURLs()
			if tt.wantErr == nil {
				if err != nil || topic != tt.topic || sub != tt.sub {
					t.Fatalf("BusURLs() = %q, %q, %v; want %q, %q", topic, sub, err, tt.topic, tt.sub)
				}
				return
			}
			if err == nil {
				t.Fatalf("BusURLs() = %q, %q; want an error", topic, sub)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tt.forbidInError != "" && strings.Contains(err.Error(), tt.forbidInError) {
				t.Errorf("error %q contains %q", err, tt.forbidInError)
			}
		})
	}
}

func TestLogValueHidesSecrets(t *testing.T) {
	c, err := Parse(lookupMap(map[string]string{
		"PAYRAIL_API_KEYS":   "sk_secret_merchant:acme",
		"PAYRAIL_ADMIN_KEYS": "sk_secret_admin",
		"GATEWAY_URL":        "mock://user:sk_secret_pw@host/?api_key=sk_secret_q&latency=1ms",
	}))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("config", "config", c)
	out := b.String()
	if strings.Contains(out, "sk_secret") {
		t.Fatalf("log leaks a secret: %s", out)
	}
	for _, w := range []string{`"api_keys":1`, `"admin_keys":1`, "latency=1ms"} {
		if !strings.Contains(out, w) {
			t.Errorf("log %s does not contain %s", out, w)
		}
	}
}

func TestRedact(t *testing.T) {
	tests := map[string]string{
		"":                                   "",
		"mock://":                            "mock://",
		"kafka://u:p@b:9092/t":               "kafka://u:xxxxx@b:9092/t",
		"stripe://?api_key=sk_live&name=eu":  "stripe://?api_key=xxxxx&name=eu",
		"azuresb://ns?SharedAccessKey=abc":   "azuresb://ns?SharedAccessKey=xxxxx",
		"redis://cache:6379/0?password=hunt": "redis://cache:6379/0?password=xxxxx",
		"%zz://x":                            "(unparsable URL)",
	}
	for in, want := range tests {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestLoadDotEnv(t *testing.T) {
	dir := t.TempDir()
	env := "# local development\nPORT=9999\nLOG_LEVEL=debug\nWORKER_CONCURRENCY=4\nPAYRAIL_API_KEYS=\"kdev:acme\"\n"
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(env), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	for _, n := range Names() {
		if n != "LOG_LEVEL" && n != "WORKER_CONCURRENCY" {
			t.Setenv(n, "") // set (empty): the .env file must not override it
		}
	}
	t.Setenv("LOG_LEVEL", "warn") // set: wins over .env
	unsetEnv(t, "WORKER_CONCURRENCY")

	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.LogLevel != slog.LevelWarn {
		t.Errorf("LOG_LEVEL = %v; the environment must win over .env", c.LogLevel)
	}
	if c.Port != 8080 || c.AuthEnabled() {
		t.Errorf("PORT = %d, auth = %v; variables set (even empty) must win over .env", c.Port, c.AuthEnabled())
	}
	if c.WorkerConcurrency != 4 {
		t.Errorf("WORKER_CONCURRENCY = %d; want 4 from .env", c.WorkerConcurrency)
	}
}

func TestLoadWithoutDotEnv(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, n := range Names() {
		t.Setenv(n, "")
	}
	c, err := Load()
	if err != nil || c.Port != DefaultPort {
		t.Fatalf("Load() = %+v, %v", c, err)
	}
}

func TestLoadMalformedDotEnvHidesContent(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte("PAYRAIL_API_KEYS=\"sk_secret_unterminated\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	unsetEnv(t, "PAYRAIL_API_KEYS")
	_, err := Load()
	if err == nil {
		t.Fatal("Load succeeded with a malformed .env")
	}
	if strings.Contains(err.Error(), "sk_secret") || !strings.Contains(err.Error(), ".env") {
		t.Fatalf("error %q: want it to name .env without quoting its content", err)
	}
}

// unsetEnv unsets name for the test, restoring it afterwards.
func unsetEnv(t *testing.T, name string) {
	t.Helper()
	t.Setenv(name, "") // registers the restore
	if err := os.Unsetenv(name); err != nil {
		t.Fatal(err)
	}
}

// TestEnvExample checks that .env.example documents every variable and
// loads to the defaults.
func TestEnvExample(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "..", ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	env, err := godotenv.UnmarshalBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range Names() {
		if _, ok := env[n]; !ok {
			t.Errorf(".env.example does not set %s", n)
		}
	}
	for _, n := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if !strings.Contains(string(b), n) {
			t.Errorf(".env.example does not document %s", n)
		}
	}
	c, err := Parse(lookupMap(env))
	if err != nil {
		t.Fatal(err)
	}
	d, _ := Parse(lookupMap(nil))
	if !reflect.DeepEqual(c, d) {
		t.Errorf(".env.example values differ from the defaults:\n got %+v\nwant %+v", c, d)
	}
}
