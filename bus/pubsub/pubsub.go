// Package pubsub is payrail's Google Cloud Pub/Sub bus driver, built on
// cloud.google.com/go/pubsub/v2 and registered under the name "pubsub".
//
//	import _ "github.com/payrail/payrail/bus/pubsub"
//
//	topic, err := bus.OpenTopic(ctx, "pubsub://my-project/payments")
//	sub, err := bus.OpenSubscription(ctx, "pubsub://my-project/payments?subscription=payments-worker")
//
// # Connection and credentials
//
// The host part of the URL is the Google Cloud project ID. The client
// library finds its credentials and endpoint itself: Application Default
// Credentials (GOOGLE_APPLICATION_CREDENTIALS, the gcloud user credentials,
// or the metadata server on Google Cloud), or, when PUBSUB_EMULATOR_HOST is
// set (host:port), the emulator at that address without authentication. The
// driver does no authentication of its own.
//
// # URLs
//
//	pubsub://<project>/<topic>[?params]                          a topic
//	pubsub://<project>/<topic>?subscription=<subscription>[&params]  a subscription of the topic
//
// Topic parameters:
//
//   - ordered (default true): publish each message's Key as its Pub/Sub
//     ordering key, with the publisher's message ordering enabled, so that
//     ordered subscriptions receive a key's messages in publish order. With
//     ordered=false the key travels in the attribute payrail.key and
//     publishes of one key are not sequenced.
//   - batch_delay (default 1ms): how long the publisher waits to bundle
//     concurrent publishes into one request (the client library's
//     PublishSettings.DelayThreshold; its own default is 10ms).
//
// Subscription parameters:
//
//   - subscription (required): the subscription ID; it must be attached to
//     the URL's topic.
//   - max_outstanding: the most messages the handle holds at once (being
//     handled, or fetched and waiting to be). It defaults to the portable
//     receive concurrency (bus.WithConcurrency) and is capped by this value.
//   - max_outstanding_bytes: the same bound in bytes of message data
//     (default: the client library's 1 GB).
//   - streams (default 1): StreamingPull streams per handle (the client
//     library's NumGoroutines).
//   - max_extension (default 1h): how long the client library keeps
//     extending a delivery's lease while it is held (it should not be below
//     bus.WithMaxExtension).
//   - max_lease (default 60s, 10s to 600s): the longest lease the client
//     library asks for at a time (ReceiveSettings.MaxDurationPerAckExtension;
//     its adaptive deadline otherwise grows to 10 minutes), which is also
//     the StreamingPull stream's ack deadline: how soon the deliveries of a
//     crashed process, or messages a stopped stream had fetched but not
//     yet read, come back.
//   - ack_deadline: the ack deadline the driver reports in
//     Capabilities.AckDeadline and enforces on handled deliveries (see
//     below); default: the subscription's own ack deadline.
//   - max_nack_delay (default 10m): the longest delay Nack honours (longer
//     ones are shortened to it); 0 disables delayed nacks, and the
//     NackDelay capability with them.
//   - dead_letter_subscription: the subscription of the dead-letter topic
//     that DeadLetters and Redrive read (default: the dead-letter topic's
//     ID, as Provision creates it).
//   - dead_letter_topic, max_attempts, ordered: what the subscription's
//     configuration says; needed only when the credentials may not read it
//     (pubsub.subscriptions.get, which roles/pubsub.subscriber lacks), and
//     checked against it otherwise.
//
// Subscriptions need a dead-letter policy: Pub/Sub counts delivery attempts
// (Message.DeliveryAttempt) only on subscriptions that have one, and without
// a count package bus could not stop retrying a failing message. Opening a
// subscription without one fails with an error wrapping bus.ErrInvalidURL;
// Provision (and `opsctl bus provision`) creates the topic, the
// subscription with its dead-letter policy, and the dead-letter topic and
// subscription. Opening a missing topic or subscription fails with an error
// wrapping bus.ErrNotFound.
//
// # Publishing
//
// PublishBatch hands every message to the client library's Publisher, which
// bundles concurrent publishes, and returns once Pub/Sub accepted all of
// them. The message ID travels in the attribute payrail.id (Pub/Sub assigns
// its own message IDs); attribute names payrail.id, payrail.key,
// payrail.redrive, payrail.dead_letter_reason and payrail.dlq.* are
// reserved. When a publish with an ordering key fails, the client library
// pauses that key to keep its order; the driver resumes it once the batch
// has failed, so the caller's retry goes through.
//
// # Receiving: from push to pull
//
// The client library's Subscriber.Receive pushes messages to a callback; the
// driver adapts it to the pull-style ReceiveBatch of package bus. Receive runs
// while the portable layer receives, started by the first ReceiveBatch with
// flow control (ReceiveSettings.MaxOutstandingMessages) set to the receive
// concurrency, so Pub/Sub streams no more messages than the handlers can
// take. Each callback offers its message to a waiting ReceiveBatch and blocks
// until the message is settled, so the library's flow control and its
// per-ordering-key scheduling see the whole life of a delivery. A message
// waiting for a ReceiveBatch keeps its lease (the library extends it); when
// no ReceiveBatch has been waiting for a few seconds and no delivery is being
// handled, the driver stops Receive and the waiting messages are nacked, so
// that a paused consumer does not hold them. Close nacks them at once.
//
// # Ack deadlines and extension
//
// The client library extends the lease of every delivery it holds (its
// adaptive ack deadline, at least 10 s), up to max_extension, so a crashed
// process's deliveries come back after one lease. On top of that the driver
// enforces the ack deadline package bus knows (Capabilities.AckDeadline,
// ack_deadline): a handed-out delivery that is neither settled nor extended
// (Message.Extend, or the portable layer's automatic extension while its
// handler runs) within it is nacked and redelivered with DeliveryAttempt
// incremented, and its late Ack returns ErrLeaseExpired. Extend is therefore
// cheap (no RPC): the library keeps the lease, the driver only moves its own
// deadline; it refuses to go past max_extension from receipt.
//
// # Nack delays
//
// Pub/Sub's nack has no delay (a subscription's RetryPolicy adds a
// server-side exponential back-off to every nack, unrelated to the delay
// asked). Nack(delay) keeps the delivery leased, held in memory, and nacks it
// once the delay has passed; Close nacks held deliveries at once. A held
// delivery still counts against Pub/Sub's server-side flow control of its
// stream. Subscriptions provisioned by Provision have no RetryPolicy, so that
// the redelivery follows the requested delay.
//
// # Ordering
//
// On subscriptions with message ordering enabled (Capabilities.Ordering),
// Pub/Sub delivers a key's messages in publish order and the client library
// hands them to the driver one at a time. When a message is nacked, Pub/Sub
// redelivers it and every later message of its key; the driver nacks
// (without handing them out) the later messages of that key it already
// holds, until the nacked one comes back, so that they are not handled ahead
// of it.
//
// # Dead letters
//
// Package bus dead-letters a message that failed on its last attempt or
// permanently: DeadLetter publishes it to the subscription's dead-letter topic
// with its ID, key, body and attributes, the reason in the attribute
// payrail.dead_letter_reason (truncated to Pub/Sub's 1024-byte attribute
// limit), the attempt in payrail.dlq.attempts and the subscription in
// payrail.dlq.subscription, then acks it. Pub/Sub's own dead-lettering (the
// policy's MaxDeliveryAttempts, 5 to 100, default 5) still catches messages
// whose consumers never settle them; those dead letters have no reason
// attribute and are reported with a reason saying so. Capabilities.MaxAttempts
// is the policy's MaxDeliveryAttempts.
//
// DeadLetters and Redrive consume the dead-letter topic's subscription
// (dead_letter_subscription) with unary Pull: DeadLetters pulls and nacks
// (best effort: Pub/Sub may return fewer messages than it holds), Redrive
// republishes each dead letter to the topic, with its ID, key, body and
// attributes and the attribute payrail.redrive naming this subscription, and
// acks it. Other payrail subscriptions of the topic ack and skip messages
// redriven for another subscription, so a redrive reaches only the
// subscription it was made for. A redriven message starts again at delivery
// attempt 1. Each subscription should have its own dead-letter topic, as
// Provision creates them.
//
// # Stats
//
// Pub/Sub's API does not report a subscription's backlog (Cloud Monitoring's
// subscription/num_undelivered_messages does), so Stats.Backlog is -1.
// InFlight counts this handle's deliveries being handled or waiting for a
// ReceiveBatch; DeadLetters counts the dead-letter subscription's messages
// by pulling them (exact up to 1000, -1 beyond).
//
// # As
//
// Topics convert with As to *pubsub.Client and *pubsub.Publisher;
// subscriptions to *pubsub.Client and *pubsub.Subscriber (the one the next
// Receive uses; its ReceiveSettings are set by the driver).
package pubsub

