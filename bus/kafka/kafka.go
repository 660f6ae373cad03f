// Package kafka is payrail's Apache Kafka bus driver, built on
// github.com/IBM/sarama and registered under the name "kafka".
//
//	import _ "github.com/payrail/payrail/bus/kafka"
//
//	topic, err := bus.OpenTopic(ctx, "kafka://broker1:9092,broker2:9092/payments")
//	sub, err := bus.OpenSubscription(ctx, "kafka://broker1:9092,broker2:9092/payments?group=payments-worker")
//
// # URLs
//
//	kafka://[user:password@]host1:9092[,host2:9092...]/<topic>[?params]
//
// The host part is the comma-separated bootstrap broker list, the path the
// topic. User information is the SASL user and password. Parameters common
// to topics and subscriptions:
//
//   - version: the Kafka protocol version sarama speaks (default 3.6.0;
//     set it to your brokers' version);
//   - client_id: the client id sent to the brokers (default "payrail");
//   - tls=true: connect with TLS, verifying the brokers with the system
//     roots, or with tls_ca=<PEM file>; tls_cert and tls_key (PEM files)
//     add a client certificate; tls_server_name overrides the name
//     verified; tls_insecure_skip_verify=true disables verification (tests
//     only);
//   - sasl=plain|scram-sha-256|scram-sha-512: SASL mechanism, with the
//     URL's user and password (required with sasl, and only with it);
//   - dial_timeout: broker connection timeout (default 10s);
//   - sarama_metrics=true: keep sarama's own go-metrics (request rates,
//     sizes and latencies), read through As: client.Config().MetricRegistry.
//     They are off by default: sarama updates them on every request, at a
//     cost above the driver's own per message, and the bus package already
//     records publish and consume metrics with OpenTelemetry.
//
// Topic parameters:
//
//   - idempotent (default true): the idempotent producer (acks=all, one
//     in-flight request per broker, broker-side deduplication of retries);
//   - acks=all|leader|none (default all; idempotent requires all);
//   - compression=none|gzip|snappy|lz4|zstd (default none).
//
// Subscription parameters:
//
//   - group (required): the consumer group; every subscription handle with
//     the same group competes for the topic's partitions, different groups
//     each receive every message (fan-out);
//   - dlq: the dead-letter topic (default <topic>.dlq);
//   - initial=oldest|newest (default oldest): where a group without a
//     committed offset starts; oldest makes a new group see what was
//     published before it first joined, like a queue;
//   - session_timeout (default 10s), heartbeat_interval (default 3s),
//     rebalance_timeout (default 60s): consumer group timings;
//   - commit_interval (default 1s): how often settled offsets are committed
//     (they are also committed when a partition is revoked and on Close);
//   - prefetch (default 512): records a handle holds at most (buffered,
//     delayed for a retry, or being handled); the claim stops fetching when
//     it is reached;
//   - drain_timeout (default 30s): how long a revoked partition waits for
//     its deliveries being handled to be settled before it is handed over;
//     it must be below rebalance_timeout;
//   - ordered (default true): per-key ordering, see below;
//   - balance=range|roundrobin|sticky (default range): partition assignment;
//   - attempts_metadata_max (default 2048): the bytes of committed offset
//     metadata that carry delivery attempts (see Nack and retries); it must
//     not exceed the brokers' offset.metadata.max.bytes (default 4096), or
//     the partition's commits fail; 0 keeps attempts in memory only, so
//     that they restart at 1 after a rebalance or restart.
//
// Topics must exist, with their dead-letter topic: opening a missing topic
// (or a subscription whose topic or dead-letter topic is missing) fails with
// an error wrapping bus.ErrNotFound. EnsureTopic creates both.
//
// # Publishing
//
// Publish and PublishBatch return once the brokers acknowledged every
// record (acks=all by default). Records go through one sarama AsyncProducer
// per topic, so concurrent publishes and the records of a batch are
// pipelined into the producer's batches instead of each waiting for its
// own round trip. A message's Key is the record key (sarama's hash
// partitioner maps it to a partition, so one key stays in one partition and
// in order); an empty Key is sent as a null key and spread over partitions.
// Attributes become record headers; the message ID travels in the header
// payrail.id. Attribute names used by the driver (payrail.id,
// payrail.redrive.group and payrail.dlq.*) are refused.
//
// # Consuming, acks and commits
//
// A subscription handle is one member of its consumer group. Each claimed
// partition feeds the handle's queue; offsets are committed only after the
// records are settled, and only contiguously: for every partition the
// committed offset is the lowest offset not yet acked or dead-lettered
// (the contiguous-offset tracker), so acks in any order never let a commit
// skip an unsettled record. After a crash or a rebalance every unsettled
// record is delivered again (with some settled ones after it: delivery is
// at least once). When a partition is revoked, its records not yet handed
// to a handler are dropped and the claim waits up to drain_timeout for the
// ones being handled, then commits and lets the partition go; a message
// settled after that gets ErrRevoked from Ack, as its new owner delivers it
// again.
//
// # Nack and retries
//
// Kafka has no per-message negative acknowledgement. This driver keeps a
// nacked record in the handle's memory and delivers it again after the
// requested delay (an in-process timer), with DeliveryAttempt incremented;
// its offset stays uncommitted, so the commit point cannot pass it while it
// waits. No retry topic is used: re-publishing a retry, to the topic or to
// another, would let later records with its key overtake it, and a retry
// topic would fan it out to every group.
//
// Attempt counts survive rebalances and restarts: they travel in the
// consumer group's committed offset metadata. A nack records the record's
// deliveries so far, for every nacked record at or after the partition's
// commit point, in the metadata of the commit point (re-marked at the same
// offset), and commits it before the record can be delivered again (a
// commit that fails is retried with the partition's next one); a nack
// during a revoked partition's drain is committed when the claim ends. The
// next owner of the partition (another member after a rebalance, or this
// process after a restart) reads the metadata when it claims the partition
// and continues each record's count from there, so package bus
// dead-letters a message once its handler failed on the last allowed
// attempt (bus.WithMaxAttempts) in total, however often the partition
// moved, and the payrail.dlq.attempts header is that total. Acks add no
// request: a commit that moves the commit point carries the metadata as
// the last nack encoded it, and drops it once the commit point is past
// every record it names. The metadata is bounded by attempts_metadata_max;
// when more nacked records are waiting than fit, those with the most
// attempts keep their counts (the others would restart at 1 after a
// rebalance). Deliveries that ended without a settle (a crash during the
// handler, or a handler still running when its partition was handed over
// after drain_timeout) are not counted.
//
// There is no ack deadline (Capabilities.AckDeadline is zero), so a handler
// may run as long as it needs, holding back the commit point of its
// partition meanwhile.
//
// # Ordering
//
// With ordered=true (the default) records with the same non-empty key are
// delivered one at a time in offset order: the next is handed out only once
// the previous was acked or dead-lettered, and a nacked one is retried
// before any later record with its key. Records with different keys, or
// without a key, are delivered concurrently, up to the receiver's
// concurrency. Across handles of a group, Kafka assigns each partition to
// one member at a time, so the order holds across rebalances too.
//
// # Dead letters
//
// DeadLetter produces the record, with its key, value and headers, to the
// dead-letter topic, adding the headers payrail.dlq.reason,
// payrail.dlq.group, payrail.dlq.attempts, payrail.dlq.at and
// payrail.dlq.source (topic/partition/offset), and then settles it. One
// dead-letter topic may serve several groups: each group sees only its own
// dead letters. DeadLetters reads them from the group's redrive cursor (the
// committed offsets of the consumer group <group>.dlq) to the end of the
// dead-letter topic, without consuming them; Redrive produces them back to
// the topic with the header payrail.redrive.group, so that the other groups
// consuming the topic skip them, and moves the cursor past them. A redriven
// message keeps its ID, key, body and attributes and starts again at
// delivery attempt 1. Redrive is at least once: a crash between the produce
// and the cursor commit redrives those messages again.
//
// # Stats
//
// Stats reads the group's lag: for the partitions this handle owns, the
// records after the last one fetched plus those buffered or waiting for a
// retry; for the others, the high-water mark minus the group's committed
// offset (which counts records that another member is handling). InFlight
// counts this handle's deliveries being handled; DeadLetters counts this
// group's records after its redrive cursor (reading them). OldestAge is the
// age (by record timestamp) of the oldest of the records at each
// partition's commit point: the lowest unsettled offset on the partitions
// this handle owns, the group's committed offset on the others (which may
// have been settled since the last commit, overstating the age by up to a
// commit interval); reading it fetches one record per partition with
// unsettled records.
//
// # As
//
// Topics convert with As to *sarama.Client and *sarama.AsyncProducer;
// subscriptions to *sarama.Client and *sarama.ConsumerGroup.
package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/rcrowley/go-metrics"
	"github.com/xdg-go/scram"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/driver"
)

