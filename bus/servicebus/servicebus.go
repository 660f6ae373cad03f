// Package servicebus is payrail's Azure Service Bus bus driver, built on
// github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus and
// registered under the name "servicebus".
//
//	import _ "github.com/payrail/payrail/bus/servicebus"
//
//	// A queue: publish to it and consume it.
//	topic, err := bus.OpenTopic(ctx, "servicebus://payments")
//	sub, err := bus.OpenSubscription(ctx, "servicebus://payments")
//
//	// A topic and one of its subscriptions.
//	topic, err := bus.OpenTopic(ctx, "servicebus://payments-events")
//	sub, err := bus.OpenSubscription(ctx, "servicebus://payments-events?subscription=worker")
//
// # URLs and authentication
//
//	servicebus://<queue or topic>[?params]
//
// The host (and path, for entity names with slashes) names the queue or
// topic; a subscription URL adds subscription=<name> to consume a topic
// subscription instead of a queue. The driver authenticates with the
// connection string in SERVICEBUS_CONNECTION_STRING or, with
// namespace=<name>.servicebus.windows.net, with Microsoft Entra ID through
// azidentity's default credential chain (environment, workload identity,
// managed identity, Azure CLI...). Handles opened with the same credentials
// share one client, and so one AMQP connection.
//
// Parameters:
//
//   - namespace: the fully qualified namespace, for Entra ID authentication
//     (a bare name gets .servicebus.windows.net appended);
//   - subscription (subscriptions only): the topic subscription to consume;
//   - sessions=true: the queue or subscription requires sessions; see
//     "Ordering and sessions" below;
//   - lock_duration (subscriptions only; default 60s, the service's
//     default): the entity's LockDuration. It is the ack deadline the driver
//     reports (Capabilities.AckDeadline), which package bus renews at a
//     third of, so set it to the entity's value;
//   - max_delivery_count (subscriptions only; default 10, the service's
//     default): the entity's MaxDeliveryCount, reported as
//     Capabilities.MaxAttempts, so that package bus dead-letters a failing
//     message on its last attempt itself, with the handler's error as the
//     reason, before the broker would with MaxDeliveryCountExceeded;
//   - max_sessions (session subscriptions only; default 8): how many sessions
//     a handle holds at once;
//   - session_idle_timeout (session subscriptions only; default 100ms): how
//     long a held session may have no message (and no unsettled delivery)
//     before it is released, so that the handle can accept another.
//
// Opening does not create entities (create them with your infrastructure
// tooling, or with bus.Provision, which this driver implements with the
// SDK's admin.Client; see Driver.Provision): opening a topic or
// subscription whose entity does not exist fails with an error wrapping
// bus.ErrNotFound,
// as does any later operation on an entity that was deleted. Missing
// permissions (for example a Listen-only key publishing) wrap
// bus.ErrPermission.
//
// # Publishing
//
// PublishBatch packs the messages into as few Service Bus batches as the
// entity's maximum batch size allows (a MessageBatch, one AMQP transfer
// each) and returns once the broker accepted every batch; if a batch fails,
// the ones before it were sent (publish is at least once: retrying
// duplicates them). A message's ID becomes its MessageID (at most 128
// characters, the service's limit), its Body the body, its Attributes
// application properties and its Key the application property payrail.key
// (and, on sessionful entities, its SessionID).
//
// # Receiving and settlement
//
// Subscriptions receive in PeekLock mode: a delivery stays locked (invisible
// to other consumers) for the entity's lock duration. Ack completes the
// message. DeliveryAttempt is the service's DeliveryCount, plus the
// attempts carried by a delayed redelivery (below).
//
// Nack without a delay abandons the message: the service makes it available
// again at once and increments its DeliveryCount. Service Bus has no
// abandon-with-delay, so Nack with a delay sends a copy scheduled for now +
// delay (the service's scheduled messages) and then completes the original,
// cancelling the copy if the completion fails. The trade-offs of that copy:
//
//   - it is a new message: a new sequence number and enqueued time (so it
//     goes behind messages published meanwhile), and a MessageID derived
//     from the original (so that duplicate detection does not drop it); the
//     original ID travels in the application property payrail.id and is
//     what Message.ID reports;
//   - the service counts deliveries per message, so the attempts already made
//     travel in the application property payrail.attempts and are added to
//     DeliveryCount; the entity's MaxDeliveryCount therefore applies to each
//     copy, and the effective limit is package bus's maximum attempts;
//   - it takes two operations, not one: a process that dies between them
//     leaves the message delivered twice (delivery is at least once anyway);
//   - it needs the Send right on the entity (Listen alone is not enough);
//   - on a topic subscription the copy is sent to the topic, tagged with the
//     application property payrail.target=<subscription>; handles of the
//     topic's other subscriptions complete such copies without delivering
//     them. Other consumers of those subscriptions see them, unless their
//     rules filter them out (a SQL filter such as
//     "[payrail.target] IS NULL OR [payrail.target] = '<subscription>'"
//     keeps them off the other subscriptions altogether);
//   - the delay is measured on the publisher's clock.
//
// On sessionful entities a delayed Nack instead holds the message (and its
// session, so that nothing behind it is delivered first) and abandons it
// once the delay has passed; see below.
//
// # Lock renewal
//
// Extend renews the message's lock (the service's renew-lock operation) for
// another lock duration; when asked for longer than that, the driver renews
// again before each lock lapses until the requested time is covered or the
// message is settled. Package bus renews the locks of running handlers
// automatically at a third of the lock duration, so a handler may run for
// longer than the lock (up to bus.WithMaxExtension). A message whose lock
// lapses anyway is delivered again with its DeliveryCount incremented, and
// settling the lapsed delivery fails with an error wrapping ErrLockLost.
//
// # Dead letters
//
// DeadLetter moves the message to the entity's dead-letter sub-queue
// (<entity>/$DeadLetterQueue) with the reason as its DeadLetterReason,
// recording the delivery attempt in the application property
// payrail.dead_letter_attempt; the service itself dead-letters messages
// whose DeliveryCount reaches MaxDeliveryCount (reason
// MaxDeliveryCountExceeded). DeadLetters peeks the sub-queue without
// locking or removing anything (Reason is "DeadLetterReason: description"
// when the service gave a description). Redrive receives dead letters,
// sends each back to the queue (or to the topic, tagged for this
// subscription as above) with its ID, Key, Body and Attributes and no
// carried attempts, so that it starts again at DeliveryAttempt 1, and then
// completes it. A redrive that fails between the send and the completion
// leaves the dead letter in place, to be redriven again (at least once).
//
// # Ordering and sessions
//
// Without sessions, Service Bus delivers a queue in roughly FIFO order but
// competing consumers, abandons and lock expiries reorder it, so the
// subscription does not declare per-key ordering. With sessions=true the
// publisher sets every message's SessionID to its Key (its ID when the Key
// is empty), and a subscription handle accepts up to max_sessions sessions
// at a time, each locked to it alone; Service Bus delivers a session's
// messages in order, and the subscription declares Capabilities.Ordering.
// Message locks then follow the session lock: the driver renews it while
// the session waits for messages or for ReceiveBatch, and Extend (package
// bus's automatic extension of running handlers) renews it while its
// messages are handled, so a handler stuck past bus.WithMaxExtension loses
// the session and its messages are delivered again. A session with no
// message and no unsettled delivery for session_idle_timeout is released.
// When a session's message is nacked with a delay,
// the driver stops receiving from that session until the message is
// abandoned after the delay, so that it is delivered again before the ones
// behind it. Trade-offs: a session is received by one handle at a time,
// every message handed back behind a failing one of its key counts a
// delivery (it is abandoned), and many distinct keys make many small
// sessions, each costing an accept round trip: sessions buy ordering with
// throughput.
//
// # Stats
//
// Subscriptions declare Stats: they read the entity's runtime properties
// through the administration API, which needs the Manage right (Backlog:
// ActiveMessageCount, plus ScheduledMessageCount on queues, counting
// locked messages too since the service does not count locks separately;
// DeadLetters: DeadLetterMessageCount; InFlight: -1), and OldestAge by
// peeking the first message (-1 on sessionful entities).
//
// # Reserved application properties
//
// The driver uses the application properties payrail.key, payrail.id,
// payrail.attempts, payrail.target and payrail.dead_letter_attempt, and the
// service uses DeadLetterReason and DeadLetterErrorDescription: publishing
// a message with an attribute of one of these names fails.
//
// # As
//
// Topics convert with As to **azservicebus.Client and **azservicebus.Sender;
// subscriptions to **azservicebus.Client and, without sessions,
// **azservicebus.Receiver.
package servicebus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/go-amqp"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/driver"
)

