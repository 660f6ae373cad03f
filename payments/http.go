package payments

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/payrail/payrail/idempotency"
)

// MaxBodyBytes is the largest request body the HTTP API reads.
const MaxBodyBytes = 1 << 20

// Handler is the payments HTTP API. Create it with NewHandler; it is an
// http.Handler that composes with any middleware.
//
//	POST /payments                  create (Idempotency-Key required; Prefer: respond-async)
//	GET  /payments/{id}             read
//	POST /payments/{id}/capture     capture, optional {"amount": n}
//	POST /payments/{id}/void        void
//	POST /payments/{id}/refunds     refund, optional {"amount": n}; 201 with Location
//	GET  /payments/{id}/refunds/{refund_id}   read a refund
//
// Payment responses carry ETag: "<version>"; capture, void and refund take
// If-Match: "<version>" and answer 412 precondition_failed when the payment
// changed since (nothing is executed).
//
//	GET  /healthz                   liveness
//	GET  /readyz                    readiness (checks every driver)
//	GET  /admin/mode, PUT /admin/mode   view / switch the default mode (admin key)
//
// Errors are RFC 9457 application/problem+json documents with a stable code.
//
// The handler traces itself: a server span per request named by its route
// ("POST /payments/{id}/capture", HTTP semantic conventions), continuing
// the caller's W3C trace context, and the http.server.request.duration
// histogram (MetricHTTPDuration), with the processor's providers (see
// WithTelemetry). Health probes are not traced or measured.
type Handler struct {
	p        *Processor
	auth     Authenticator
	log      *slog.Logger
	basePath string
	mux      *http.ServeMux
	draining atomic.Bool
	tel      *httpTelemetry // nil: WithoutHTTPTelemetry
	noTel    bool
}

// HandlerOption configures a Handler.
type HandlerOption func(*Handler)

// WithHandlerLogger sets the handler's logger (default: the processor's).
func WithHandlerLogger(l *slog.Logger) HandlerOption { return func(h *Handler) { h.log = l } }

// WithBasePath sets the path prefix the handler is mounted under (e.g.
// "/v1" behind http.StripPrefix), used in Location headers.
func WithBasePath(prefix string) HandlerOption {
	return func(h *Handler) { h.basePath = strings.TrimSuffix(prefix, "/") }
}

// WithoutHTTPTelemetry turns the handler's own server spans and
// http.server.request.duration off, for a service whose middleware (such
// as otelhttp around its whole mux) already records them; the processor's
// spans still join the trace in the request's context.
func WithoutHTTPTelemetry() HandlerOption { return func(h *Handler) { h.noTel = true } }

// ErrNoAuthenticator is returned by NewHandler without an Authenticator:
// use APIKeys, or DevAuthenticator for development.
var ErrNoAuthenticator = errors.New("payments: NewHandler needs an Authenticator (APIKeys, or DevAuthenticator in development)")

// NewHandler returns the HTTP API for p, authenticating requests with auth
// (see APIKeys and DevAuthenticator). It returns ErrNotInitialized for a
// Processor not created with New and ErrNoAuthenticator for a nil auth.
func NewHandler(p *Processor, auth Authenticator, opts ...HandlerOption) (*Handler, error) {
	if err := p.usable(); err != nil {
		return nil, err
	}
	if auth == nil {
		return nil, ErrNoAuthenticator
	}
	h := &Handler{p: p, auth: auth, log: p.log, mux: http.NewServeMux()}
	for _, o := range opts {
		if o != nil {
			o(h)
		}
	}
	if h.log == nil {
		h.log = p.log
	}
	if !h.noTel {
		t, err := newHTTPTelemetry(p.providers)
		if err != nil {
			return nil, fmt.Errorf("payments: HTTP telemetry: %w", err)
		}
		h.tel = t
	}
	h.route("/payments", h.authed(h.createPayment), http.MethodPost)
	h.route("/payments/{id}", h.authed(h.getPayment), http.MethodGet)
	h.route("/payments/{id}/capture", h.authed(h.capture), http.MethodPost)
	h.route("/payments/{id}/void", h.authed(h.void), http.MethodPost)
	h.route("/payments/{id}/refunds", h.authed(h.refund), http.MethodPost)
	h.route("/payments/{id}/refunds/{refund_id}", h.authed(h.getRefund), http.MethodGet)
	h.route("/admin/mode", h.admin(h.mode), http.MethodGet, http.MethodPut)
	h.route("/healthz", h.healthz, http.MethodGet)
	h.route("/readyz", h.readyz, http.MethodGet)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.problem(w, r, &Error{Code: CodeNotFound, Detail: "no such endpoint: " + r.URL.Path})
	})
	return h, nil
}

