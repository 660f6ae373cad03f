package servicebus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus/admin"

	"github.com/payrail/payrail/bus/driver"
)

// Limits of the entity properties Provision sets.
const (
	minLock = 5 * time.Second
	maxLock = 5 * time.Minute
	// UnlimitedDeliveryCount is the MaxDeliveryCount Provision sets for
	// spec.MaxAttempts 0: Service Bus has no unlimited setting, so it is
	// the largest count the service takes.
	UnlimitedDeliveryCount = math.MaxInt32
)

// adminClientOptions are the options of the admin clients the driver
// creates (tests point their transport at a test peer).
var adminClientOptions *admin.ClientOptions

// newAdminClient returns an admin (ATOM/REST) client with the URL's
// credentials: the connection string, or Entra ID for namespace=.
func newAdminClient(cfg *config) (*admin.Client, error) {
	if cfg.namespace != "" {
		cred, err := azidentity.NewDefaultAzureCredential(nil)
		if err != nil {
			return nil, fmt.Errorf("servicebus: Entra ID credential for %s: %w", cfg.namespace, err)
		}
		c, err := admin.NewClient(cfg.namespace, cred, adminClientOptions)
		if err != nil {
			return nil, fmt.Errorf("servicebus: admin client: %w", err)
		}
		return c, nil
	}
	connStr := strings.TrimSpace(os.Getenv(EnvConnectionString))
	if connStr == "" {
		return nil, invalidURL("no credentials: set %s or the namespace= parameter", EnvConnectionString)
	}
	c, err := admin.NewClientFromConnectionString(connStr, adminClientOptions)
	if err != nil {
		return nil, invalidURL("%s is not a valid Service Bus connection string", EnvConnectionString)
	}
	return c, nil
}

// adminErr classifies an admin client error.
func adminErr(op, entity string, err error) error {
	if re, ok := errors.AsType[*azcore.ResponseError](err); ok {
		switch re.StatusCode {
		case 401, 403:
			return fmt.Errorf("servicebus: %s %s: %w: %w", op, entity, driver.ErrPermission, err)
		case 404:
			return fmt.Errorf("servicebus: %s %s: %w: %w", op, entity, driver.ErrNotFound, err)
		}
	}
	return mapErr(op, entity, err)
}

var _ driver.Provisioner = Driver{}