// Scheme is the URL scheme, and driver name, this package registers.
const Scheme = "servicebus"

// EnvConnectionString is the environment variable holding the connection
// string used when the URL names no namespace.
const EnvConnectionString = "SERVICEBUS_CONNECTION_STRING"

// Application property names the driver uses; attributes with these names
// are refused on publish.
const (
	// PropKey carries the message's Key.
	PropKey = "payrail.key"
	// PropID carries the original message ID on copies made by a delayed
	// Nack or a Redrive (their MessageID differs).
	PropID = "payrail.id"
	// PropAttempts carries the delivery attempts made before a delayed
	// Nack's copy was sent.
	PropAttempts = "payrail.attempts"
	// PropTarget names the only subscription that should handle a copy sent
	// to a topic by a delayed Nack or a Redrive.
	PropTarget = "payrail.target"
	// PropDeadLetterAttempt records the delivery attempt at which DeadLetter
	// was called.
	PropDeadLetterAttempt = "payrail.dead_letter_attempt"
)

// The service's own dead-letter properties.
const (
	propDeadLetterReason      = "DeadLetterReason"
	propDeadLetterDescription = "DeadLetterErrorDescription"
)

func reservedProperty(name string) bool {
	switch name {
	case PropKey, PropID, PropAttempts, PropTarget, PropDeadLetterAttempt, propDeadLetterReason, propDeadLetterDescription:
		return true
	}
	return false
}

