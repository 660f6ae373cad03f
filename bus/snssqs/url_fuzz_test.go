package snssqs

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/payrail/payrail/bus/driver"
	"github.com/payrail/payrail/internal/urlcheck"
)

// FuzzParseURL: an sns-sqs:// URL is either refused with an error wrapping
// driver.ErrInvalidURL that reveals none of its secrets, or parsed into
// what it says. OpenTopic and OpenSubscription, given a URL they refuse,
// fail the same way before any AWS call.
func FuzzParseURL(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string, sub bool) {
		urlcheck.NoLeak(t, raw, openOffline(t, sub))
		var p *params
		u, ok := urlcheck.Parse(t, raw, urlcheck.Wraps(driver.ErrInvalidURL), func(u *url.URL) (err error) {
			p, err = parseURL(u, sub)
			return err
		})
		if !ok {
			return
		}
		q := u.Query()
		urlcheck.Once(t, raw, q)
		if u.Host != "" || u.User != nil || strings.Trim(u.Path, "/") != "" {
			t.Fatalf("parseURL(%q) accepted a host, user or path", raw)
		}
		if p.topicARN != q.Get("topic_arn") || p.queueURL != q.Get("queue_url") || (p.topicARN == "") == (p.queueURL == "") || (sub && p.topicARN != "") {
			t.Fatalf("parseURL(%q): topic %q queue %q", raw, p.topicARN, p.queueURL)
		}
		if p.fifo != strings.HasSuffix(p.name(), ".fifo") || p.name() == "" {
			t.Fatalf("parseURL(%q): fifo %v for %q", raw, p.fifo, p.name())
		}
		if b, err := strconv.ParseBool(q.Get("raw")); err == nil && p.raw != b {
			t.Fatalf("parseURL(%q): raw %v", raw, p.raw)
		}
		if p.wait < 0 || p.wait > 20*time.Second || p.wait%time.Second != 0 {
			t.Fatalf("parseURL(%q): wait %v", raw, p.wait)
		}
		if p.visibility < 0 || p.visibility%time.Second != 0 || p.visibility > 12*time.Hour {
			t.Fatalf("parseURL(%q): visibility %v", raw, p.visibility)
		}
		if p.dlqURL != q.Get("dlq_url") {
			t.Fatalf("parseURL(%q): dlq %q", raw, p.dlqURL)
		}
		if !sub && (p.raw || p.visibility != 0 || p.maxAttempt != 0 || p.dlqURL != "" || p.wait != 20*time.Second) {
			t.Fatalf("parseURL(%q): subscription settings on a topic: %+v", raw, p)
		}
	})
}

// errWouldCall stands for the result of an open the URL allows: the fuzz
// target never calls AWS.
var errWouldCall = errors.New("valid URL: the open would call AWS")

// openOffline calls OpenTopic or OpenSubscription with the URLs they
// refuse before any AWS call.
func openOffline(t *testing.T, sub bool) func(string) error {
	return func(raw string) error {
		if u, err := url.Parse(raw); err == nil {
			if _, err := parseURL(u, sub); err == nil {
				return errWouldCall
			}
		}
		var err error
		if sub {
			_, err = OpenSubscription(context.Background(), aws.Config{}, raw)
		} else {
			_, err = OpenTopic(context.Background(), aws.Config{}, raw)
		}
		if !errors.Is(err, driver.ErrInvalidURL) {
			t.Fatalf("open(%q) = %v, want an ErrInvalidURL before any call", raw, err)
		}
		return err
	}
}