// SetDraining makes /readyz fail (503) so load balancers stop sending
// traffic while the server shuts down; other endpoints keep serving.
func (h *Handler) SetDraining(v bool) { h.draining.Store(v) }

type principalKey struct{}

// route registers a path for the allowed methods, answering others with a
// 405 problem and an Allow header.
func (h *Handler) route(pattern string, fn http.HandlerFunc, methods ...string) {
	allow := strings.Join(methods, ", ")
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		for _, m := range methods {
			if r.Method == m || (m == http.MethodGet && r.Method == http.MethodHead) {
				fn(w, r)
				return
			}
		}
		w.Header().Set("Allow", allow)
		h.problem(w, r, &Error{Code: CodeMethodNotAllowed, Detail: r.Method + " is not allowed here; use " + allow})
	})
}

func (h *Handler) principal(w http.ResponseWriter, r *http.Request) (Principal, bool) {
	pr, err := h.auth.Authenticate(r)
	if err != nil || pr.Merchant == "" && !pr.Admin {
		w.Header().Set("WWW-Authenticate", `Bearer realm="payrail"`)
		h.problem(w, r, &Error{Code: CodeUnauthorized, Detail: "send a valid API key as Authorization: Bearer <key>"})
		return Principal{}, false
	}
	return pr, true
}

func (h *Handler) authed(fn func(http.ResponseWriter, *http.Request, Principal)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		pr, ok := h.principal(w, r)
		if !ok {
			return
		}
		if pr.Merchant == "" {
			h.problem(w, r, &Error{Code: CodeForbidden, Detail: "this key is not bound to a merchant"})
			return
		}
		fn(w, r, pr)
	}
}

func (h *Handler) admin(fn func(http.ResponseWriter, *http.Request, Principal)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		pr, ok := h.principal(w, r)
		if !ok {
			return
		}
		if !pr.Admin {
			h.problem(w, r, &Error{Code: CodeForbidden, Detail: "an admin key is required"})
			return
		}
		fn(w, r, pr)
	}
}

// createBody is the POST /payments request. Amount is decoded as a JSON
// number so that fractions and floats are refused instead of truncated.
type createBody struct {
	Amount        jsontext.Value    `json:"amount"`
	Currency      string            `json:"currency"`
	PaymentMethod string            `json:"payment_method"`
	Origin        string            `json:"origin"`
	CaptureMethod CaptureMethod     `json:"capture_method"`
	Metadata      map[string]string `json:"metadata"`
}

type amountBody struct {
	Amount jsontext.Value `json:"amount"`
}

// parseAmount parses an optional JSON number as int64 minor units,
// refusing strings, fractions and exponents.
func parseAmount(raw jsontext.Value, required bool) (int64, *Error) {
	if len(raw) == 0 || string(raw) == "null" {
		if required {
			return 0, validationError(FieldError{Field: "amount", Code: CodeRequired, Message: "amount is required, in minor units"})
		}
		return 0, nil
	}
	v, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return 0, validationError(FieldError{Field: "amount", Code: CodeInvalid, Message: "amount must be an integer number of minor units (e.g. 1999 for 19.99)"})
	}
	if v <= 0 {
		return 0, validationError(FieldError{Field: "amount", Code: CodeInvalid, Message: "amount must be a positive integer in minor units"})
	}
	return v, nil
}

func (h *Handler) createPayment(w http.ResponseWriter, r *http.Request, pr Principal) {
	key := r.Header.Get("Idempotency-Key")
	if err := keyCheck(key, true); err != nil {
		h.problem(w, r, err)
		return
	}
	var b createBody
	if e := decodeBody(w, r, &b, true); e != nil {
		h.problem(w, r, e)
		return
	}
	amount, e := parseAmount(b.Amount, true)
	if e != nil {
		h.problem(w, r, e)
		return
	}
	async := preferAsync(r)
	mode := ModeDefault
	if async {
		mode = ModeAsync
	}
	o := h.p.authorize(r.Context(), &AuthorizeRequest{
		Merchant: pr.Merchant, IdempotencyKey: key, Amount: amount, Currency: b.Currency,
		PaymentMethod: b.PaymentMethod, Origin: b.Origin, CaptureMethod: b.CaptureMethod,
		Metadata: b.Metadata, Mode: mode,
	})
	if o.status == http.StatusAccepted && async {
		w.Header().Set("Preference-Applied", "respond-async")
	}
	h.write(w, r, o, true)
}