// ErrLockLost is wrapped by the errors of settling or extending a delivery
// whose lock lapsed (or whose session was lost): the service delivers the
// message again.
var ErrLockLost = errors.New("servicebus: message lock lost; the message will be delivered again")

// Limits of the service that the driver checks before sending.
const (
	maxIDLength         = 128  // MessageID and SessionID
	maxReasonBytes      = 4096 // dead-letter reason kept (application properties total at most 64 KB)
	defaultLock         = 60 * time.Second
	defaultMaxDelivery  = 10
	defaultMaxSessions  = 8
	defaultSessionIdle  = 100 * time.Millisecond
	closeTimeout        = 10 * time.Second
	maxReceiveBatch     = 5000 // the SDK's credit limit per ReceiveMessages
	peekPage            = 250
	redriveReceiveWait  = 5 * time.Second
	defaultNamespaceTLD = ".servicebus.windows.net"
)

func init() { bus.Register(Scheme, Driver{}) }

// Driver opens Service Bus topics and subscriptions from servicebus:// URLs;
// see the package documentation. It is registered under Scheme.
type Driver struct{}

var _ driver.Driver = Driver{}

// OpenTopic opens a sender to the queue or topic the URL names, checking that
// the entity exists.
func (Driver) OpenTopic(ctx context.Context, u *url.URL) (driver.Topic, error) {
	cfg, err := parseURL(u, false)
	if err != nil {
		return nil, err
	}
	return openTopic(ctx, cfg)
}

// OpenSubscription opens a receiver on the queue or topic subscription the
// URL names, checking that the entity exists.
func (Driver) OpenSubscription(ctx context.Context, u *url.URL) (driver.Subscription, error) {
	cfg, err := parseURL(u, true)
	if err != nil {
		return nil, err
	}
	return openSubscription(ctx, cfg)
}

// config is a parsed URL.
type config struct {
	entity           string // queue or topic
	subscription     string // topic subscription, or "" for a queue
	namespace        string // fully qualified namespace, or "" for the connection string
	sessions         bool
	lockDuration     time.Duration
	maxDeliveryCount int
	maxSessions      int
	sessionIdle      time.Duration
}

// path is the entity's path as the service names it.
func (c *config) path() string {
	if c.subscription != "" {
		return c.entity + "/Subscriptions/" + c.subscription
	}
	return c.entity
}

func invalidURL(format string, args ...any) error {
	return fmt.Errorf("servicebus: %s: %w", fmt.Sprintf(format, args...), driver.ErrInvalidURL)
}