import (
	"context"
	"errors"
	"fmt"
	"google.golang.org/api/option"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/driver"
)

// Scheme is the URL scheme, and driver name, this package registers.
const Scheme = "pubsub"

// Attribute names the driver uses. Publishing attributes with these names
// (or starting with payrail.dlq.) is refused.
const (
	// AttrID carries the message ID.
	AttrID = "payrail.id"
	// AttrKey carries the message key when it is not the ordering key.
	AttrKey = "payrail.key"
	// AttrRedrive names the subscription a redriven message is meant for.
	AttrRedrive = "payrail.redrive"
	// AttrDLQAttempts is the delivery attempt on which a message was
	// dead-lettered by DeadLetter.
	AttrDLQAttempts = "payrail.dlq.attempts"
	// AttrDLQSubscription is the subscription that dead-lettered a message.
	AttrDLQSubscription = "payrail.dlq.subscription"
)

// Attributes Pub/Sub adds to the messages it dead-letters itself.
const (
	attrNativeDLQPrefix        = "CloudPubSubDeadLetterSource"
	attrNativeDLQDeliveryCount = "CloudPubSubDeadLetterSourceDeliveryCount"
)

// Limits of the Pub/Sub service.
const (
	// MinMaxDeliveryAttempts and MaxMaxDeliveryAttempts bound a dead-letter
	// policy's MaxDeliveryAttempts.
	MinMaxDeliveryAttempts = 5
	MaxMaxDeliveryAttempts = 100
	// maxAttributeValue is the largest attribute value Pub/Sub accepts.
	maxAttributeValue = 1024
)