// Provision implements bus.Provision through the service's administration
// (ATOM) API, which needs the Manage right. A URL without subscription
// names a queue; with subscription=<name>, a topic and its subscription.
// The queue or subscription gets MaxDeliveryCount spec.MaxAttempts (0:
// UnlimitedDeliveryCount, since the service requires a count, so open it
// with max_delivery_count=2147483647), LockDuration spec.AckDeadline
// (5s to 5m, whole seconds; default the service's 60s) and
// RequiresSession spec.Ordered or the URL's sessions=true. The dead-letter
// sub-queue is part of every queue and subscription. An existing entity's
// lock duration and delivery count are updated when they differ; a
// different RequiresSession, which the service cannot change, is an error
// wrapping bus.ErrConflict. A URL whose lock_duration or
// max_delivery_count contradicts the spec is refused.
func (Driver) Provision(ctx context.Context, u *url.URL, spec driver.ProvisionSpec) ([]driver.ProvisionStep, error) {
	cfg, err := parseURL(u, true)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	want := entitySpec{sessions: cfg.sessions || spec.Ordered, maxDelivery: int32(UnlimitedDeliveryCount)}
	if spec.MaxAttempts > 0 {
		want.maxDelivery = int32(min(spec.MaxAttempts, UnlimitedDeliveryCount))
	}
	if q.Has("max_delivery_count") && cfg.maxDeliveryCount != int(want.maxDelivery) {
		return nil, invalidURL("max_delivery_count=%d contradicts spec.MaxAttempts (MaxDeliveryCount %d)", cfg.maxDeliveryCount, want.maxDelivery)
	}
	if q.Has("sessions") && !cfg.sessions && spec.Ordered {
		return nil, invalidURL("sessions=false contradicts spec.Ordered")
	}
	if spec.AckDeadline > 0 {
		want.lock = ceilSecond(spec.AckDeadline)
		if want.lock < minLock || want.lock > maxLock {
			return nil, fmt.Errorf("servicebus: AckDeadline %v: Service Bus lock durations are 5s to 5m: %w", spec.AckDeadline, driver.ErrUnsupported)
		}
		if q.Has("lock_duration") && cfg.lockDuration != want.lock {
			return nil, invalidURL("lock_duration=%v contradicts spec.AckDeadline", cfg.lockDuration)
		}
	} else if q.Has("lock_duration") {
		want.lock = cfg.lockDuration
	}
	ac, err := newAdminClient(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.subscription == "" {
		st, err := ensureQueue(ctx, ac, cfg.entity, want, spec.DryRun)
		return []driver.ProvisionStep{st}, err
	}
	topic, err := ensureTopic(ctx, ac, cfg.entity, spec.DryRun)
	if err != nil {
		return []driver.ProvisionStep{topic}, err
	}
	sub, err := ensureSubscription(ctx, ac, cfg, want, spec.DryRun, topic.Action == driver.ActionWouldCreate)
	return []driver.ProvisionStep{topic, sub}, err
}

// entitySpec is what Provision sets on a queue or subscription.
type entitySpec struct {
	sessions    bool
	maxDelivery int32
	lock        time.Duration // 0: the service's default (or the existing value)
}

func ceilSecond(d time.Duration) time.Duration {
	return (d + time.Second - 1) / time.Second * time.Second
}

// isoDuration renders d (whole seconds) as the service's ISO 8601 duration.
func isoDuration(d time.Duration) *string {
	s := "PT" + strconv.FormatInt(int64(d/time.Second), 10) + "S"
	return &s
}

// parseISODuration reads the ISO 8601 durations the service returns
// (P[nD]T[nH][nM][n[.n]S]); ok is false for other forms.
func parseISODuration(s string) (d time.Duration, ok bool) {
	rest, found := strings.CutPrefix(s, "P")
	if !found || rest == "" {
		return 0, false
	}
	inTime := false
	for rest != "" {
		if rest[0] == 'T' {
			inTime, rest = true, rest[1:]
			continue
		}
		i := strings.IndexAny(rest, "DHMS")
		if i <= 0 {
			return 0, false
		}
		n, err := strconv.ParseFloat(rest[:i], 64)
		if err != nil {
			return 0, false
		}
		unit := map[byte]time.Duration{'D': 24 * time.Hour, 'H': time.Hour, 'M': time.Minute, 'S': time.Second}[rest[i]]
		if (rest[i] == 'D') == inTime {
			return 0, false
		}
		d += time.Duration(n * float64(unit))
		rest = rest[i+1:]
	}
	return d, true
}

// diff compares an existing entity's properties with w, returning what
// to update ("" if nothing) or a conflict.
func (w entitySpec) diff(kind, name string, lock *string, maxDelivery *int32, sessions *bool) (string, error) {
	if (sessions != nil && *sessions) != w.sessions {
		return "", fmt.Errorf("servicebus: %s %s exists with RequiresSession %t, which cannot change: %w", kind, name, !w.sessions, driver.ErrConflict)
	}
	var changes []string
	if maxDelivery == nil || *maxDelivery != w.maxDelivery {
		changes = append(changes, fmt.Sprintf("MaxDeliveryCount %d", w.maxDelivery))
	}
	if w.lock > 0 {
		got, ok := time.Duration(0), lock != nil
		if ok {
			got, ok = parseISODuration(*lock)
		}
		if !ok || got != w.lock {
			changes = append(changes, fmt.Sprintf("LockDuration %v", w.lock))
		}
	}
	return strings.Join(changes, ", "), nil
}

func (w entitySpec) detail() string {
	d := fmt.Sprintf("MaxDeliveryCount %d, RequiresSession %t", w.maxDelivery, w.sessions)
	if w.lock > 0 {
		d += fmt.Sprintf(", LockDuration %v", w.lock)
	}
	return d
}

// entityOps are the admin operations on a queue or a subscription, for
// ensureEntity.
type entityOps struct {
	// get returns the entity's properties, found false if it is missing.
	get func() (found bool, lock *string, maxDelivery *int32, sessions *bool, err error)
	// create creates it with w; update sets w's delivery count and lock.
	create, update func(w entitySpec) error
}

// ensureEntity creates a queue or subscription, or updates the settings
// that differ.
func ensureEntity(kind, name string, w entitySpec, dry bool, ops entityOps) (driver.ProvisionStep, error) {
	st := driver.ProvisionStep{Kind: kind, Name: name, Action: driver.ActionExists}
	found, lock, maxDelivery, sessions, err := ops.get()
	if err != nil {
		return st, adminErr("get "+kind, name, err)
	}
	if !found {
		st.Action, st.Detail = driver.ActionWouldCreate, w.detail()
		if dry {
			return st, nil
		}
		if err := ops.create(w); err != nil {
			return st, adminErr("create "+kind, name, err)
		}
		st.Action = driver.ActionCreated
		return st, nil
	}
	if st.Detail, err = w.diff(kind, name, lock, maxDelivery, sessions); err != nil || st.Detail == "" {
		return st, err
	}
	st.Action = driver.ActionWouldUpdate
	if dry {
		return st, nil
	}
	if err := ops.update(w); err != nil {
		return st, adminErr("update "+kind, name, err)
	}
	st.Action = driver.ActionUpdated
	return st, nil
}

// lockOf is the LockDuration property for w: old when w keeps it.
func (w entitySpec) lockOf(old *string) *string {
	if w.lock > 0 {
		return isoDuration(w.lock)
	}
	return old
}

func ensureQueue(ctx context.Context, ac *admin.Client, name string, w entitySpec, dry bool) (driver.ProvisionStep, error) {
	var got *admin.GetQueueResponse
	return ensureEntity("queue", name, w, dry, entityOps{
		get: func() (bool, *string, *int32, *bool, error) {
			var err error
			if got, err = ac.GetQueue(ctx, name, nil); err != nil || got == nil {
				return false, nil, nil, nil, err
			}
			return true, got.LockDuration, got.MaxDeliveryCount, got.RequiresSession, nil
		},
		create: func(w entitySpec) error {
			props := &admin.QueueProperties{MaxDeliveryCount: &w.maxDelivery, RequiresSession: &w.sessions, LockDuration: w.lockOf(nil)}
			_, err := ac.CreateQueue(ctx, name, &admin.CreateQueueOptions{Properties: props})
			return err
		},
		update: func(w entitySpec) error {
			p := got.QueueProperties
			p.MaxDeliveryCount, p.LockDuration = &w.maxDelivery, w.lockOf(p.LockDuration)
			_, err := ac.UpdateQueue(ctx, name, p, nil)
			return err
		},
	})
}

func ensureTopic(ctx context.Context, ac *admin.Client, name string, dry bool) (driver.ProvisionStep, error) {
	st := driver.ProvisionStep{Kind: "topic", Name: name, Action: driver.ActionExists}
	got, err := ac.GetTopic(ctx, name, nil)
	switch {
	case err != nil:
		return st, adminErr("get topic", name, err)
	case got != nil:
		return st, nil
	case dry:
		st.Action = driver.ActionWouldCreate
		return st, nil
	}
	if _, err := ac.CreateTopic(ctx, name, nil); err != nil {
		return st, adminErr("create topic", name, err)
	}
	st.Action = driver.ActionCreated
	return st, nil
}

func ensureSubscription(ctx context.Context, ac *admin.Client, cfg *config, w entitySpec, dry, noTopic bool) (driver.ProvisionStep, error) {
	var got *admin.GetSubscriptionResponse
	return ensureEntity("subscription", cfg.path(), w, dry, entityOps{
		get: func() (bool, *string, *int32, *bool, error) {
			if noTopic { // dry run: the topic would be created, so would its subscription
				return false, nil, nil, nil, nil
			}
			var err error
			if got, err = ac.GetSubscription(ctx, cfg.entity, cfg.subscription, nil); err != nil || got == nil {
				return false, nil, nil, nil, err
			}
			return true, got.LockDuration, got.MaxDeliveryCount, got.RequiresSession, nil
		},
		create: func(w entitySpec) error {
			props := &admin.SubscriptionProperties{MaxDeliveryCount: &w.maxDelivery, RequiresSession: &w.sessions, LockDuration: w.lockOf(nil)}
			_, err := ac.CreateSubscription(ctx, cfg.entity, cfg.subscription, &admin.CreateSubscriptionOptions{Properties: props})
			return err
		},
		update: func(w entitySpec) error {
			p := got.SubscriptionProperties
			p.MaxDeliveryCount, p.LockDuration = &w.maxDelivery, w.lockOf(p.LockDuration)
			_, err := ac.UpdateSubscription(ctx, cfg.entity, cfg.subscription, p, nil)
			return err
		},
	})
}

// Stats reads the entity's runtime properties through the administration
// API (which needs the Manage right): Backlog is ActiveMessageCount plus
// ScheduledMessageCount (active messages include those locked by
// consumers: the service does not count locks), DeadLetters
// DeadLetterMessageCount. InFlight is -1. Credentials without the Manage
// right (Listen and Send only) cannot read the counts: Backlog and
// DeadLetters are then -1, and the API is asked again only after
// statsDeniedRetry. OldestAge is the age of the first message a peek
// returns (the lowest sequence number still in the entity, locked or not),
// -1 on sessionful entities, whose peeks go through a session.
func (s *subscription) Stats(ctx context.Context) (driver.Stats, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return driver.Stats{}, fmt.Errorf("servicebus: stats: %w", driver.ErrClosed)
	}
	ac, err := s.adminClient()
	if err != nil {
		return driver.Stats{}, err
	}
	st := driver.Stats{InFlight: -1, OldestAge: -1}
	err = s.runtimeCounts(ctx, ac, &st)
	if errors.Is(err, driver.ErrPermission) {
		// Listen/Send credentials cannot read the counts: they are unknown
		// (and asked for again only after statsDeniedRetry).
		st.Backlog, st.DeadLetters = -1, -1
	} else if err != nil {
		return driver.Stats{}, err
	}
	if s.recv != nil {
		st.OldestAge = 0
		if st.Backlog != 0 {
			if st.OldestAge, err = s.oldestAge(ctx); err != nil {
				return driver.Stats{}, err
			}
		}
	}
	return st, nil
}

