package kafka

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/payrail/payrail/bus/driver"
	"github.com/payrail/payrail/internal/urlcheck"
)

// FuzzParseURL: a kafka:// URL is either refused with an error wrapping
// driver.ErrInvalidURL that reveals none of its secrets (the SASL password
// above all), or parsed into what it says. EnsureTopic, given a URL that
// does not parse, fails the same way before dialing.
func FuzzParseURL(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string, sub bool) {
		u, err := url.Parse(raw)
		if err != nil {
			urlcheck.NoLeak(t, raw, ensureTopicOffline(t))
			return
		}
		q := u.Query()
		for _, p := range []string{"tls_ca", "tls_cert", "tls_key"} {
			if q.Get(p) != "" {
				return // file names: the fuzzer must not read the machine's files
			}
		}
		urlcheck.NoLeak(t, raw, ensureTopicOffline(t))
		var cfg *config
		if _, ok := urlcheck.Parse(t, raw, urlcheck.Wraps(driver.ErrInvalidURL), func(u *url.URL) (err error) {
			cfg, err = parseURL(u, sub)
			return err
		}); !ok {
			return
		}
		urlcheck.Once(t, raw, q)
		if strings.Join(cfg.brokers, ",") != strings.Join(trimAll(strings.Split(u.Host, ",")), ",") {
			t.Fatalf("parseURL(%q): brokers %q from host %q", raw, cfg.brokers, u.Host)
		}
		if cfg.topic != strings.TrimPrefix(u.Path, "/") || cfg.topic == "" || strings.Contains(cfg.topic, "/") || u.Fragment != "" {
			t.Fatalf("parseURL(%q): topic %q from path %q", raw, cfg.topic, u.Path)
		}
		sasl := cfg.sarama.Net.SASL
		if pw, _ := u.User.Password(); sasl.Enable != (u.User != nil) || sasl.User != u.User.Username() || sasl.Password != pw {
			t.Fatalf("parseURL(%q): SASL %v user %q does not match the userinfo", raw, sasl.Enable, sasl.User)
		}
		if cid := q.Get("client_id"); cid != "" && cfg.sarama.ClientID != cid {
			t.Fatalf("parseURL(%q): client id %q", raw, cfg.sarama.ClientID)
		}
		if !sub {
			if cfg.group != "" || cfg.dlqTopic != "" {
				t.Fatalf("parseURL(%q): a topic with group %q, dlq %q", raw, cfg.group, cfg.dlqTopic)
			}
			return
		}
		if cfg.group != q.Get("group") || cfg.group == "" {
			t.Fatalf("parseURL(%q): group %q", raw, cfg.group)
		}
		if want := q.Get("dlq"); (want != "" && cfg.dlqTopic != want) || (want == "" && cfg.dlqTopic != cfg.topic+".dlq") || cfg.dlqTopic == cfg.topic {
			t.Fatalf("parseURL(%q): dead-letter topic %q", raw, cfg.dlqTopic)
		}
		if n, err := strconv.Atoi(q.Get("prefetch")); (err == nil && cfg.prefetch != n) || cfg.prefetch < 1 {
			t.Fatalf("parseURL(%q): prefetch %d", raw, cfg.prefetch)
		}
		if b, err := strconv.ParseBool(q.Get("ordered")); err == nil && cfg.ordered != b {
			t.Fatalf("parseURL(%q): ordered %v", raw, cfg.ordered)
		}
		if cfg.drainTimeout <= 0 || cfg.drainTimeout >= cfg.sarama.Consumer.Group.Rebalance.Timeout {
			t.Fatalf("parseURL(%q): drain timeout %v, rebalance timeout %v", raw, cfg.drainTimeout, cfg.sarama.Consumer.Group.Rebalance.Timeout)
		}
	})
}

// errWouldDial stands for EnsureTopic's result on a URL it would connect
// with: the fuzz target never dials.
var errWouldDial = errors.New("valid URL: EnsureTopic would dial")

// ensureTopicOffline calls EnsureTopic with the URLs it refuses before
// connecting, those that do not parse or are not valid kafka:// URLs.
func ensureTopicOffline(t *testing.T) func(string) error {
	return func(raw string) error {
		if u, err := url.Parse(raw); err == nil && u.Scheme == Scheme {
			if _, err := parseURL(u, u.Query().Has("group")); err == nil {
				return errWouldDial
			}
		}
		err := EnsureTopic(context.Background(), raw)
		if !errors.Is(err, driver.ErrInvalidURL) {
			t.Fatalf("EnsureTopic(%q) = %v, want an ErrInvalidURL before dialing", raw, err)
		}
		return err
	}
}

func trimAll(ss []string) []string {
	for i := range ss {
		ss[i] = strings.TrimSpace(ss[i])
	}
	return ss
}