// ErrLeaseExpired is returned when a delivery is settled or extended after
// its ack deadline passed: it has been handed back and is delivered again.
var ErrLeaseExpired = errors.New("pubsub: the delivery's ack deadline passed before it was settled; the message is delivered again")

func reservedAttr(name string) bool {
	switch name {
	case AttrID, AttrKey, AttrRedrive, bus.AttrDeadLetterReason:
		return true
	}
	return strings.HasPrefix(name, "payrail.dlq.")
}

func init() { bus.Register(Scheme, Driver{}) }

// Driver opens Pub/Sub topics and subscriptions from pubsub:// URLs; see
// the package documentation. It is registered under Scheme.
type Driver struct{}

var _ driver.Driver = Driver{}

// OpenTopic opens the topic the URL names, checking that it exists when
// the credentials allow reading it.
func (Driver) OpenTopic(ctx context.Context, u *url.URL) (driver.Topic, error) {
	cfg, err := parseURL(u, false)
	if err != nil {
		return nil, err
	}
	return openTopic(ctx, cfg)
}

// OpenSubscription opens the subscription the URL names and reads its
// configuration (attached topic, dead-letter policy, ordering, ack
// deadline). Receiving starts with the first ReceiveBatch.
func (Driver) OpenSubscription(ctx context.Context, u *url.URL) (driver.Subscription, error) {
	cfg, err := parseURL(u, true)
	if err != nil {
		return nil, err
	}
	return openSubscription(ctx, cfg)
}

// config is a parsed URL.
type config struct {
	project string
	topic   string // topic ID

	// topic parameters
	ordered    bool
	batchDelay time.Duration

	// subscription parameters
	subscription        string
	maxOutstanding      int
	maxOutstandingBytes int
	streams             int
	maxExtension        time.Duration
	maxLease            time.Duration
	ackDeadline         time.Duration // 0: the subscription's
	maxNackDelay        time.Duration
	dlqSubscription     string
	// as declared in the URL, checked against the subscription (zero: not given)
	dlqTopic    string
	maxAttempts int
	orderedSet  bool
}

func invalidURL(format string, args ...any) error {
	return fmt.Errorf("pubsub: %s: %w", fmt.Sprintf(format, args...), driver.ErrInvalidURL)
}

func (c *config) topicName() string { return "projects/" + c.project + "/topics/" + c.topic }
func (c *config) subName() string {
	return "projects/" + c.project + "/subscriptions/" + c.subscription
}

func topicName(project, id string) string { return "projects/" + project + "/topics/" + id }
func subName(project, id string) string   { return "projects/" + project + "/subscriptions/" + id }