// Scheme is the URL scheme, and driver name, this package registers.
const Scheme = "kafka"

// DefaultVersion is the Kafka protocol version used when the URL sets none.
var DefaultVersion = sarama.V3_6_0_0

// ErrRevoked is returned when a message is settled after its partition was
// handed to another member of the group, which delivers it again.
var ErrRevoked = errors.New("kafka: partition revoked before the message was settled; its new owner delivers it again")

// Header names the driver uses. Attributes with these names are refused.
const (
	HeaderID           = "payrail.id"
	HeaderRedriveGroup = "payrail.redrive.group"
	HeaderDLQReason    = "payrail.dlq.reason"
	HeaderDLQGroup     = "payrail.dlq.group"
	HeaderDLQAttempts  = "payrail.dlq.attempts"
	HeaderDLQAt        = "payrail.dlq.at"
	HeaderDLQSource    = "payrail.dlq.source"
)

func reservedHeader(name string) bool {
	return name == HeaderID || name == HeaderRedriveGroup || strings.HasPrefix(name, "payrail.dlq.")
}

func init() { bus.Register(Scheme, Driver{}) }

// Driver opens Kafka topics and subscriptions from kafka:// URLs; see the
// package documentation. It is registered under Scheme.
type Driver struct{}

var _ driver.Driver = Driver{}