// statsDeniedRetry is how long Stats reports the counts as unknown, without
// asking, after the administration API refused the credentials.
const statsDeniedRetry = 5 * time.Minute

// runtimeCounts reads Backlog and DeadLetters from the entity's runtime
// properties.
func (s *subscription) runtimeCounts(ctx context.Context, ac *admin.Client, st *driver.Stats) error {
	s.mu.Lock()
	denied := !s.statsDenied.IsZero() && time.Since(s.statsDenied) < statsDeniedRetry
	s.mu.Unlock()
	if denied {
		return fmt.Errorf("servicebus: runtime properties of %s: %w", s.cfg.path(), driver.ErrPermission)
	}
	err := s.readRuntimeCounts(ctx, ac, st)
	if errors.Is(err, driver.ErrPermission) {
		s.mu.Lock()
		s.statsDenied = time.Now()
		s.mu.Unlock()
	}
	return err
}

func (s *subscription) readRuntimeCounts(ctx context.Context, ac *admin.Client, st *driver.Stats) error {
	if s.cfg.subscription == "" {
		rp, err := ac.GetQueueRuntimeProperties(ctx, s.cfg.entity, nil)
		if err != nil {
			return adminErr("runtime properties of", s.cfg.path(), err)
		}
		if rp == nil {
			return fmt.Errorf("servicebus: queue %s: %w", s.cfg.entity, driver.ErrNotFound)
		}
		st.Backlog = int64(rp.ActiveMessageCount) + int64(rp.ScheduledMessageCount)
		st.DeadLetters = int64(rp.DeadLetterMessageCount)
		return nil
	}
	rp, err := ac.GetSubscriptionRuntimeProperties(ctx, s.cfg.entity, s.cfg.subscription, nil)
	if err != nil {
		return adminErr("runtime properties of", s.cfg.path(), err)
	}
	if rp == nil {
		return fmt.Errorf("servicebus: subscription %s: %w", s.cfg.path(), driver.ErrNotFound)
	}
	// Subscriptions have no scheduled messages of their own: the topic
	// holds them until they are due.
	st.Backlog = int64(rp.ActiveMessageCount)
	st.DeadLetters = int64(rp.DeadLetterMessageCount)
	return nil
}

// oldestAge peeks the entity's first message.
func (s *subscription) oldestAge(ctx context.Context) (time.Duration, error) {
	var from int64
	ms, err := s.recv.PeekMessages(ctx, 1, &azservicebus.PeekMessagesOptions{FromSequenceNumber: &from})
	if err != nil {
		return 0, mapErr("peek", s.cfg.path(), err)
	}
	if len(ms) == 0 || ms[0].EnqueuedTime == nil {
		return 0, nil
	}
	return max(0, time.Since(*ms[0].EnqueuedTime)), nil
}

// adminClient returns the subscription's admin client, creating it on
// first use.
func (s *subscription) adminClient() (*admin.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admin != nil {
		return s.admin, nil
	}
	ac, err := newAdminClient(s.cfg)
	if err != nil {
		return nil, err
	}
	s.admin = ac
	return ac, nil
}
