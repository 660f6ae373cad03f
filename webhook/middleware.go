package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
)

// Problem codes of [Verifier.Middleware]'s rejections, sent as the "code"
// member of an RFC 9457 application/problem+json body. They are stable.
const (
	CodeMethodNotAllowed     = "method_not_allowed"                 // 405: not a POST
	CodeHeaderMissing        = "webhook_header_missing"             // 400
	CodeHeaderMalformed      = "webhook_header_malformed"           // 400
	CodeBodyTooLarge         = "webhook_body_too_large"             // 413
	CodeSignatureInvalid     = "webhook_signature_invalid"          // 401
	CodeTimestampOutOfWindow = "webhook_timestamp_out_of_tolerance" // 401
	CodeReplayed             = "webhook_replayed"                   // 409
	CodeEventInvalid         = "webhook_event_invalid"              // 400
	CodeStoreUnavailable     = "webhook_store_unavailable"          // 503
)

// problemTypeBase is where the codes are documented.
const problemTypeBase = "https://github.com/payrail/payrail/blob/main/docs/webhooks.md#"

type eventKey struct{}

// EventFromContext returns the event [Verifier.Middleware] verified and
// decoded for this request.
func EventFromContext(ctx context.Context) (*Event, bool) {
	e, ok := ctx.Value(eventKey{}).(*Event)
	return e, ok
}

// Middleware returns a handler that accepts only verified deliveries and
// passes them to next, with the decoded [Event] in the request's context
// ([EventFromContext]) and the raw body readable again from r.Body.
//
// It reads at most the verifier's body cap, and rejects with an RFC 9457
// problem document: 405 for a method other than POST, 400 for missing or
// malformed headers or a body that is not an event (or whose id is not
// webhook-id), 413 for an over-large body, 401 for a bad signature or a
// timestamp out of tolerance, 409 for a replayed id, 503 when the
// SeenStore fails. The sender retries every non-2xx answer, so a 409 sent
// to a retry of a delivery whose first answer was lost costs a later retry,
// never the event.
//
// If next answers with a status outside 2xx (or panics), the id is
// forgotten, so the sender's retry is processed.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeProblem(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed, "Method not allowed", "webhooks are delivered with POST")
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, v.maxBody))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeProblem(w, http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "Body too large",
					"the body exceeds "+strconv.FormatInt(v.maxBody, 10)+" bytes")
				return
			}
			writeProblem(w, http.StatusBadRequest, CodeHeaderMalformed, "Unreadable body", "the request body could not be read")
			return
		}
		if err := v.VerifyContext(r.Context(), r.Header, body); err != nil {
			rejectVerify(w, err)
			return
		}
		id := r.Header.Get(HeaderID)
		ev, err := ParseEvent(body)
		if err == nil && ev.ID != id {
			err = errors.New("the event id is not webhook-id")
		}
		if err != nil {
			_ = v.Forget(r.Context(), id)
			writeProblem(w, http.StatusBadRequest, CodeEventInvalid, "Invalid event", "the body is not a payrail event: "+err.Error())
			return
		}
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				_ = v.Forget(context.WithoutCancel(r.Context()), id)
				panic(p)
			}
			if rec.status < 200 || rec.status > 299 {
				_ = v.Forget(context.WithoutCancel(r.Context()), id)
			}
		}()
		r = r.WithContext(context.WithValue(r.Context(), eventKey{}, ev))
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK // nothing written: net/http sends 200
		}
	})
}

// rejectVerify answers a failed verification.
func rejectVerify(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrMissingHeader):
		writeProblem(w, http.StatusBadRequest, CodeHeaderMissing, "Missing webhook header", err.Error())
	case errors.Is(err, ErrMalformedHeader):
		writeProblem(w, http.StatusBadRequest, CodeHeaderMalformed, "Malformed webhook header", err.Error())
	case errors.Is(err, ErrBodyTooLarge):
		writeProblem(w, http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "Body too large", err.Error())
	case errors.Is(err, ErrTimestampOutOfTolerance):
		writeProblem(w, http.StatusUnauthorized, CodeTimestampOutOfWindow, "Timestamp out of tolerance", err.Error())
	case errors.Is(err, ErrInvalidSignature):
		writeProblem(w, http.StatusUnauthorized, CodeSignatureInvalid, "Invalid signature", "no signature matches")
	case errors.Is(err, ErrReplayed):
		writeProblem(w, http.StatusConflict, CodeReplayed, "Replayed delivery", "this webhook-id was already accepted")
	default:
		writeProblem(w, http.StatusServiceUnavailable, CodeStoreUnavailable, "Seen store unavailable", "the replay check could not be made")
	}
}

// writeProblem writes an RFC 9457 problem document.
func writeProblem(w http.ResponseWriter, status int, code, title, detail string) {
	b, _ := json.Marshal(struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
		Code   string `json:"code"`
	}{problemTypeBase + code, title, status, detail, code})
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// statusRecorder notes the status the next handler answers with.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
