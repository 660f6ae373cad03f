package routing

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/payrail/payrail/payments"
)

// CodeVersionMismatch is the problem code of a PUT whose If-Match does not
// name the current policy version (HTTP 412).
const CodeVersionMismatch = "policy_version_mismatch"

// AdminHandler serves the routing policy over HTTP, for operators:
//
//	GET  → 200, the current policy as JSON, ETag: "<version>"
//	PUT  → the body is a complete policy; 200 with the policy now in force
//	       and its ETag, or 422 validation_failed listing every problem (the
//	       current policy stays). With If-Match, the policy is replaced only
//	       if the ETag still matches (412 policy_version_mismatch otherwise).
//
// It does no authentication: mount it behind the payments API's admin key
// check, e.g. h.HandleAdmin("routes", routing.AdminHandler(r)) on a
// *payments.Handler serves it at /admin/routes. Errors are RFC 9457
// problem documents like the rest of the API.
func AdminHandler(r *Router) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.Method {
		case http.MethodGet, http.MethodHead:
			writePolicy(w, req, http.StatusOK, r.cur.Load())
		case http.MethodPut:
			putPolicy(w, req, r)
		default:
			w.Header().Set("Allow", "GET, PUT")
			writeProblem(w, http.StatusMethodNotAllowed, string(payments.CodeMethodNotAllowed), req.Method+" is not allowed here; use GET or PUT", nil)
		}
	})
}

// HealthHandler serves GET → 200 {"gateways": [...], "policy": {...}} with
// every gateway's circuit breaker state (see Router.Health) and the
// router's view of its shared policy source (Router.SourceStatus). Mount it
// like AdminHandler.
func HealthHandler(r *Router) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET")
			writeProblem(w, http.StatusMethodNotAllowed, string(payments.CodeMethodNotAllowed), req.Method+" is not allowed here; use GET", nil)
			return
		}
		writeJSON(w, req, http.StatusOK, struct {
			Gateways []GatewayHealth `json:"gateways"`
			Policy   SourceStatus    `json:"policy"`
		}{r.Health(), r.SourceStatus()})
	})
}

func etag(v uint64) string { return `"` + strconv.FormatUint(v, 10) + `"` }

func writePolicy(w http.ResponseWriter, req *http.Request, status int, c *compiled) {
	w.Header().Set("ETag", etag(c.version))
	writeJSON(w, req, status, c.policy)
}

func putPolicy(w http.ResponseWriter, req *http.Request, r *Router) {
	if ct := req.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			writeProblem(w, http.StatusUnsupportedMediaType, string(payments.CodeUnsupportedMedia), "send the policy as application/json", nil)
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, payments.MaxBodyBytes))
	if err != nil {
		writeProblem(w, http.StatusBadRequest, string(payments.CodeMalformedRequest), "the policy could not be read (at most 1 MiB)", nil)
		return
	}
	p, err := decodePolicy(body) // validated against the gateways by swap
	if err != nil {
		writeProblem(w, http.StatusBadRequest, string(payments.CodeMalformedRequest), err.Error(), nil)
		return
	}
	var ifVersion uint64
	if im := strings.TrimSpace(req.Header.Get("If-Match")); im != "" && im != "*" {
		v, perr := strconv.ParseUint(strings.Trim(strings.TrimPrefix(im, "W/"), `"`), 10, 64)
		if perr != nil || v == 0 {
			writeProblem(w, http.StatusPreconditionFailed, CodeVersionMismatch, "If-Match must be the ETag of a GET of this policy", nil)
			return
		}
		ifVersion = v
	}
	_, err = r.SetPolicyContext(req.Context(), p, ifVersion)
	var pe *PolicyError
	switch {
	case errors.As(err, &pe):
		writePolicyError(w, pe)
		return
	case errors.Is(err, ErrVersionMismatch):
		w.Header().Set("ETag", etag(r.Version()))
		writeProblem(w, http.StatusPreconditionFailed, CodeVersionMismatch, "the policy changed since it was read; GET it again", nil)
		return
	case err != nil:
		// The shared policy source could not be read or written: nothing
		// changed anywhere; the operator retries.
		w.Header().Set("Retry-After", "1")
		writeProblem(w, http.StatusServiceUnavailable, string(payments.CodeStoreUnavailable), "the shared policy store is unavailable; the policy did not change", nil)
		return
	}
	writePolicy(w, req, http.StatusOK, r.cur.Load())
}

func writePolicyError(w http.ResponseWriter, pe *PolicyError) {
	fields := make([]payments.FieldError, len(pe.Problems))
	for i, p := range pe.Problems {
		fields[i] = payments.FieldError{Field: p.Field, Code: payments.CodeInvalid, Message: p.Message}
	}
	writeProblem(w, http.StatusUnprocessableEntity, string(payments.CodeValidation),
		"the routing policy was refused; the current policy stays in force", fields)
}

type problem struct {
	Type   string                `json:"type"`
	Title  string                `json:"title"`
	Status int                   `json:"status"`
	Detail string                `json:"detail,omitempty"`
	Code   string                `json:"code"`
	Errors []payments.FieldError `json:"errors,omitempty"`
}

func writeProblem(w http.ResponseWriter, status int, code, detail string, fields []payments.FieldError) {
	typ := payments.ProblemTypeBase + code
	title := payments.Code(code).Title()
	if code == CodeVersionMismatch {
		typ = "https://github.com/payrail/payrail/blob/main/docs/routing.md#" + code
		title = "Routing policy version mismatch"
	}
	b, err := json.Marshal(problem{Type: typ, Title: title, Status: status, Detail: detail, Code: code, Errors: fields})
	if err != nil {
		b = []byte(`{"code":"internal_error"}`)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeJSON(w http.ResponseWriter, req *http.Request, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		writeProblem(w, http.StatusInternalServerError, string(payments.CodeInternal), "encoding failed", nil)
		return
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	if req.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}