func keyCheck(key string, required bool) *Error {
	if key == "" && !required {
		return nil
	}
	if err := idempotency.ValidateKey(key); err != nil {
		return keyError(err)
	}
	return nil
}

// preferAsync reports whether the request has Prefer: respond-async (RFC 7240).
func preferAsync(r *http.Request) bool {
	for _, v := range r.Header.Values("Prefer") {
		for pref := range strings.SplitSeq(v, ",") {
			name, _, _ := strings.Cut(strings.TrimSpace(pref), ";")
			if strings.EqualFold(strings.TrimSpace(name), "respond-async") {
				return true
			}
		}
	}
	return false
}

func (h *Handler) getPayment(w http.ResponseWriter, r *http.Request, pr Principal) {
	pay, err := h.p.Get(r.Context(), GetRequest{Merchant: pr.Merchant, PaymentID: r.PathValue("id")})
	if err != nil {
		h.problem(w, r, asError(err))
		return
	}
	h.write(w, r, succeeded(http.StatusOK, pay, nil), false)
}

func (h *Handler) getRefund(w http.ResponseWriter, r *http.Request, pr Principal) {
	pay, err := h.p.Get(r.Context(), GetRequest{Merchant: pr.Merchant, PaymentID: r.PathValue("id")})
	if err != nil {
		h.problem(w, r, asError(err))
		return
	}
	id := r.PathValue("refund_id")
	for i := range pay.Refunds {
		if pay.Refunds[i].ID == id {
			h.write(w, r, succeeded(http.StatusOK, pay, &pay.Refunds[i]), false)
			return
		}
	}
	h.problem(w, r, &Error{Code: CodeNotFound, PaymentID: pay.ID, Detail: "no such refund of this payment"})
}

// ifMatch reads If-Match: "<version>" (or W/"<version>"). A missing header
// or * is 0 (no condition); anything else that is not a version of ours
// can never match, so it is -1 (precondition failed).
func ifMatch(r *http.Request) int64 {
	v := strings.TrimSpace(r.Header.Get("If-Match"))
	if v == "" || v == "*" {
		return 0
	}
	n, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(v, "W/"), `"`), 10, 64)
	if err != nil || n <= 0 {
		return -1
	}
	return n
}

func (h *Handler) followUpBody(w http.ResponseWriter, r *http.Request) (int64, string, bool) {
	key := r.Header.Get("Idempotency-Key")
	if err := keyCheck(key, false); err != nil {
		h.problem(w, r, err)
		return 0, "", false
	}
	var b amountBody
	if e := decodeBody(w, r, &b, false); e != nil {
		h.problem(w, r, e)
		return 0, "", false
	}
	amount, e := parseAmount(b.Amount, false)
	if e != nil {
		h.problem(w, r, e)
		return 0, "", false
	}
	return amount, key, true
}

func (h *Handler) capture(w http.ResponseWriter, r *http.Request, pr Principal) {
	amount, key, ok := h.followUpBody(w, r)
	if !ok {
		return
	}
	h.write(w, r, h.p.capture(r.Context(), &CaptureRequest{Merchant: pr.Merchant, PaymentID: r.PathValue("id"), Amount: amount, IdempotencyKey: key, IfVersion: ifMatch(r)}), false)
}

func (h *Handler) void(w http.ResponseWriter, r *http.Request, pr Principal) {
	key := r.Header.Get("Idempotency-Key")
	if err := keyCheck(key, false); err != nil {
		h.problem(w, r, err)
		return
	}
	var b struct{}
	if e := decodeBody(w, r, &b, false); e != nil {
		h.problem(w, r, e)
		return
	}
	h.write(w, r, h.p.void(r.Context(), &VoidRequest{Merchant: pr.Merchant, PaymentID: r.PathValue("id"), IdempotencyKey: key, IfVersion: ifMatch(r)}), false)
}

