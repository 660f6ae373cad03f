package inmemory

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/payrail/payrail/bus/driver"
)

var _ driver.Provisioner = (*Broker)(nil)

// Provision creates the topic a URL names and, for a URL with a
// subscription parameter, the subscription (the default subscription always
// exists with its topic), and sets the subscription's settings: the ack
// deadline (spec.AckDeadline, else the URL's ack_deadline), the broker's
// maximum attempts (spec.MaxAttempts, where 0 means the broker never
// dead-letters on its own; the URL's max_attempts applies when the spec
// leaves it 0) and per-key ordering (on when spec.Ordered or the URL's
// ordered says so; spec.Ordered=false keeps the current setting). The
// dead-letter queue is part of every subscription. A URL with create=false
// is refused: Provision creates.
func (b *Broker) Provision(ctx context.Context, u *url.URL, spec driver.ProvisionSpec) ([]driver.ProvisionStep, error) {
	if b == nil {
		return nil, errNilBroker
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg, err := parseURL(u, true)
	if err != nil {
		return nil, err
	}
	if !cfg.create {
		return nil, invalidURL("create=false contradicts Provision")
	}
	st := cfg.settings
	if spec.AckDeadline > 0 {
		st.ackDeadline = &spec.AckDeadline
	}
	if spec.MaxAttempts > 0 || st.maxAttempts == nil {
		st.maxAttempts = &spec.MaxAttempts
	}
	if spec.Ordered {
		if st.ordered != nil && !*st.ordered {
			return nil, invalidURL("ordered=false contradicts spec.Ordered")
		}
		on := true
		st.ordered = &on
	}

	b.mu.Lock()
	t, topicExists := b.topics[cfg.topic]
	b.mu.Unlock()
	steps := []driver.ProvisionStep{{Kind: "topic", Name: cfg.topic, Action: action(topicExists, spec.DryRun)}}
	subName := cfg.topic + " (default subscription)"
	subExists := topicExists
	if cfg.subscription != "" {
		subName = cfg.topic + "/" + cfg.subscription
		if topicExists {
			_, err := t.subscription(cfg.subscription, false)
			subExists = err == nil
		}
	}
	if spec.DryRun {
		act := action(subExists, true)
		if subExists {
			s, _ := t.subscription(cfg.subscription, false)
			if detail := s.differs(st); detail != "" {
				act = driver.ActionWouldUpdate
			}
		}
		return append(steps, driver.ProvisionStep{Kind: "subscription", Name: subName, Action: act}), nil
	}
	if t, err = b.topic(cfg.topic, true); err != nil {
		return nil, err
	}
	s, err := t.subscription(cfg.subscription, true)
	if err != nil {
		return nil, err
	}
	step := driver.ProvisionStep{Kind: "subscription", Name: subName, Action: action(subExists, false), Detail: s.differs(st)}
	if step.Action == driver.ActionExists && step.Detail != "" {
		step.Action = driver.ActionUpdated
	}
	if step.Action == driver.ActionExists {
		step.Detail = ""
	}
	s.apply(st)
	return append(steps, step), nil
}

// action is the step of an entity that exists or not, in a dry run or not.
func action(exists, dry bool) string {
	switch {
	case exists:
		return driver.ActionExists
	case dry:
		return driver.ActionWouldCreate
	}
	return driver.ActionCreated
}

// differs describes the settings of st that differ from the subscription's.
func (s *subscription) differs(st settings) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	detail := ""
	add := func(format string, args ...any) {
		if detail != "" {
			detail += ", "
		}
		detail += fmt.Sprintf(format, args...)
	}
	if st.ackDeadline != nil && *st.ackDeadline != s.ackDeadline {
		add("ack deadline %v", *st.ackDeadline)
	}
	if st.maxAttempts != nil && *st.maxAttempts != s.maxAttempts {
		add("max attempts %d", *st.maxAttempts)
	}
	if st.ordered != nil && *st.ordered != s.ordered {
		add("ordered %t", *st.ordered)
	}
	return detail
}

// apply sets the settings st gives.
func (s *subscription) apply(st settings) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applyLocked(st)
}

// oldestAge returns the age of the subscription's oldest message waiting,
// delayed, held behind its key or in flight (0 if there is none). Called
// with s.mu held.
func (s *subscription) oldestAge() time.Duration {
	if s.age.len() == 0 {
		s.ageUnsorted = false
		return 0
	}
	oldest := s.age.at(0).msg.published
	if s.ageUnsorted {
		s.age.each(func(e *entry) {
			if p := e.msg.published; !gone(e) && p.Before(oldest) {
				oldest = p
			}
		})
	}
	return time.Since(oldest)
}
