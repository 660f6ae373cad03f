package opsctl_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestProbe(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			w.WriteHeader(http.StatusOK)
		case "/slow":
			<-r.Context().Done()
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	mem := map[string]string{}
	for _, c := range []struct {
		name string
		args []string
		code int
		sub  string
	}{
		{"2xx", []string{"probe", srv.URL + "/healthz"}, 0, "200 OK"},
		{"503", []string{"probe", srv.URL + "/readyz"}, 1, "503 Service Unavailable"},
		{"timeout", []string{"probe", "--timeout", "50ms", srv.URL + "/slow"}, 1, "deadline exceeded"},
		{"refused", []string{"probe", "http://127.0.0.1:1/healthz"}, 1, "refused"},
		{"password not echoed", []string{"probe", "http://u:hunter2@127.0.0.1:1/healthz"}, 1, "probe"},
		{"no url", []string{"probe"}, 2, "one URL"},
		{"not http", []string{"probe", "ftp://x/"}, 2, "http://"},
		{"bad timeout", []string{"probe", "--timeout", "0s", srv.URL}, 2, "positive"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := run(t, mem, c.args...)
			want(t, c.name, code, c.code, out+errOut, c.sub)
			if strings.Contains(out+errOut, "hunter2") {
				t.Errorf("the probe printed the URL's password: %s", out+errOut)
			}
		})
	}
}

func TestConfigCheck(t *testing.T) {
	code, out, errOut := run(t, map[string]string{"MESSAGE_BUS_ADAPTER": "kafka", "KAFKA_BROKERS": "k1:9092,k2:9092"}, "config", "check")
	want(t, "kafka", code, 0, out+errOut, "configuration ok")
	if !strings.Contains(out, "bus subscription kafka://k1:9092,k2:9092/payments?group=payments-worker") {
		t.Errorf("config check did not print the resolved subscription URL:\n%s", out)
	}
	code, out, errOut = run(t, map[string]string{"MESSAGE_BUS_ADAPTER": "sns-sqs"}, "config", "check")
	want(t, "sns-sqs without a queue", code, 2, out+errOut, "PAYMENTS_QUEUE_URL")
	code, out, errOut = run(t, map[string]string{"IDEMPOTENCY_URL": "redis://:s3cret@redis:6379/0"}, "config", "check")
	want(t, "secret in a URL", code, 0, out+errOut, "configuration ok")
	if strings.Contains(out+errOut, "s3cret") {
		t.Errorf("config check printed a password: %s", out)
	}
	code, out, errOut = run(t, map[string]string{}, "config", "check", "extra")
	want(t, "argument", code, 2, out+errOut, "takes no arguments")
}
