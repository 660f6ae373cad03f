package bus

import (
	"net/url"
	"testing"
)

func TestNameFromURL(t *testing.T) {
	for _, tc := range []struct {
		url     string
		sub     bool
		want    string
		wantSys string
	}{
		{"inmemory://payments", false, "payments", "inmemory"},
		{"inmemory://payments?subscription=audit", true, "audit", "inmemory"},
		{"kafka://b1:9092,b2:9092/payments", false, "payments", "kafka"},
		{"kafka://b1:9092/payments?group=workers", true, "workers", "kafka"},
		{"kafka://localhost:9092/payments", false, "payments", "kafka"},
		{"pubsub://my-project/payments?subscription=payments-worker", true, "payments-worker", "gcp_pubsub"},
		{"pubsub://my-project/payments", false, "payments", "gcp_pubsub"},
		{"servicebus://payments-queue", true, "payments-queue", "servicebus"},
		{"sns-sqs://?queue_url=" + url.QueryEscape("https://sqs.us-east-1.amazonaws.com/123456789012/payments.fifo") + "&fifo=true", true, "payments.fifo", "aws_sqs"},
		{"sns-sqs://?topic_arn=" + url.QueryEscape("arn:aws:sns:us-east-1:123456789012:payments"), false, "payments", "aws_sqs"},
		{"kafka://user:secret@b1:9092", false, "", "kafka"},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		var o subscriptionOptions
		withURL(u, tc.sub).applySubscription(&o)
		if o.tel.name != tc.want || o.tel.system != tc.wantSys {
			t.Errorf("%s (subscription %v): name %q system %q, want %q %q", tc.url, tc.sub, o.tel.name, o.tel.system, tc.want, tc.wantSys)
		}
	}
}

func TestDriverSystem(t *testing.T) {
	type local struct{}
	if got := driverSystem(&local{}); got != "bus" {
		t.Errorf("driverSystem of a bus type = %q, want the package name", got)
	}
	if got := driverSystem(nil); got != "unknown" {
		t.Errorf("driverSystem(nil) = %q", got)
	}
}
