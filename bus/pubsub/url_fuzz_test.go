package pubsub

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/payrail/payrail/bus/driver"
	"github.com/payrail/payrail/internal/urlcheck"
)

// FuzzParseURL: a pubsub:// URL is either refused with an error wrapping
// driver.ErrInvalidURL that reveals none of its secrets, or parsed into
// what it says: the host as the project, the path as one valid topic ID,
// the subscription and settings given, each once. Provision, given a URL
// it refuses, fails the same way before connecting.
func FuzzParseURL(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string, sub bool) {
		urlcheck.NoLeak(t, raw, provisionOffline(t))
		var cfg *config
		u, ok := urlcheck.Parse(t, raw, urlcheck.Wraps(driver.ErrInvalidURL), func(u *url.URL) (err error) {
			cfg, err = parseURL(u, sub)
			return err
		})
		if !ok {
			return
		}
		q := u.Query()
		urlcheck.Once(t, raw, q)
		if cfg.project != u.Hostname() || cfg.project == "" || u.User != nil || u.Fragment != "" {
			t.Fatalf("parseURL(%q): project %q from host %q", raw, cfg.project, u.Hostname())
		}
		if cfg.topic != strings.TrimPrefix(u.Path, "/") || !validID(cfg.topic) {
			t.Fatalf("parseURL(%q): topic %q from path %q", raw, cfg.topic, u.Path)
		}
		if b, err := strconv.ParseBool(q.Get("ordered")); (err == nil && cfg.ordered != b) || cfg.orderedSet != q.Has("ordered") {
			t.Fatalf("parseURL(%q): ordered %v (set %v)", raw, cfg.ordered, cfg.orderedSet)
		}
		if cfg.batchDelay < 0 || cfg.batchDelay > time.Second {
			t.Fatalf("parseURL(%q): batch delay %v", raw, cfg.batchDelay)
		}
		if !sub {
			if cfg.subscription != "" {
				t.Fatalf("parseURL(%q): a topic with subscription %q", raw, cfg.subscription)
			}
			return
		}
		if cfg.subscription != q.Get("subscription") || !validID(cfg.subscription) {
			t.Fatalf("parseURL(%q): subscription %q", raw, cfg.subscription)
		}
		if cfg.dlqTopic != q.Get("dead_letter_topic") || cfg.dlqSubscription != q.Get("dead_letter_subscription") {
			t.Fatalf("parseURL(%q): dead letters %q %q", raw, cfg.dlqTopic, cfg.dlqSubscription)
		}
		if cfg.streams < 1 || cfg.streams > 64 || cfg.maxLease < 10*time.Second || cfg.maxLease > 600*time.Second || cfg.maxNackDelay < 0 || cfg.maxExtension <= 0 {
			t.Fatalf("parseURL(%q): settings out of range: %+v", raw, cfg)
		}
		if cfg.ackDeadline != 0 && (cfg.ackDeadline < 100*time.Millisecond || cfg.ackDeadline > 600*time.Second) {
			t.Fatalf("parseURL(%q): ack deadline %v", raw, cfg.ackDeadline)
		}
	})
}

// errWouldDial stands for Provision's result on a URL it would connect
// with: the fuzz target never dials.
var errWouldDial = errors.New("valid URL: Provision would connect")

// provisionOffline calls Provision with the URLs it refuses before
// connecting.
func provisionOffline(t *testing.T) func(string) error {
	return func(raw string) error {
		if u, err := url.Parse(raw); err == nil && u.Scheme == Scheme {
			if _, err := parseURL(u, true); err == nil {
				return errWouldDial
			}
		}
		_, err := Provision(context.Background(), raw, WithDryRun())
		if !errors.Is(err, driver.ErrInvalidURL) {
			t.Fatalf("Provision(%q) = %v, want an ErrInvalidURL before connecting", raw, err)
		}
		return err
	}
}
