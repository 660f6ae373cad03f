package snssqs

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/payrail/payrail/bus/driver"
)

const (
	testQueue = "https://sqs.eu-west-1.amazonaws.com/123456789012/payments"
	testTopic = "arn:aws:sns:eu-west-1:123456789012:payments"
)

func TestParseURL(t *testing.T) {
	u, _ := url.Parse(QueueURL(testQueue) + "&raw=true&wait=5s&visibility=1500ms&max_attempts=4&dlq_url=" +
		url.QueryEscape(testQueue+"-dlq"))
	p, err := parseURL(u, true)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"queue", p.queueURL, testQueue},
		{"fifo", p.fifo, false},
		{"raw", p.raw, true},
		{"wait", p.wait, 5 * time.Second},
		{"visibility (rounded up)", p.visibility, 2 * time.Second},
		{"max attempts", p.maxAttempt, 4},
		{"dlq", p.dlqURL, testQueue + "-dlq"},
		{"name", p.name(), "payments"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}

	u, _ = url.Parse(QueueURL(testQueue))
	if p, err = parseURL(u, true); err != nil || p.wait != 20*time.Second || p.raw || p.visibility != 0 {
		t.Errorf("defaults: %+v, %v", p, err)
	}
	u, _ = url.Parse(TopicURL(testTopic))
	if p, err = parseURL(u, false); err != nil || p.topicARN != testTopic || p.fifo || p.name() != "payments" {
		t.Errorf("topic: %+v, %v", p, err)
	}
	// FIFO from the suffix, and with fifo=true.
	for _, raw := range []string{TopicURL(testTopic + ".fifo"), TopicURL(testTopic+".fifo") + "&fifo=true", QueueURL(testQueue+".fifo") + "&fifo=true"} {
		u, _ = url.Parse(raw)
		if p, err = parseURL(u, false); err != nil || !p.fifo {
			t.Errorf("%s: fifo %v, %v", raw, p != nil && p.fifo, err)
		}
	}
}

func TestParseURLErrors(t *testing.T) {
	for _, c := range []struct {
		url  string
		sub  bool
		want string
	}{
		{"sns-sqs://", false, "missing topic_arn or queue_url"},
		{"sns-sqs://", true, "missing queue_url"},
		{TopicURL(testTopic), true, `unknown subscription parameter "topic_arn"`},
		{TopicURL(testTopic) + "&queue_url=" + url.QueryEscape(testQueue), false, "not both"},
		{"sns-sqs://host?queue_url=" + url.QueryEscape(testQueue), true, "nothing between"},
		{"sns-sqs://?topic_arn=payments", false, "not an SNS topic ARN"},
		{"sns-sqs://?topic_arn=arn:aws:sqs:eu-west-1:1:q", false, "not an SNS topic ARN"},
		{"sns-sqs://?queue_url=payments", true, "not an SQS queue URL"},
		{QueueURL(testQueue) + "&queue_url=x", true, "given 2 times"},
		{QueueURL(testQueue) + "&fifo=true", true, "does not end in .fifo"},
		{QueueURL(testQueue+".fifo") + "&fifo=false", true, "does end in .fifo"},
		{QueueURL(testQueue) + "&fifo=maybe", true, "not a boolean"},
		{QueueURL(testQueue) + "&raw=1x", true, "not a boolean"},
		{QueueURL(testQueue) + "&wait=21s", true, "whole seconds"},
		{QueueURL(testQueue) + "&wait=1500ms", true, "whole seconds"},
		{QueueURL(testQueue) + "&visibility=0s", true, "positive duration"},
		{QueueURL(testQueue) + "&visibility=13h", true, "positive duration"},
		{QueueURL(testQueue) + "&max_attempts=0", true, "positive integer"},
		{QueueURL(testQueue) + "&dlq_url=nope", true, "dlq_url"},
		{QueueURL(testQueue) + "&region=eu-west-1", true, `unknown subscription parameter "region"`},
		{QueueURL(testQueue) + "&wait=2s", false, `unknown topic parameter "wait"`},
		{QueueURL(testQueue) + "&q=%zz", true, "malformed query"},
	} {
		u, err := url.Parse(c.url)
		if err != nil {
			t.Fatalf("%s: %v", c.url, err)
		}
		_, err = parseURL(u, c.sub)
		if !errors.Is(err, driver.ErrInvalidURL) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseURL(%s, sub=%t) = %v; want ErrInvalidURL mentioning %q", c.url, c.sub, err, c.want)
		}
	}
}

func TestSeconds(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want int32
	}{{0, 0}, {-time.Second, 0}, {time.Nanosecond, 1}, {time.Second, 1}, {1001 * time.Millisecond, 2}, {13 * time.Hour, 43200}} {
		if got := seconds(c.d); got != c.want {
			t.Errorf("seconds(%v) = %d, want %d", c.d, got, c.want)
		}
	}
}

func TestParseRedrivePolicy(t *testing.T) {
	for _, rp := range []string{
		`{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:q-dlq","maxReceiveCount":5}`,
		`{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:q-dlq","maxReceiveCount":"5"}`,
	} {
		arn, n, err := parseRedrivePolicy(rp)
		if err != nil || arn != "arn:aws:sqs:us-east-1:1:q-dlq" || n != 5 {
			t.Errorf("parseRedrivePolicy(%s) = %q, %d, %v", rp, arn, n, err)
		}
	}
	for _, rp := range []string{`{`, `{"maxReceiveCount":5}`, `{"deadLetterTargetArn":"a","maxReceiveCount":0}`} {
		if _, _, err := parseRedrivePolicy(rp); err == nil {
			t.Errorf("parseRedrivePolicy(%s) accepted", rp)
		}
	}
}