// OpenTopic opens the topic the URL names, checking that it exists.
func (Driver) OpenTopic(ctx context.Context, u *url.URL) (driver.Topic, error) {
	cfg, err := parseURL(u, false)
	if err != nil {
		return nil, err
	}
	return openTopic(ctx, cfg)
}

// OpenSubscription opens a member of the URL's consumer group, checking
// that the topic and its dead-letter topic exist, and joins the group.
func (Driver) OpenSubscription(ctx context.Context, u *url.URL) (driver.Subscription, error) {
	cfg, err := parseURL(u, true)
	if err != nil {
		return nil, err
	}
	return openSubscription(ctx, cfg)
}

// config is a parsed URL.
type config struct {
	brokers      []string
	topic        string
	group        string
	dlqTopic     string
	sarama       *sarama.Config
	prefetch     int
	drainTimeout time.Duration
	ordered      bool
	// attemptsMetadataMax bounds the committed offset metadata carrying
	// delivery attempts; 0 keeps attempts in memory only.
	attemptsMetadataMax int
}

func invalidURL(format string, args ...any) error {
	return fmt.Errorf("kafka: %s: %w", fmt.Sprintf(format, args...), driver.ErrInvalidURL)
}

func parseURL(u *url.URL, sub bool) (*config, error) {
	if u == nil {
		return nil, invalidURL("nil URL")
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, invalidURL("missing brokers; want kafka://host:port[,host:port]/<topic>")
	}
	cfg := &config{prefetch: 512, drainTimeout: 30 * time.Second, ordered: true, attemptsMetadataMax: defaultAttemptsMetadataMax}
	for _, b := range strings.Split(u.Host, ",") {
		b = strings.TrimSpace(b)
		if b == "" {
			return nil, invalidURL("empty broker address in %q", u.Host)
		}
		if !strings.Contains(b, ":") {
			return nil, invalidURL("broker %q has no port", b)
		}
		cfg.brokers = append(cfg.brokers, b)
	}
	cfg.topic = strings.TrimPrefix(u.Path, "/")
	if cfg.topic == "" || strings.Contains(cfg.topic, "/") {
		return nil, invalidURL("the path must be one topic name, got %q", u.Path)
	}
	if u.Fragment != "" {
		return nil, invalidURL("unexpected fragment")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, invalidURL("malformed query: %v", err)
	}
	sc := sarama.NewConfig()
	sc.Version = DefaultVersion
	sc.ClientID = "payrail"
	sc.Metadata.AllowAutoTopicCreation = false
	sc.Producer.Idempotent = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Retry.Max = 5
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sc.Net.MaxOpenRequests = 1
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.Offsets.AutoCommit.Enable = true
	sc.Consumer.Offsets.AutoCommit.Interval = time.Second
	sc.Consumer.Return.Errors = false
	sc.MetricRegistry = noMetrics{}

	var tlsOn, insecure bool
	var caFile, certFile, keyFile, serverName, mechanism string
	for name, vals := range q {
		if len(vals) != 1 {
			return nil, invalidURL("parameter %q given %d times", name, len(vals))
		}
		v := vals[0]
		bad := func(want string) error { return invalidURL("%s=%q is not %s", name, v, want) }
		switch name {
		case "version":
			ver, err := sarama.ParseKafkaVersion(v)
			if err != nil {
				return nil, bad("a Kafka version such as 3.6.0")
			}
			sc.Version = ver
		case "client_id":
			if v == "" {
				return nil, bad("a client id")
			}
			sc.ClientID = v
		case "tls":
			if tlsOn, err = strconv.ParseBool(v); err != nil {
				return nil, bad("a boolean")
			}
		case "tls_ca":
			caFile = v
		case "tls_cert":
			certFile = v
		case "tls_key":
			keyFile = v
		case "tls_server_name":
			serverName = v
		case "tls_insecure_skip_verify":
			if insecure, err = strconv.ParseBool(v); err != nil {
				return nil, bad("a boolean")
			}
		case "sasl":
			mechanism = strings.ToLower(v)
		case "dial_timeout":
			if sc.Net.DialTimeout, err = positiveDuration(v); err != nil {
				return nil, bad("a positive duration")
			}
		case "sarama_metrics":
			keep, err := strconv.ParseBool(v)
			if err != nil {
				return nil, bad("a boolean")
			}
			if keep {
				sc.MetricRegistry = metrics.NewRegistry()
			}
		case "idempotent":
			if !sub {
				if sc.Producer.Idempotent, err = strconv.ParseBool(v); err != nil {
					return nil, bad("a boolean")
				}
				continue
			}
			return nil, invalidURL("unknown subscription parameter %q", name)
		case "acks":
			if sub {
				return nil, invalidURL("unknown subscription parameter %q", name)
			}
			switch v {
			case "all":
				sc.Producer.RequiredAcks = sarama.WaitForAll
			case "leader":
				sc.Producer.RequiredAcks = sarama.WaitForLocal
			case "none":
				sc.Producer.RequiredAcks = sarama.NoResponse
			default:
				return nil, bad("all, leader or none")
			}
		case "compression":
			if sub {
				return nil, invalidURL("unknown subscription parameter %q", name)
			}
			switch v {
			case "none":
				sc.Producer.Compression = sarama.CompressionNone
			case "gzip":
				sc.Producer.Compression = sarama.CompressionGZIP
			case "snappy":
				sc.Producer.Compression = sarama.CompressionSnappy
			case "lz4":
				sc.Producer.Compression = sarama.CompressionLZ4
			case "zstd":
				sc.Producer.Compression = sarama.CompressionZSTD
			default:
				return nil, bad("none, gzip, snappy, lz4 or zstd")
			}
		default:
			if !sub {
				return nil, invalidURL("unknown topic parameter %q", name)
			}
			if err := parseSubParam(cfg, sc, name, v); err != nil {
				return nil, err
			}
		}
	}
	if sub && cfg.group == "" {
		return nil, invalidURL("missing group parameter; want kafka://host:port/<topic>?group=<consumer group>")
	}
	if sub && cfg.dlqTopic == "" {
		cfg.dlqTopic = cfg.topic + ".dlq"
	}
	if sub && cfg.drainTimeout >= sc.Consumer.Group.Rebalance.Timeout {
		return nil, invalidURL("drain_timeout (%v) must be below rebalance_timeout (%v), or a draining member is evicted from the group", cfg.drainTimeout, sc.Consumer.Group.Rebalance.Timeout)
	}
	if sub && cfg.dlqTopic == cfg.topic {
		return nil, invalidURL("the dead-letter topic must differ from the topic")
	}
	if sc.Producer.Idempotent && sc.Producer.RequiredAcks != sarama.WaitForAll {
		return nil, invalidURL("acks must be all with the idempotent producer (set idempotent=false)")
	}
	if !sc.Producer.Idempotent {
		sc.Net.MaxOpenRequests = 5
	}
	if err := configureSASL(sc, u, mechanism); err != nil {
		return nil, err
	}
	if tlsOn || caFile != "" || certFile != "" || keyFile != "" || insecure || serverName != "" {
		tc, err := tlsConfig(caFile, certFile, keyFile, serverName, insecure)
		if err != nil {
			return nil, err
		}
		sc.Net.TLS.Enable = true
		sc.Net.TLS.Config = tc
	}
	if err := sc.Validate(); err != nil {
		return nil, invalidURL("%v", err)
	}
	cfg.sarama = sc
	return cfg, nil
}