func parseURL(u *url.URL, sub bool) (*config, error) {
	if u == nil {
		return nil, invalidURL("nil URL")
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, invalidURL("missing entity; want servicebus://<queue or topic>[?subscription=<name>]")
	}
	if u.User != nil {
		return nil, invalidURL("credentials do not belong in the URL; set %s or namespace=", EnvConnectionString)
	}
	if u.Fragment != "" {
		return nil, invalidURL("unexpected fragment")
	}
	if u.Port() != "" {
		return nil, invalidURL("the host is the entity name, not an address (got port %s)", u.Port())
	}
	entity := u.Host + strings.TrimRight(u.Path, "/")
	if strings.Contains(entity, "//") || strings.ContainsAny(entity, " \t") {
		return nil, invalidURL("bad entity name %q", entity)
	}
	cfg := &config{
		entity:           entity,
		lockDuration:     defaultLock,
		maxDeliveryCount: defaultMaxDelivery,
		maxSessions:      defaultMaxSessions,
		sessionIdle:      defaultSessionIdle,
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
		subOnly := func() error {
			if !sub {
				return invalidURL("%q is a subscription parameter", name)
			}
			return nil
		}
		switch name {
		case "namespace":
			if v == "" || strings.ContainsAny(v, "/:@ ") {
				return nil, bad("a namespace such as myns.servicebus.windows.net")
			}
			if !strings.Contains(v, ".") {
				v += defaultNamespaceTLD
			}
			cfg.namespace = v
		case "sessions":
			if cfg.sessions, err = strconv.ParseBool(v); err != nil {
				return nil, bad("a boolean")
			}
		case "subscription":
			if err := subOnly(); err != nil {
				return nil, err
			}
			if v == "" || strings.ContainsAny(v, "/ ") {
				return nil, bad("a subscription name")
			}
			cfg.subscription = v
		case "lock_duration":
			if err := subOnly(); err != nil {
				return nil, err
			}
			if cfg.lockDuration, err = time.ParseDuration(v); err != nil || cfg.lockDuration <= 0 {
				return nil, bad("a positive duration")
			}
		case "max_delivery_count":
			if err := subOnly(); err != nil {
				return nil, err
			}
			if cfg.maxDeliveryCount, err = strconv.Atoi(v); err != nil || cfg.maxDeliveryCount < 1 {
				return nil, bad("a positive integer")
			}
		case "max_sessions":
			if err := subOnly(); err != nil {
				return nil, err
			}
			if cfg.maxSessions, err = strconv.Atoi(v); err != nil || cfg.maxSessions < 1 {
				return nil, bad("a positive integer")
			}
		case "session_idle_timeout":
			if err := subOnly(); err != nil {
				return nil, err
			}
			if cfg.sessionIdle, err = time.ParseDuration(v); err != nil || cfg.sessionIdle <= 0 {
				return nil, bad("a positive duration")
			}
		default:
			if sub {
				return nil, invalidURL("unknown subscription parameter %q", name)
			}
			return nil, invalidURL("unknown topic parameter %q", name)
		}
	}
	if (q.Has("max_sessions") || q.Has("session_idle_timeout")) && !cfg.sessions {
		return nil, invalidURL("max_sessions and session_idle_timeout need sessions=true")
	}
	return cfg, nil
}

// The clients, shared by every handle opened with the same credentials.
var clients = struct {
	sync.Mutex
	m map[string]*sharedClient
}{m: map[string]*sharedClient{}}

type sharedClient struct {
	key    string
	client *azservicebus.Client
	refs   int
}

