package payments

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Principal is who a request acts for.
type Principal struct {
	// Merchant scopes every payment and idempotency key the request touches.
	Merchant string
	// Admin allows the operational endpoints (/admin/...).
	Admin bool
}

// Authenticator maps a request to a Principal.
type Authenticator interface {
	// Authenticate returns the principal, or ErrUnauthenticated.
	Authenticate(r *http.Request) (Principal, error)
}

// ErrUnauthenticated is returned by authenticators for missing or unknown
// credentials.
var ErrUnauthenticated = errors.New("payments: missing or invalid API key")

// APIKeys authenticates "Authorization: Bearer <key>" against merchant keys
// (key → merchant) and admin keys. Keys are compared by their SHA-256
// digest, so lookups do not leak key material through timing, and keys are
// never logged.
func APIKeys(merchantKeys map[string]string, adminKeys []string) (Authenticator, error) {
	a := apiKeys{merchants: map[[32]byte]string{}, admins: map[[32]byte]bool{}}
	for k, m := range merchantKeys {
		if k == "" || m == "" {
			return nil, errors.New("payments: API keys and merchants must be non-empty")
		}
		if checkID("merchant", m) != nil {
			return nil, fmt.Errorf("payments: merchant names must be 1-%d letters, digits, '.', '_' or '-'", maxIDLen)
		}
		a.merchants[sha256.Sum256([]byte(k))] = m
	}
	for _, k := range adminKeys {
		if k == "" {
			return nil, errors.New("payments: admin keys must be non-empty")
		}
		a.admins[sha256.Sum256([]byte(k))] = true
	}
	if len(a.merchants) == 0 && len(a.admins) == 0 {
		return nil, errors.New("payments: APIKeys needs at least one key; use DevAuthenticator for development")
	}
	return a, nil
}

type apiKeys struct {
	merchants map[[32]byte]string
	admins    map[[32]byte]bool
}

func (a apiKeys) Authenticate(r *http.Request) (Principal, error) {
	key, ok := bearer(r)
	if !ok {
		return Principal{}, ErrUnauthenticated
	}
	sum := sha256.Sum256([]byte(key))
	if a.admins[sum] {
		return Principal{Merchant: a.merchants[sum], Admin: true}, nil
	}
	if m, ok := a.merchants[sum]; ok {
		return Principal{Merchant: m}, nil
	}
	return Principal{}, ErrUnauthenticated
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// DevMerchant is the merchant every request acts for in development mode.
const DevMerchant = "dev"

// DevAuthenticator accepts every request as merchant "dev" with admin
// rights. It exists for local development only; servers using it must say
// so loudly.
func DevAuthenticator() Authenticator { return devAuth{} }

type devAuth struct{}

func (devAuth) Authenticate(*http.Request) (Principal, error) {
	return Principal{Merchant: DevMerchant, Admin: true}, nil
}

// ParseAPIKeys parses "key1:merchantA,key2:merchantB" (the PAYRAIL_API_KEYS
// format) into key → merchant. Error messages never include key material.
func ParseAPIKeys(s string) (map[string]string, error) {
	out := map[string]string{}
	for i, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		k, m, ok := strings.Cut(item, ":")
		k, m = strings.TrimSpace(k), strings.TrimSpace(m)
		if !ok || k == "" || m == "" {
			return nil, fmt.Errorf("payments: API key entry %d: want key:merchant", i+1)
		}
		if !validSlug(m, 64) {
			return nil, fmt.Errorf("payments: API key entry %d: merchant must be 1-64 letters, digits, '.', '_' or '-'", i+1)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("payments: API key entry %d: duplicate key", i+1)
		}
		out[k] = m
	}
	return out, nil
}

// AdminOnly serves h only to requests auth maps to an admin principal, and
// answers the others with a 401 or 403 problem document. The reference
// server puts /metrics behind it when API keys are configured, so that
// operational data is not readable unauthenticated (Prometheus sends the
// key with its scrape configuration's authorization setting).
func AdminOnly(auth Authenticator, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pr, err := auth.Authenticate(r)
		switch {
		case err != nil:
			w.Header().Set("WWW-Authenticate", `Bearer realm="payrail"`)
			writeProblem(w, r, &Error{Code: CodeUnauthorized, Detail: "send an admin key as Authorization: Bearer <key>"})
		case !pr.Admin:
			writeProblem(w, r, &Error{Code: CodeForbidden, Detail: "an admin key is required"})
		default:
			h.ServeHTTP(w, r)
		}
	})
}

// writeProblem writes e as a problem document, outside a Handler.
func writeProblem(w http.ResponseWriter, r *http.Request, e *Error) {
	o := failed(e, nil)
	for k, v := range o.header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(o.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(o.body)
	}
}