func (h *Handler) refund(w http.ResponseWriter, r *http.Request, pr Principal) {
	amount, key, ok := h.followUpBody(w, r)
	if !ok {
		return
	}
	h.write(w, r, h.p.refund(r.Context(), &RefundRequest{Merchant: pr.Merchant, PaymentID: r.PathValue("id"), Amount: amount, IdempotencyKey: key, IfVersion: ifMatch(r)}), false)
}

type modeBody struct {
	Mode Mode `json:"mode"`
}

func (h *Handler) mode(w http.ResponseWriter, r *http.Request, _ Principal) {
	if r.Method == http.MethodPut {
		var b modeBody
		if e := decodeBody(w, r, &b, true); e != nil {
			h.problem(w, r, e)
			return
		}
		if err := h.p.SetMode(b.Mode); err != nil {
			h.problem(w, r, validationError(FieldError{Field: "mode", Code: CodeInvalid, Message: "mode must be sync or async"}))
			return
		}
	}
	writeJSON(w, http.StatusOK, modeBody{Mode: h.p.Mode()})
}

func (h *Handler) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	if h.draining.Load() {
		h.problem(w, r, &Error{Code: CodeUnavailable, Detail: "shutting down"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if h.p.closed.Load() {
		h.problem(w, r, &Error{Code: CodeUnavailable, Detail: "shutting down"})
		return
	}
	// Names and states only: an error's text can hold host:port or more,
	// and probes are unauthenticated. The errors go to the log.
	var failing []string
	for _, c := range h.p.Checks(ctx) {
		if c.Err != nil {
			failing = append(failing, c.Name)
			h.log.WarnContext(ctx, "payments: readiness check failed", "dependency", c.Name, "error", c.Err)
		}
	}
	if len(failing) > 0 {
		h.problem(w, r, &Error{Code: CodeUnavailable, Detail: "not ready: unavailable: " + strings.Join(failing, ", ")})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// decodeBody reads a JSON object of at most MaxBodyBytes into dst,
// strictly: the body must be one JSON object (not null, an array or a
// scalar), with no unknown, duplicate or case-mismatched member names, no
// invalid UTF-8 and nothing after it. An absent (empty) body is allowed
// unless required, and then means "no parameters". Decoding uses the
// encoding/json/v2 semantics (github.com/go-json-experiment/json, its
// maintained upstream), whose defaults are exactly these rules, rather
// than hand-written token walking.
func decodeBody(w http.ResponseWriter, r *http.Request, dst any, required bool) *Error {
	if ct := r.Header.Get("Content-Type"); ct != "" && ct != contentJSON { // the usual value, without parsing it
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return &Error{Code: CodeUnsupportedMedia, Detail: "send the body as application/json"}
		}
	}
	bp := bodyBuffers.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= maxPooledBody {
			bodyBuffers.Put(bp)
		}
	}()
	body, err := readAll((*bp)[:0], http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	*bp = body
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return &Error{Code: CodeMalformedRequest, Detail: "request body exceeds 1 MiB"}
		}
		return &Error{Code: CodeMalformedRequest, Detail: "the request body could not be read"}
	}
	// The decoded values are copies (strings are copied out of body), so
	// the buffer can be reused once decodeJSON returns.
	return decodeJSON(body, dst, required)
}

// bodyBuffers recycles request body buffers; bodies larger than
// maxPooledBody are read into a buffer that is dropped afterwards.
var bodyBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

const maxPooledBody = 64 << 10

// readAll is io.ReadAll appending to buf.
func readAll(buf []byte, rd io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			if errors.Is(err, io.EOF) {
				return buf, nil
			}
			return buf, err
		}
	}
}

