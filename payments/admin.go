package payments

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// HandleAdmin mounts handler at /admin/<name> (and nothing below it),
// behind the same admin-key check as /admin/mode: requests without a valid
// key get 401, keys without admin rights 403, both as problem documents.
// The handler sees the request unchanged and answers every method itself.
// Use it for operational endpoints of other packages, e.g. the routing
// policy:
//
//	h, err := payments.NewHandler(p, auth)
//	...
//	err = h.HandleAdmin("routes", routing.AdminHandler(router))
//
// name must be 1-64 lower-case letters, digits, '-' or '_', not already
// mounted. HandleAdmin may be called while the handler serves.
func (h *Handler) HandleAdmin(name string, handler http.Handler) (err error) {
	if handler == nil {
		return errors.New("payments: HandleAdmin with a nil handler")
	}
	if !adminName(name) {
		return fmt.Errorf("payments: admin endpoint name %q: want 1-64 lower-case letters, digits, '-' or '_'", name)
	}
	pattern := "/admin/" + name
	if _, pat := h.mux.Handler(&http.Request{Method: http.MethodGet, URL: &url.URL{Path: pattern}}); pat == pattern {
		return fmt.Errorf("payments: admin endpoint %s is already mounted", pattern)
	}
	defer func() {
		if r := recover(); r != nil { // a conflicting pattern: ServeMux panics
			err = fmt.Errorf("payments: mounting %s: %v", pattern, r)
		}
	}()
	h.mux.Handle(pattern, h.admin(func(w http.ResponseWriter, r *http.Request, _ Principal) {
		handler.ServeHTTP(w, r)
	}))
	return nil
}

func adminName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