// acquireClient returns the shared client for cfg's credentials; release it
// with releaseClient.
func acquireClient(cfg *config) (*sharedClient, error) {
	var key string
	var connStr string
	if cfg.namespace != "" {
		key = "ns:" + cfg.namespace
	} else {
		connStr = strings.TrimSpace(os.Getenv(EnvConnectionString))
		if connStr == "" {
			return nil, invalidURL("no credentials: set %s or the namespace= parameter", EnvConnectionString)
		}
		// The key is a digest: the connection string holds a secret.
		sum := sha256.Sum256([]byte(connStr))
		key = "cs:" + hex.EncodeToString(sum[:])
	}
	clients.Lock()
	defer clients.Unlock()
	if c := clients.m[key]; c != nil {
		c.refs++
		return c, nil
	}
	var client *azservicebus.Client
	var err error
	if cfg.namespace != "" {
		cred, cerr := azidentity.NewDefaultAzureCredential(nil)
		if cerr != nil {
			return nil, fmt.Errorf("servicebus: Entra ID credential for %s: %w", cfg.namespace, cerr)
		}
		client, err = azservicebus.NewClient(cfg.namespace, cred, nil)
	} else {
		client, err = azservicebus.NewClientFromConnectionString(connStr, nil)
		if err != nil {
			// The SDK's parse errors may quote the string: keep only that
			// it was malformed.
			return nil, invalidURL("%s is not a valid Service Bus connection string", EnvConnectionString)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("servicebus: new client: %w", err)
	}
	c := &sharedClient{key: key, client: client, refs: 1}
	clients.m[key] = c
	return c, nil
}

func releaseClient(c *sharedClient) error {
	clients.Lock()
	c.refs--
	last := c.refs == 0
	if last {
		delete(clients.m, c.key)
	}
	clients.Unlock()
	if !last {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	return closeErr(c.client.Close(ctx))
}

// mapErr classifies an SDK error: it wraps the portable sentinel errors
// where they apply, and always the SDK's error itself.
func mapErr(op, entity string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var sbe *azservicebus.Error
	if errors.As(err, &sbe) {
		switch sbe.Code {
		case azservicebus.CodeNotFound:
			return fmt.Errorf("servicebus: %s %s: %w: %w", op, entity, driver.ErrNotFound, err)
		case azservicebus.CodeUnauthorizedAccess:
			return fmt.Errorf("servicebus: %s %s: %w: %w", op, entity, driver.ErrPermission, err)
		case azservicebus.CodeLockLost:
			return fmt.Errorf("servicebus: %s %s: %w: %w", op, entity, ErrLockLost, err)
		case azservicebus.CodeClosed:
			return fmt.Errorf("servicebus: %s %s: %w: %w", op, entity, driver.ErrClosed, err)
		}
	}
	// The SDK passes some link errors through untranslated, such as the
	// amqp:not-found the service answers an attach to a missing entity with.
	var ae *amqp.Error
	if errors.As(err, &ae) {
		switch ae.Condition {
		case amqp.ErrCondNotFound:
			return fmt.Errorf("servicebus: %s %s: %w: %w", op, entity, driver.ErrNotFound, err)
		case amqp.ErrCondUnauthorizedAccess:
			return fmt.Errorf("servicebus: %s %s: %w: %w", op, entity, driver.ErrPermission, err)
		case "com.microsoft:message-lock-lost", "com.microsoft:session-lock-lost":
			return fmt.Errorf("servicebus: %s %s: %w: %w", op, entity, ErrLockLost, err)
		}
	}
	return fmt.Errorf("servicebus: %s %s: %w", op, entity, err)
}

// copyID derives the MessageID of a copy of the message id.
func copyID(id, suffix string) string {
	s := id + "#" + suffix
	if len(s) <= maxIDLength {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// propString renders an application property value as an attribute.
func propString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	case nil:
		return ""
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprint(v)
}

// propInt reads an integer application property.
func propInt(v any) int {
	switch v := v.(type) {
	case int64:
		return int(v)
	case int32:
		return int(v)
	case int:
		return v
	case uint32:
		return int(v)
	case uint64:
		return int(v)
	case string:
		n, _ := strconv.Atoi(v)
		return n
	}
	return 0
}

// closeErr is the error of closing a link (a sender, a receiver): nil when
// every failure it holds says the connection under the link is already
// gone (closed by the service, or by the SDK recovering it). Such a link
// has nothing left to flush (sends are synchronous, and the service
// releases what a lost link held), so closing it succeeded.
func closeErr(err error) error {
	if err == nil || connGone(err) {
		return nil
	}
	return err
}

func connGone(err error) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if e != nil && !connGone(e) {
				return false
			}
		}
		return true
	}
	var ce *amqp.ConnError
	if errors.As(err, &ce) {
		return true
	}
	var ae *amqp.Error
	if errors.As(err, &ae) {
		switch ae.Condition {
		case amqp.ErrCondConnectionForced, amqp.ErrCondFramingError, amqp.ErrCondConnectionRedirect:
			return true
		}
	}
	var sbe *azservicebus.Error
	if errors.As(err, &sbe) && sbe.Code == azservicebus.CodeConnectionLost {
		return true
	}
	// The SDK (v1.11.0) flattens the errors of closing a link's parts into
	// text, one "<part> close error: <error>" line each: recognise the
	// connection-level ones by their go-amqp text.
	lines := strings.Split(err.Error(), "\n")
	for _, l := range lines {
		_, msg, ok := strings.Cut(l, " close error: ")
		if !ok || !(strings.HasPrefix(msg, "amqp: connection closed") || strings.HasPrefix(msg, "*Error{Condition: amqp:connection:")) {
			return false
		}
	}
	return true
}
