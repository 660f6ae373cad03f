package servicebus

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/payrail/payrail/bus/driver"
)

func TestParseURL(t *testing.T) {
	u, _ := url.Parse("servicebus://payments-events?subscription=worker&namespace=myns&sessions=true" +
		"&lock_duration=30s&max_delivery_count=5&max_sessions=4&session_idle_timeout=2s")
	cfg, err := parseURL(u, true)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"entity", cfg.entity, "payments-events"},
		{"subscription", cfg.subscription, "worker"},
		{"path", cfg.path(), "payments-events/Subscriptions/worker"},
		{"namespace", cfg.namespace, "myns.servicebus.windows.net"},
		{"sessions", cfg.sessions, true},
		{"lock", cfg.lockDuration, 30 * time.Second},
		{"max delivery", cfg.maxDeliveryCount, 5},
		{"max sessions", cfg.maxSessions, 4},
		{"idle", cfg.sessionIdle, 2 * time.Second},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}

	u, _ = url.Parse("servicebus://orders/eu-west")
	cfg, err = parseURL(u, false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.entity != "orders/eu-west" || cfg.subscription != "" || cfg.path() != "orders/eu-west" ||
		cfg.lockDuration != defaultLock || cfg.maxDeliveryCount != defaultMaxDelivery || cfg.sessions {
		t.Errorf("defaults: %+v", cfg)
	}
}

func TestParseURLErrors(t *testing.T) {
	for _, c := range []struct {
		url  string
		sub  bool
		want string
	}{
		{"servicebus://", false, "missing entity"},
		{"servicebus:payments", false, "missing entity"},
		{"servicebus://user:pw@payments", false, "credentials"},
		{"servicebus://payments:5671", false, "not an address"},
		{"servicebus://payments#x", false, "fragment"},
		{"servicebus://payments?subscription=w", false, "subscription parameter"},
		{"servicebus://payments?lock_duration=1s", false, "subscription parameter"},
		{"servicebus://payments?bogus=1", false, "unknown topic parameter"},
		{"servicebus://payments?bogus=1", true, "unknown subscription parameter"},
		{"servicebus://payments?sessions=maybe", true, "boolean"},
		{"servicebus://payments?lock_duration=-1s", true, "positive duration"},
		{"servicebus://payments?max_delivery_count=0", true, "positive integer"},
		{"servicebus://payments?max_sessions=4", true, "need sessions=true"},
		{"servicebus://payments?namespace=a/b", true, "namespace"},
		{"servicebus://payments?subscription=", true, "subscription name"},
		{"servicebus://payments?sessions=true&sessions=false", true, "given 2 times"},
	} {
		u, err := url.Parse(c.url)
		if err != nil {
			t.Fatal(err)
		}
		_, err = parseURL(u, c.sub)
		if !errors.Is(err, driver.ErrInvalidURL) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseURL(%q, sub=%v) = %v; want ErrInvalidURL mentioning %q", c.url, c.sub, err, c.want)
		}
	}
}

func TestCredentialsErrors(t *testing.T) {
	u, _ := url.Parse("servicebus://payments")
	t.Setenv(EnvConnectionString, "")
	if _, err := (Driver{}).OpenTopic(context.Background(), u); !errors.Is(err, driver.ErrInvalidURL) || !strings.Contains(err.Error(), EnvConnectionString) {
		t.Errorf("OpenTopic without credentials = %v; want ErrInvalidURL naming %s", err, EnvConnectionString)
	}
	const secret = "Sup3rS3cret"
	t.Setenv(EnvConnectionString, "Endpoint=nonsense;SharedAccessKey="+secret)
	_, err := (Driver{}).OpenSubscription(context.Background(), u)
	if !errors.Is(err, driver.ErrInvalidURL) {
		t.Errorf("OpenSubscription with a malformed connection string = %v; want ErrInvalidURL", err)
	}
	if err != nil && strings.Contains(err.Error(), secret) {
		t.Errorf("the error quotes the connection string's key: %v", err)
	}
}

func TestHelpers(t *testing.T) {
	if got := copyID("abc", "retry2"); got != "abc#retry2" {
		t.Errorf("copyID = %q", got)
	}
	long := copyID(strings.Repeat("x", 128), "retry2")
	if len(long) > maxIDLength || long == copyID(strings.Repeat("x", 128), "retry3") {
		t.Errorf("copyID of a long id = %q (%d characters)", long, len(long))
	}
	if got := truncate("héllo", 2); got != "h" {
		t.Errorf("truncate on a rune boundary = %q", got)
	}
	for v, want := range map[any]string{"s": "s", int64(3): "3", nil: "", true: "true"} {
		if got := propString(v); got != want {
			t.Errorf("propString(%v) = %q, want %q", v, got, want)
		}
	}
	if propInt(int64(4)) != 4 || propInt(int32(5)) != 5 || propInt("6") != 6 || propInt(1.5) != 0 {
		t.Error("propInt")
	}
}