// validID checks a topic or subscription ID against Pub/Sub's naming rules:
// 3 to 255 characters, starting with a letter, of letters, digits and
// - _ . ~ + %, not starting with goog.
func validID(id string) bool {
	if len(id) < 3 || len(id) > 255 || strings.HasPrefix(strings.ToLower(id), "goog") {
		return false
	}
	for i, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i == 0:
			return false
		case r >= '0' && r <= '9', strings.ContainsRune("-_.~+%", r):
		default:
			return false
		}
	}
	return true
}

func parseURL(u *url.URL, sub bool) (*config, error) {
	if u == nil {
		return nil, invalidURL("nil URL")
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, invalidURL("missing project; want pubsub://<project>/<topic>")
	}
	if u.User != nil || u.Port() != "" || u.Fragment != "" {
		return nil, invalidURL("unexpected user, port or fragment; want pubsub://<project>/<topic>")
	}
	cfg := &config{
		project:      u.Hostname(),
		ordered:      true,
		batchDelay:   time.Millisecond,
		streams:      1,
		maxExtension: time.Hour,
		maxLease:     time.Minute,
		maxNackDelay: 10 * time.Minute,
	}
	cfg.topic = strings.TrimPrefix(u.Path, "/")
	if !validID(cfg.topic) {
		return nil, invalidURL("the path must be one topic ID (3-255 letters, digits, -_.~+%%, starting with a letter), got %q", u.Path)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, invalidURL("malformed query: %v", err)
	}
	for name, vals := range q {
		if len(vals) != 1 {
			return nil, invalidURL("parameter %q given %d times", name, len(vals))
		}
		v := vals[0]
		bad := func(want string) error { return invalidURL("%s=%q is not %s", name, v, want) }
		kind := "topic"
		if sub {
			kind = "subscription"
		}
		switch name {
		case "ordered":
			if cfg.ordered, err = strconv.ParseBool(v); err != nil {
				return nil, bad("a boolean")
			}
			cfg.orderedSet = true
		case "batch_delay":
			if sub {
				return nil, invalidURL("unknown %s parameter %q", kind, name)
			}
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > time.Second {
				return nil, bad("a duration in [0, 1s]")
			}
			cfg.batchDelay = d
		default:
			if !sub {
				return nil, invalidURL("unknown %s parameter %q (subscriptions need the subscription parameter)", kind, name)
			}
			if err := parseSubParam(cfg, name, v); err != nil {
				return nil, err
			}
		}
	}
	if sub && cfg.subscription == "" {
		return nil, invalidURL("missing subscription parameter; want pubsub://<project>/<topic>?subscription=<subscription>")
	}
	return cfg, nil
}

func parseSubParam(cfg *config, name, v string) error {
	bad := func(want string) error { return invalidURL("%s=%q is not %s", name, v, want) }
	posInt := func(lo, hi int) (int, error) {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return 0, bad(fmt.Sprintf("an integer in [%d, %d]", lo, hi))
		}
		return n, nil
	}
	var err error
	switch name {
	case "subscription":
		if !validID(v) {
			return bad("a subscription ID (3-255 letters, digits, -_.~+%, starting with a letter)")
		}
		cfg.subscription = v
	case "max_outstanding":
		cfg.maxOutstanding, err = posInt(1, 1<<20)
	case "max_outstanding_bytes":
		cfg.maxOutstandingBytes, err = posInt(1, 1<<40)
	case "streams":
		cfg.streams, err = posInt(1, 64)
	case "max_extension":
		d, perr := time.ParseDuration(v)
		if perr != nil || d <= 0 {
			return bad("a positive duration")
		}
		cfg.maxExtension = d
	case "max_lease":
		d, perr := time.ParseDuration(v)
		if perr != nil || d < 10*time.Second || d > 600*time.Second {
			return bad("a duration in [10s, 600s]")
		}
		cfg.maxLease = d
	case "ack_deadline":
		d, perr := time.ParseDuration(v)
		if perr != nil || d < 100*time.Millisecond || d > 600*time.Second {
			return bad("a duration in [100ms, 600s]")
		}
		cfg.ackDeadline = d
	case "max_nack_delay":
		d, perr := time.ParseDuration(v)
		if perr != nil || d < 0 {
			return bad("a non-negative duration")
		}
		cfg.maxNackDelay = d
	case "dead_letter_topic":
		if !validID(v) {
			return bad("a topic ID")
		}
		cfg.dlqTopic = v
	case "dead_letter_subscription":
		if !validID(v) {
			return bad("a subscription ID")
		}
		cfg.dlqSubscription = v
	case "max_attempts":
		cfg.maxAttempts, err = posInt(MinMaxDeliveryAttempts, MaxMaxDeliveryAttempts)
	default:
		return invalidURL("unknown subscription parameter %q", name)
	}
	return err
}