func parseSubParam(cfg *config, sc *sarama.Config, name, v string) error {
	var err error
	bad := func(want string) error { return invalidURL("%s=%q is not %s", name, v, want) }
	switch name {
	case "group":
		if v == "" {
			return bad("a consumer group name")
		}
		cfg.group = v
	case "dlq":
		if v == "" || strings.Contains(v, "/") {
			return bad("a topic name")
		}
		cfg.dlqTopic = v
	case "initial":
		switch v {
		case "oldest":
			sc.Consumer.Offsets.Initial = sarama.OffsetOldest
		case "newest":
			sc.Consumer.Offsets.Initial = sarama.OffsetNewest
		default:
			return bad("oldest or newest")
		}
	case "session_timeout":
		if sc.Consumer.Group.Session.Timeout, err = positiveDuration(v); err != nil {
			return bad("a positive duration")
		}
	case "heartbeat_interval":
		if sc.Consumer.Group.Heartbeat.Interval, err = positiveDuration(v); err != nil {
			return bad("a positive duration")
		}
	case "rebalance_timeout":
		if sc.Consumer.Group.Rebalance.Timeout, err = positiveDuration(v); err != nil {
			return bad("a positive duration")
		}
	case "commit_interval":
		if sc.Consumer.Offsets.AutoCommit.Interval, err = positiveDuration(v); err != nil {
			return bad("a positive duration")
		}
	case "drain_timeout":
		if cfg.drainTimeout, err = positiveDuration(v); err != nil {
			return bad("a positive duration")
		}
	case "prefetch":
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1<<20 {
			return bad("an integer in [1, 1048576]")
		}
		cfg.prefetch = n
	case "ordered":
		if cfg.ordered, err = strconv.ParseBool(v); err != nil {
			return bad("a boolean")
		}
	case "attempts_metadata_max":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 1<<20 {
			return bad("a byte count in [0, 1048576]")
		}
		if n > 0 && n < minAttemptsMetadata {
			return bad(fmt.Sprintf("0 or at least %d bytes", minAttemptsMetadata))
		}
		cfg.attemptsMetadataMax = n
	case "balance":
		switch v {
		case "range":
			sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRange()}
		case "roundrobin":
			sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRoundRobin()}
		case "sticky":
			sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky()}
		default:
			return bad("range, roundrobin or sticky")
		}
	default:
		return invalidURL("unknown subscription parameter %q", name)
	}
	return nil
}

func positiveDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, errors.New("not a positive duration")
	}
	return d, nil
}

func configureSASL(sc *sarama.Config, u *url.URL, mechanism string) error {
	if mechanism == "" {
		if u.User != nil {
			return invalidURL("user information needs sasl=plain, scram-sha-256 or scram-sha-512")
		}
		return nil
	}
	if u.User == nil || u.User.Username() == "" {
		return invalidURL("sasl=%s needs kafka://user:password@host/...", mechanism)
	}
	pw, _ := u.User.Password()
	sc.Net.SASL.Enable = true
	sc.Net.SASL.Handshake = true
	sc.Net.SASL.User = u.User.Username()
	sc.Net.SASL.Password = pw
	switch mechanism {
	case "plain":
		sc.Net.SASL.Mechanism = sarama.SASLTypePlaintext
	case "scram-sha-256":
		sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA256} }
	case "scram-sha-512":
		sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA512} }
	default:
		return invalidURL("sasl=%q is not plain, scram-sha-256 or scram-sha-512", mechanism)
	}
	return nil
}

func tlsConfig(caFile, certFile, keyFile, serverName string, insecure bool) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName, InsecureSkipVerify: insecure} //nolint:gosec // opt-in, for tests
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, invalidURL("tls_ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, invalidURL("tls_ca %q holds no PEM certificate", caFile)
		}
		tc.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, invalidURL("tls_cert and tls_key go together")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, invalidURL("tls_cert/tls_key: %v", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// classify wraps a sarama error with the bus sentinel it corresponds to.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var kerr sarama.KError
	switch {
	case errors.Is(err, sarama.ErrUnknownTopicOrPartition):
		return fmt.Errorf("kafka: %s: %w: %w", op, driver.ErrNotFound, err)
	case errors.Is(err, sarama.ErrTopicAuthorizationFailed), errors.Is(err, sarama.ErrGroupAuthorizationFailed),
		errors.Is(err, sarama.ErrClusterAuthorizationFailed), errors.Is(err, sarama.ErrSASLAuthenticationFailed),
		errors.Is(err, sarama.ErrTransactionalIDAuthorizationFailed):
		return fmt.Errorf("kafka: %s: %w: %w", op, driver.ErrPermission, err)
	case errors.Is(err, sarama.ErrInvalidSessionTimeout):
		return fmt.Errorf("kafka: %s: session_timeout is outside the brokers' group.min.session.timeout.ms..group.max.session.timeout.ms: %w: %w", op, driver.ErrInvalidURL, err)
	case errors.Is(err, sarama.ErrClosedClient), errors.Is(err, sarama.ErrClosedConsumerGroup):
		return fmt.Errorf("kafka: %s: %w: %w", op, driver.ErrClosed, err)
	case errors.As(err, &kerr):
		return fmt.Errorf("kafka: %s: %w", op, err)
	}
	return fmt.Errorf("kafka: %s: %w", op, err)
}

