package testkit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/payrail/payrail/bus"
)

// BusProvisionConfig connects the provisioning conformance case to one
// driver and its real peer.
type BusProvisionConfig struct {
	// NewURLs returns the URLs of a topic and a subscription of it naming
	// entities that do not exist yet on the peer (fresh, unique names),
	// and registers their removal with tb.Cleanup.
	NewURLs func(tb testing.TB) ProvisionURLs
	// Spec is what the case provisions. Its DryRun is ignored.
	Spec bus.ProvisionSpec
	// UnknownStats names the Stats fields ("Backlog", "InFlight",
	// "DeadLetters", "OldestAge") the driver documents it cannot read: the
	// case checks they are -1, and that every other field is not.
	UnknownStats []string
	// Timeout bounds the case (default 90s).
	Timeout time.Duration
}

// ProvisionURLs are the URLs of the provisioning case.
type ProvisionURLs struct {
	// Topic and Subscription are opened with bus.OpenTopic and
	// bus.OpenSubscription.
	Topic, Subscription string
	// Provision is given to bus.Provision, if not Subscription (sns-sqs
	// adds the topic_arn a subscription URL does not carry).
	Provision string
}

// RunBusProvision is the provisioning conformance case: bus.Provision from
// nothing (a dry run first creates nothing), again (idempotent: every
// entity exists), then the provisioned entities carry messages: N published
// messages show in Stats as Backlog N (and a positive OldestAge), one
// dead-lettered by its handler shows as DeadLetters 1, and the others,
// acked, leave Backlog and InFlight at 0. Fields the driver declares
// unknowable must read -1, the others never do.
func RunBusProvision(t *testing.T, cfg BusProvisionConfig) {
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 90 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	urls := cfg.NewURLs(t)
	topicURL, subURL, provURL := urls.Topic, urls.Subscription, urls.Provision
	if provURL == "" {
		provURL = subURL
	}
	spec := cfg.Spec

	spec.DryRun = true
	for range 2 { // a dry run must not create anything, so the second sees nothing either
		steps, err := bus.Provision(ctx, provURL, spec)
		if err != nil {
			t.Fatalf("dry-run Provision from nothing: %v", err)
		}
		provisionActions(t, "dry run from nothing", steps, bus.ActionWouldCreate)
	}
	spec.DryRun = false
	steps, err := bus.Provision(ctx, provURL, spec)
	if err != nil {
		t.Fatalf("Provision from nothing: %v", err)
	}
	provisionActions(t, "Provision from nothing", steps, bus.ActionCreated)
	again, err := bus.Provision(ctx, provURL, spec)
	if err != nil {
		t.Fatalf("Provision again: %v", err)
	}
	provisionActions(t, "Provision again", again, bus.ActionExists)
	if len(again) != len(steps) {
		t.Fatalf("Provision again reported %d steps, the first %d", len(again), len(steps))
	}
	spec.DryRun = true
	dry, err := bus.Provision(ctx, provURL, spec)
	if err != nil {
		t.Fatalf("dry-run Provision of what exists: %v", err)
	}
	provisionActions(t, "dry run of what exists", dry, bus.ActionExists)

	topic, err := bus.OpenTopic(ctx, topicURL)
	if err != nil {
		t.Fatalf("OpenTopic of the provisioned topic: %v", err)
	}
	defer topic.Close()
	sub, err := bus.OpenSubscription(ctx, subURL, bus.WithConcurrency(1), bus.WithMaxAttempts(3))
	if err != nil {
		t.Fatalf("OpenSubscription of the provisioned subscription: %v", err)
	}
	defer sub.Close()
	if !sub.Capabilities().Stats {
		t.Fatalf("the provisioned subscription does not declare Stats")
	}
	unknown := func(f string) bool { return slices.Contains(cfg.UnknownStats, f) }
	check := func(st bus.Stats, want map[string]int64) error {
		got := map[string]int64{"Backlog": st.Backlog, "InFlight": st.InFlight, "DeadLetters": st.DeadLetters, "OldestAge": int64(st.OldestAge)}
		for f, v := range got {
			if unknown(f) != (v == -1) {
				return fmt.Errorf("Stats = %+v: %s = %d, but the driver declares it unknowable: %t", st, f, v, unknown(f))
			}
		}
		for f, w := range want {
			if unknown(f) {
				continue
			}
			if f == "OldestAge" { // want 1: positive, 0: zero
				if (got[f] > 0) != (w > 0) {
					return fmt.Errorf("Stats = %+v, want OldestAge positive: %t", st, w > 0)
				}
				continue
			}
			if got[f] != w {
				return fmt.Errorf("Stats = %+v, want %s = %d", st, f, w)
			}
		}
		return nil
	}
	stats := func(want map[string]int64) func() error {
		return func() error {
			st, err := sub.Stats(ctx)
			if err != nil {
				return err
			}
			return check(st, want)
		}
	}
	busEventually(t, ctx, "Stats of the empty subscription", stats(map[string]int64{"Backlog": 0, "InFlight": 0, "DeadLetters": 0, "OldestAge": 0}))

	const n = 5
	ms := make([]*bus.Message, n)
	for i := range ms {
		ms[i] = &bus.Message{Key: fmt.Sprintf("prov-%d", i), Body: []byte{byte(i)}}
	}
	if err := topic.PublishBatch(ctx, ms); err != nil {
		t.Fatalf("PublishBatch: %v", err)
	}
	busEventually(t, ctx, fmt.Sprintf("Stats sees Backlog = %d", n), stats(map[string]int64{"Backlog": n, "InFlight": 0, "DeadLetters": 0, "OldestAge": 1}))

	victim := ms[2].ID
	handled := make(chan string, 4*n)
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- sub.Receive(rctx, func(ctx context.Context, m *bus.Message) error {
			if m.ID == victim {
				err := m.DeadLetter(ctx, "provision conformance")
				handled <- m.ID
				return err
			}
			handled <- m.ID
			return nil
		})
	}()
	seen := map[string]bool{}
	for len(seen) < n {
		select {
		case id := <-handled:
			seen[id] = true
		case <-ctx.Done():
			stop()
			t.Fatalf("handled %d of %d messages before the timeout", len(seen), n)
		}
	}
	busEventually(t, ctx, "Stats sees DeadLetters = 1 and an empty queue", stats(map[string]int64{"Backlog": 0, "InFlight": 0, "DeadLetters": 1, "OldestAge": 0}))
	stop()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Receive: %v", err)
	}
	dls, err := sub.DeadLetters(ctx, 10)
	switch {
	case errors.Is(err, bus.ErrUnsupported):
	case err != nil:
		t.Fatalf("DeadLetters: %v", err)
	case len(dls) != 1 || dls[0].Message.ID != victim:
		t.Fatalf("DeadLetters = %d messages, want exactly the dead-lettered %s", len(dls), victim)
	}
}

// provisionActions fails the test unless steps is not empty and every step
// has the action want.
func provisionActions(t *testing.T, what string, steps []bus.ProvisionStep, want string) {
	t.Helper()
	if len(steps) == 0 {
		t.Fatalf("%s: no steps reported", what)
	}
	for _, s := range steps {
		if s.Action != want {
			t.Fatalf("%s: step %+v, want action %q for every step (all: %+v)", what, s, want, steps)
		}
	}
}