// newClient creates a client for the project; the library reads
// PUBSUB_EMULATOR_HOST and Application Default Credentials itself.
func newClient(ctx context.Context, project string, opts ...option.ClientOption) (*pubsub.Client, error) {
	c, err := pubsub.NewClient(ctx, project, opts...)
	if err != nil {
		hint := ""
		if os.Getenv("PUBSUB_EMULATOR_HOST") == "" {
			hint = " (set up Application Default Credentials, or PUBSUB_EMULATOR_HOST for an emulator)"
		}
		return nil, fmt.Errorf("pubsub: client for project %q%s: %w", project, hint, err)
	}
	return c, nil
}

// classify wraps a Pub/Sub error with the bus sentinel it corresponds to.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, pubsub.ErrPublisherStopped):
		return fmt.Errorf("pubsub: %s: %w: %w", op, driver.ErrClosed, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("pubsub: %s: %w", op, err)
	}
	switch status.Code(err) {
	case codes.NotFound:
		return fmt.Errorf("pubsub: %s: %w: %w", op, driver.ErrNotFound, err)
	case codes.PermissionDenied, codes.Unauthenticated:
		return fmt.Errorf("pubsub: %s: %w: %w", op, driver.ErrPermission, err)
	}
	return fmt.Errorf("pubsub: %s: %w", op, err)
}

func isCode(err error, c codes.Code) bool { return err != nil && status.Code(err) == c }

// encode builds the Pub/Sub message for m. With ordered, the key is the
// ordering key; otherwise it travels in AttrKey. Body and attributes are
// copied: the library may still hold them after a cancelled publish.
func encode(m *driver.Message, ordered bool, extra map[string]string) (*pubsub.Message, error) {
	attrs := make(map[string]string, len(m.Attributes)+2+len(extra))
	for k, v := range m.Attributes {
		if reservedAttr(k) {
			return nil, fmt.Errorf("pubsub: message %q: attribute name %q is reserved by the driver", m.ID, k)
		}
		attrs[k] = v
	}
	attrs[AttrID] = m.ID
	pm := &pubsub.Message{Data: append([]byte(nil), m.Body...), Attributes: attrs}
	if m.Key != "" {
		if ordered {
			pm.OrderingKey = m.Key
		} else {
			attrs[AttrKey] = m.Key
		}
	}
	for k, v := range extra {
		attrs[k] = v
	}
	return pm, nil
}

// decoded is a received Pub/Sub message split into the portable fields and
// the driver's own attributes.
type decoded struct {
	dm      driver.Message
	redrive string            // AttrRedrive
	driver  map[string]string // reserved and native dead-letter attributes
}

func decode(m *pubsub.Message) decoded {
	var d decoded
	d.dm.ID = m.ID
	d.dm.Key = m.OrderingKey
	d.dm.Body = m.Data
	d.dm.PublishTime = m.PublishTime
	d.dm.DeliveryAttempt = 1
	if m.DeliveryAttempt != nil && *m.DeliveryAttempt > 0 {
		d.dm.DeliveryAttempt = *m.DeliveryAttempt
	}
	if len(m.Attributes) > 0 {
		d.dm.Attributes = make(map[string]string, len(m.Attributes))
	}
	for k, v := range m.Attributes {
		switch {
		case k == AttrID:
			d.dm.ID = v
		case k == AttrKey:
			if d.dm.Key == "" {
				d.dm.Key = v
			}
		case k == AttrRedrive:
			d.redrive = v
		case reservedAttr(k) || strings.HasPrefix(k, attrNativeDLQPrefix):
			if d.driver == nil {
				d.driver = map[string]string{}
			}
			d.driver[k] = v
		default:
			d.dm.Attributes[k] = v
		}
	}
	if len(d.dm.Attributes) == 0 {
		d.dm.Attributes = nil
	}
	return d
}

// truncate shortens s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ell = "…"
	cut := n - len(ell)
	for cut > 0 && cut < len(s) && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + ell
}