// newClient connects to the brokers and checks that the topics exist.
func newClient(ctx context.Context, cfg *config, topics ...string) (sarama.Client, error) {
	type result struct {
		c   sarama.Client
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := sarama.NewClient(cfg.brokers, cfg.sarama)
		ch <- result{c, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.c != nil {
				_ = r.c.Close()
			}
		}()
		return nil, ctx.Err()
	}
	if r.err != nil {
		return nil, classify("connect to "+strings.Join(cfg.brokers, ","), r.err)
	}
	for _, t := range topics {
		if _, err := r.c.Partitions(t); err != nil {
			_ = r.c.Close()
			if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
				return nil, fmt.Errorf("kafka: topic %q does not exist (create it, e.g. with kafka.EnsureTopic): %w", t, driver.ErrNotFound)
			}
			return nil, classify("topic "+t, err)
		}
	}
	return r.c, nil
}

// TopicOption configures EnsureTopic.
type TopicOption func(*topicOptions)

type topicOptions struct {
	partitions  int32
	replication int16
	dlq         bool
	configs     map[string]*string
	strict      bool // an existing topic's partition count must be partitions
}

// WithPartitions sets the partition count of created topics (default: the
// brokers' num.partitions).
func WithPartitions(n int32) TopicOption { return func(o *topicOptions) { o.partitions = n } }

// WithReplicationFactor sets the replication factor of created topics
// (default: the brokers' default.replication.factor).
func WithReplicationFactor(n int16) TopicOption { return func(o *topicOptions) { o.replication = n } }

// WithoutDeadLetterTopic makes EnsureTopic create only the topic itself.
func WithoutDeadLetterTopic() TopicOption { return func(o *topicOptions) { o.dlq = false } }

// WithTopicConfig sets a topic configuration entry (such as retention.ms)
// on created topics.
func WithTopicConfig(name, value string) TopicOption {
	return func(o *topicOptions) {
		if o.configs == nil {
			o.configs = map[string]*string{}
		}
		o.configs[name] = &value
	}
}

// EnsureTopic creates the topic a kafka:// URL names and its dead-letter
// topic (the URL's dlq parameter, default <topic>.dlq), if they do not exist
// yet. Existing topics are left as they are. Deployments usually provision
// topics with their own tooling; EnsureTopic is for tests, development and
// simple setups.
//
// bus.Provision (with bus.ProvisionSpec.Partitions) does the same through
// the portable API and reports what it did; EnsureTopic remains for its
// options (replication factor, topic configuration, no dead-letter topic).
func EnsureTopic(ctx context.Context, urlstr string, opts ...TopicOption) error {
	u, err := url.Parse(urlstr)
	if err != nil {
		// url.Error repeats the whole URL, SASL password included: keep only the cause.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return invalidURL("malformed URL: %v", err)
	}
	if u.Scheme != Scheme {
		return invalidURL("scheme %q, want %s", u.Scheme, Scheme)
	}
	// Parse as a subscription if it names a group, for its dlq parameter.
	cfg, err := parseURL(u, u.Query().Has("group"))
	if err != nil {
		return err
	}
	o := topicOptions{partitions: -1, replication: -1, dlq: true}
	for _, opt := range opts {
		opt(&o)
	}
	_, err = ensureTopics(ctx, cfg, o, false)
	return err
}
