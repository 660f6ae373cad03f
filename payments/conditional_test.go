package payments_test

import (
	"net/http"
	"strings"
	"testing"
)

// Payment responses carry their version as ETag; capture, void and refund
// honour If-Match (a stale version is 412 precondition_failed and nothing
// is executed); a refund is created with 201 and a Location that GETs it.
func TestConditionalUpdatesAndRefundLocation(t *testing.T) {
	e := newEnv(t, envOption{})
	created := e.create("cond-1", strings.Replace(payBody("pm_card_visa"), `"automatic"`, `"manual"`, 1))
	wantStatus(t, created, http.StatusCreated)
	loc := created.header.Get("Location")
	tag := created.header.Get("ETag")
	if tag != `"1"` && tag != `"2"` {
		t.Fatalf("create ETag %q; want the payment's version", tag)
	}
	got := e.do("GET", loc, "", auth, bearer("sk_a"))
	wantStatus(t, got, http.StatusOK)
	if got.header.Get("ETag") != tag {
		t.Fatalf("GET ETag %q, create's %q", got.header.Get("ETag"), tag)
	}

	// A stale version: 412, and the payment is untouched.
	stale := e.do("POST", loc+"/capture", "", auth, bearer("sk_a"), "If-Match", `"999"`)
	wantProblem(t, stale, http.StatusPreconditionFailed, "precondition_failed")
	if again := e.do("GET", loc, "", auth, bearer("sk_a")); again.json(t)["status"] != "authorized" || again.header.Get("ETag") != tag {
		t.Fatalf("after a refused capture: %s (ETag %s)", again.body, again.header.Get("ETag"))
	}
	garbage := e.do("POST", loc+"/void", "", auth, bearer("sk_a"), "If-Match", `"not-a-version"`)
	wantProblem(t, garbage, http.StatusPreconditionFailed, "precondition_failed")

	// The current version: executed, with the new version as ETag.
	captured := e.do("POST", loc+"/capture", "", auth, bearer("sk_a"), "If-Match", tag)
	wantStatus(t, captured, http.StatusOK)
	newTag := captured.header.Get("ETag")
	if newTag == "" || newTag == tag {
		t.Fatalf("capture ETag %q; want a new version after %s", newTag, tag)
	}

	refund := e.do("POST", loc+"/refunds", `{"amount":500}`, auth, bearer("sk_a"), "If-Match", newTag, "Idempotency-Key", "cond-r1")
	wantStatus(t, refund, http.StatusCreated)
	rloc := refund.header.Get("Location")
	rid, _ := refund.json(t)["id"].(string)
	if rid == "" || rloc != loc+"/refunds/"+rid {
		t.Fatalf("refund Location %q for refund %q; want %s/refunds/<id>", rloc, rid, loc)
	}
	gotRefund := e.do("GET", rloc, "", auth, bearer("sk_a"))
	wantStatus(t, gotRefund, http.StatusOK)
	if m := gotRefund.json(t); m["id"] != rid || m["amount"] != float64(500) {
		t.Fatalf("GET %s = %s", rloc, gotRefund.body)
	}
	wantProblem(t, e.do("GET", loc+"/refunds/re_nope", "", auth, bearer("sk_a")), http.StatusNotFound, "not_found")
	// Another merchant sees neither the payment nor its refund.
	wantProblem(t, e.do("GET", rloc, "", auth, bearer("sk_b")), http.StatusNotFound, "not_found")

	// A retry of the refund with its key replays it, whatever If-Match says
	// now: the condition held when it executed.
	replay := e.do("POST", loc+"/refunds", `{"amount":500}`, auth, bearer("sk_a"), "If-Match", newTag, "Idempotency-Key", "cond-r1")
	wantStatus(t, replay, http.StatusCreated)
	if replay.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("refund retry not replayed: %v", replay.header)
	}
}