// decodeJSON is decodeBody's decoding step (see there).
func decodeJSON(body []byte, dst any, required bool) *Error {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	switch {
	case len(trimmed) == 0 && required:
		return &Error{Code: CodeMalformedRequest, Detail: "a JSON request body is required"}
	case len(trimmed) == 0:
		return nil
	case trimmed[0] != '{':
		return &Error{Code: CodeMalformedRequest, Detail: "the request body must be a JSON object"}
	}
	err := jsonv2.Unmarshal(body, dst, jsonv2.RejectUnknownMembers(true))
	if err == nil {
		return nil
	}
	if se, ok := errors.AsType[*jsonv2.SemanticError](err); ok {
		field := safeMember(se.JSONPointer)
		switch {
		case errors.Is(se.Err, jsonv2.ErrUnknownName):
			if field == "" {
				return &Error{Code: CodeMalformedRequest, Detail: "unknown field (names are case-sensitive)"}
			}
			return &Error{Code: CodeMalformedRequest, Detail: "unknown field " + strconv.Quote(field) + " (names are case-sensitive)"}
		case field != "" && se.JSONKind != 0:
			return validationError(FieldError{Field: field, Code: CodeInvalid, Message: field + " has the wrong JSON type"})
		}
		return &Error{Code: CodeMalformedRequest, Detail: "the JSON body does not match the request's fields"}
	}
	if se, ok := errors.AsType[*jsontext.SyntacticError](err); ok {
		switch {
		case strings.Contains(se.Err.Error(), "duplicate"):
			return &Error{Code: CodeMalformedRequest, Detail: "duplicate member name in the JSON body"}
		case strings.Contains(se.Err.Error(), "UTF-8"):
			return &Error{Code: CodeMalformedRequest, Detail: "the JSON body is not valid UTF-8"}
		}
		return &Error{Code: CodeMalformedRequest, Detail: fmt.Sprintf("malformed JSON at byte %d", se.ByteOffset)}
	}
	return &Error{Code: CodeMalformedRequest, Detail: "malformed JSON"}
}

// safeMember returns the field a JSON pointer names ("/amount",
// "/metadata/order" → "metadata.order") if it is safe to echo in an error —
// short, of letters, digits, '.', '_' or '-', and no card number — and ""
// otherwise: client-chosen names are never repeated blindly.
func safeMember(ptr jsontext.Pointer) string {
	var parts []string
	for tok := range ptr.Tokens() {
		if !validSlug(tok, maxMetadataKeyLen) || looksLikePAN(tok) {
			return ""
		}
		parts = append(parts, tok)
	}
	return strings.Join(parts, ".")
}

// write sends an outcome: stored headers, Location for created payments,
// Idempotent-Replayed for replays, and the body bytes exactly as stored.
func (h *Handler) write(w http.ResponseWriter, r *http.Request, o *outcome, created bool) {
	hd := w.Header()
	// Every header value set here shares one backing array, each value a
	// slice of capacity 1 (Add appends elsewhere, Set replaces), and the
	// computed values (Location, ETag, Content-Length) share one string:
	// two allocations rather than one or two per header.
	vals := make([]string, 0, len(o.header)+5)
	set := func(k, v string) {
		vals = append(vals, v)
		hd[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	for k, v := range o.header {
		set(textproto.CanonicalMIMEHeaderKey(k), v)
	}
	var buf [192]byte
	b := buf[:0]
	b = strconv.AppendInt(b, int64(len(o.body)), 10)
	lengthEnd := len(b)
	locStart := len(b)
	switch {
	case o.refund != nil && o.status == http.StatusCreated:
		b = append(append(append(append(append(b, h.basePath...), "/payments/"...), o.refund.PaymentID...), "/refunds/"...), o.refund.ID...)
	case created && (o.status == http.StatusCreated || o.status == http.StatusAccepted) && o.payment != nil:
		b = append(append(append(b, h.basePath...), "/payments/"...), o.payment.ID...)
	}
	locEnd := len(b)
	etag := o.payment != nil && o.payment.Version > 0 && o.status < 300 && !o.replayed
	if etag {
		b = append(strconv.AppendInt(append(b, '"'), o.payment.Version, 10), '"')
	}
	computed := string(b) // one allocation (on the heap only if buf was outgrown)
	if locEnd > locStart {
		set("Location", computed[locStart:locEnd])
	}
	if etag {
		set("Etag", computed[locEnd:])
	}
	if o.replayed {
		set("Idempotent-Replayed", "true")
	}
	if o.err != nil && o.status >= 400 {
		h.p.tel.problem(r.Context(), r.Method, r.Pattern, o.status, o.err.Code)
	}
	if o.status >= 500 {
		h.log.WarnContext(r.Context(), "payments: request failed", "method", r.Method, "route", r.Pattern, "status", o.status, "code", errCode(o.err), "error", o.err)
	}
	set("Content-Length", computed[:lengthEnd])
	w.WriteHeader(o.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(o.body)
	}
}

func errCode(e *Error) string {
	if e == nil {
		return ""
	}
	return string(e.Code)
}

func (h *Handler) problem(w http.ResponseWriter, r *http.Request, e *Error) {
	h.write(w, r, failed(e, nil), false)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b := marshal(v)
	w.Header().Set("Content-Type", contentJSON)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
