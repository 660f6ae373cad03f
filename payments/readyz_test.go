package payments_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/payrail/payrail/payments"
)

// downStore is the memory store whose Ping fails with an error naming an
// address, as a real driver's would.
type downStore struct{ *payments.MemoryStore }

func (downStore) Ping(context.Context) error {
	return errors.New("dial tcp 10.0.3.7:5432: connect: connection refused (user=svc_acct)")
}

// /readyz is unauthenticated: it names the dependencies that failed and
// never their errors' text (addresses, users).
func TestReadyzNamesDependenciesOnly(t *testing.T) {
	e := newEnv(t, envOption{procOpts: []payments.Option{payments.WithStore(downStore{payments.NewMemoryStore()})}})
	r := e.do("GET", "/readyz", "")
	wantProblem(t, r, http.StatusServiceUnavailable, "service_unavailable")
	body := string(r.body)
	if !strings.Contains(body, "payment_store") {
		t.Errorf("readyz %s does not name the payment store", body)
	}
	for _, leak := range []string{"10.0.3.7", "5432", "svc_acct", "dial tcp"} {
		if strings.Contains(body, leak) {
			t.Errorf("readyz leaks %q: %s", leak, body)
		}
	}
	var names []string
	for _, c := range e.p.Checks(context.Background()) {
		names = append(names, c.Name)
	}
	if got := strings.Join(names, ","); got != "idempotency_store,payment_store,bus,gateway:mock" {
		t.Errorf("Checks = %s", got)
	}
}
