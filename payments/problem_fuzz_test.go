package payments

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/payrail/payrail/idempotency"
)

// FuzzProblemBody: whatever strings an Error carries (invalid UTF-8, NUL,
// control characters, HTML, any code), failed renders a valid RFC 9457
// problem document — type, title, status, code — whose status is the
// response's, with Retry-After when asked, and a replay of the stored
// response decodes to the same error (strings as JSON carries them:
// invalid bytes become U+FFFD).
func FuzzProblemBody(f *testing.F) {
	f.Fuzz(func(t *testing.T, code, detail, paymentID, declineCode, field, fieldCode, message string, retryAfter int64) {
		e := &Error{Code: Code(code), Detail: detail, PaymentID: paymentID, DeclineCode: declineCode, RetryAfter: time.Duration(retryAfter)}
		if field != "" || fieldCode != "" || message != "" {
			e.Fields = []FieldError{{Field: field, Code: Code(fieldCode), Message: message}, {Field: message, Code: CodeInvalid, Message: field}}
		}
		o := failed(e, nil)
		if o.status != e.HTTPStatus() || o.status < 400 || o.header["Content-Type"] != contentProblem {
			t.Fatalf("status %d, header %v for code %q", o.status, o.header, code)
		}
		if !json.Valid(o.body) || !bytes.HasSuffix(o.body, []byte("}\n")) || bytes.Count(o.body, []byte("\n")) != 1 {
			t.Fatalf("not one valid JSON document: %q", o.body)
		}
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(o.body, &doc); err != nil {
			t.Fatal(err)
		}
		for _, m := range []string{"type", "title", "status", "code"} {
			if _, ok := doc[m]; !ok {
				t.Fatalf("member %q missing from %s", m, o.body)
			}
		}
		var p problem
		if err := json.Unmarshal(o.body, &p); err != nil {
			t.Fatal(err)
		}
		c := Code(asJSON(code))
		if p.Code != c || p.Status != o.status || p.Type != asJSON(ProblemTypeBase+code) || p.Title != asJSON(Code(code).Title()) {
			t.Fatalf("problem %+v for code %q", p, code)
		}
		if p.Detail != asJSON(detail) || p.PaymentID != asJSON(paymentID) || p.DeclineCode != asJSON(declineCode) || len(p.Errors) != len(e.Fields) {
			t.Fatalf("problem %+v does not carry the error's values", p)
		}
		for i, fe := range e.Fields {
			if p.Errors[i] != (FieldError{Field: asJSON(fe.Field), Code: Code(asJSON(string(fe.Code))), Message: asJSON(fe.Message)}) {
				t.Fatalf("field error %d: %+v, want %+v", i, p.Errors[i], fe)
			}
		}
		ra, hasRA := o.header["Retry-After"]
		if hasRA != (e.RetryAfter > 0) {
			t.Fatalf("Retry-After %q for %v", ra, e.RetryAfter)
		}
		if hasRA {
			if n, err := strconv.Atoi(ra); err != nil || n != int(math.Ceil(e.RetryAfter.Seconds())) || n < 1 {
				t.Fatalf("Retry-After %q for %v", ra, e.RetryAfter)
			}
		}
		r := replayed(&idempotency.Response{StatusCode: o.status, Header: o.header, Body: o.body})
		if r.err == nil || r.err.Code != c || r.err.Detail != p.Detail || r.err.PaymentID != p.PaymentID || r.status != o.status {
			t.Fatalf("replay gives %+v, want code %q", r.err, c)
		}
	})
}

// asJSON is s as it comes back from a JSON string: each invalid UTF-8
// byte replaced by U+FFFD.
func asJSON(s string) string { return string([]rune(s)) }
