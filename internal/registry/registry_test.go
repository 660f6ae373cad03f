package registry

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
)

type drv interface{ Name() string }

type named string

func (n named) Name() string { return string(n) }

var (
	errUnknown = errors.New("unknown driver")
	errInvalid = errors.New("invalid URL")
)

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Fatalf("%s: expected a panic", what)
		}
	}()
	f()
}

func TestRegistry(t *testing.T) {
	r := New[drv]("bus", map[string]string{"kafka": "github.com/payrail/payrail/bus/kafka"}, errUnknown, errInvalid)
	r.Register("zeta", named("z"))
	r.Register("alpha", named("a"))
	if got := r.Drivers(); !slices.Equal(got, []string{"alpha", "zeta"}) {
		t.Fatalf("Drivers() = %v", got)
	}
	mustPanic(t, "duplicate", func() { r.Register("alpha", named("again")) })
	mustPanic(t, "nil", func() { r.Register("nil", nil) })
	mustPanic(t, "empty name", func() { r.Register("", named("x")) })
	mustPanic(t, "name with colon", func() { r.Register("a:b", named("x")) })

	d, u, err := r.Lookup("alpha://host/path?x=1")
	if err != nil || d.Name() != "a" || u.Host != "host" || u.Query().Get("x") != "1" {
		t.Fatalf("Lookup: %v %v %v", d, u, err)
	}
	_, _, err = r.Lookup("kafka://broker:9092/payments")
	if !errors.Is(err, errUnknown) || !strings.Contains(err.Error(), `_ "github.com/payrail/payrail/bus/kafka"`) || !strings.Contains(err.Error(), "alpha, zeta") {
		t.Fatalf("known-but-unregistered scheme: %v", err)
	}
	_, _, err = r.Lookup("other://x")
	// A scheme payrail ships no driver for: no guessed import path (the
	// package would not exist), the shipped drivers instead.
	if !errors.Is(err, errUnknown) || strings.Contains(err.Error(), "bus/other") || strings.Contains(err.Error(), "github.com/") ||
		!strings.Contains(err.Error(), "[kafka]") {
		t.Fatalf("unknown scheme: %v", err)
	}
	_, _, err = r.Lookup("no-scheme")
	if !errors.Is(err, errInvalid) || !strings.Contains(err.Error(), "no scheme") {
		t.Fatalf("missing scheme: %v", err)
	}
	_, _, err = r.Lookup("alpha://user:secret@host/%zz")
	if !errors.Is(err, errInvalid) || strings.Contains(err.Error(), "secret") {
		t.Fatalf("bad URL error must not leak the password: %v", err)
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"stripe://?api_key=sk_live_abc&name=eu":           "stripe://?api_key=xxxxx&name=eu",
		"redis://user:pw@host:6379/0":                     "redis://user:xxxxx@host:6379/0",
		"kafka://b1:9092/payments?group=g":                "kafka://b1:9092/payments?group=g",
		"servicebus://q?SharedAccessKey=abc":              "servicebus://q?SharedAccessKey=xxxxx",
		"kafka://b/t?sasl=scram-sha-512&sasl_password=pw": "kafka://b/t?sasl=scram-sha-512&sasl_password=xxxxx",
		"x://h/?access_token=t&group=g":                   "x://h/?access_token=xxxxx&group=g",
	} {
		u, err := url.Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := Redact(u); got != want {
			t.Errorf("Redact(%s) = %s, want %s", in, got, want)
		}
	}
}
