package payments

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Mode says whether an operation completes before the call returns.
type Mode string

// Modes.
const (
	// ModeDefault uses the processor's current default mode.
	ModeDefault Mode = ""
	// ModeSync calls the gateway before returning.
	ModeSync Mode = "sync"
	// ModeAsync persists the payment as pending, publishes a command and
	// returns; a Worker completes it.
	ModeAsync Mode = "async"
)

// AuthorizeRequest creates a payment. With CaptureAutomatic (the default) it
// is a purchase: authorized and captured at once.
type AuthorizeRequest struct {
	// Merchant owns the payment; every later call must name the same merchant.
	Merchant string
	// IdempotencyKey is required: retries with the same key and request return
	// the first result instead of charging again.
	IdempotencyKey string
	// Amount in minor units of Currency (1999 EUR is 19.99 €).
	Amount int64
	// Currency is an ISO 4217 code; case is normalised to upper.
	Currency string
	// PaymentMethod is a gateway token such as pm_card_visa; raw card
	// numbers are refused.
	PaymentMethod string
	// Origin is the channel (web, pos, partner-x...) routing rules select on.
	Origin string
	// CaptureMethod is automatic (default) or manual.
	CaptureMethod CaptureMethod
	// Metadata: up to 50 keys of up to 40 characters, values up to 500.
	Metadata map[string]string
	// Mode overrides the processor's default mode for this call.
	Mode Mode
}

// CaptureRequest captures an authorized payment.
type CaptureRequest struct {
	Merchant  string
	PaymentID string
	// Amount to capture; zero captures the full authorized amount. A partial
	// capture releases the rest of the authorization.
	Amount int64
	// IdempotencyKey is optional; with one, retries replay the first result.
	IdempotencyKey string
	// IfVersion, if not 0, is the version the payment must still be at
	// (Payment.Version; the HTTP API's ETag and If-Match), or the request
	// fails with ErrPreconditionFailed and nothing is executed.
	IfVersion int64
}

// VoidRequest cancels an authorized, uncaptured payment.
type VoidRequest struct {
	Merchant       string
	PaymentID      string
	IdempotencyKey string
	// IfVersion: as CaptureRequest.IfVersion.
	IfVersion int64
}

// RefundRequest refunds a captured payment.
type RefundRequest struct {
	Merchant  string
	PaymentID string
	// Amount to refund; zero refunds everything not yet refunded. Refunds may
	// be repeated until the captured amount is exhausted.
	Amount         int64
	IdempotencyKey string
	// IfVersion: as CaptureRequest.IfVersion.
	IfVersion int64
}

const (
	maxMetadataKeys     = 50
	maxMetadataKeyLen   = 40
	maxMetadataValueLen = 500
	maxTokenLen         = 255
	maxOriginLen        = 64
)

// maxAmount bounds amounts to a billion major units of the currency, which
// keeps every sum far from int64 overflow.
func maxAmount(c Currency) int64 {
	m := int64(1_000_000_000)
	for range c.MinorUnits {
		m *= 10
	}
	return m
}

// normalizeAuthorize validates r, applies defaults and returns the
// canonical request, or a validation *Error listing every bad field. The
// result shares r's metadata map, which the caller hands over: Authorize
// clones its caller's (so that later changes to it never reach the
// payment), and the HTTP handler passes the map it decoded.
func normalizeAuthorize(r *AuthorizeRequest) (AuthorizeRequest, *Error) {
	n := *r
	var fields []FieldError
	add := func(field string, code Code, format string, args ...any) {
		fields = append(fields, FieldError{Field: field, Code: code, Message: fmt.Sprintf(format, args...)})
	}
	n.Currency = strings.ToUpper(strings.TrimSpace(r.Currency))
	cur, curOK := LookupCurrency(n.Currency)
	switch {
	case r.Currency == "":
		add("currency", CodeRequired, "currency is required (ISO 4217, e.g. EUR)")
	case !curOK:
		add("currency", CodeNotPayableCurrency, "%q is not a payable ISO 4217 currency", r.Currency)
	}
	switch {
	case r.Amount <= 0:
		add("amount", CodeInvalid, "amount must be a positive integer in minor units")
	case curOK && r.Amount > maxAmount(cur):
		add("amount", CodeInvalid, "amount exceeds the maximum of %d minor units for %s", maxAmount(cur), cur.Code)
	}
	if f := checkToken(r.PaymentMethod); f != nil {
		fields = append(fields, *f)
	}
	switch {
	case r.Origin == "":
	case looksLikePAN(r.Origin):
		add("origin", CodeCardDataNotAllowed, "origin must not contain a card number")
	case !validSlug(r.Origin, maxOriginLen):
		add("origin", CodeInvalid, "origin must be 1-64 characters of letters, digits, '.', '_' or '-'")
	}
	switch r.CaptureMethod {
	case "":
		n.CaptureMethod = CaptureAutomatic
	case CaptureAutomatic, CaptureManual:
	default:
		add("capture_method", CodeInvalid, "capture_method must be automatic or manual")
	}
	switch r.Mode {
	case ModeDefault, ModeSync, ModeAsync:
	default:
		fields = append(fields, FieldError{Field: "mode", Code: CodeInvalid, Message: "mode must be sync or async"})
	}
	fields = append(fields, checkMetadata(r.Metadata)...)
	if len(fields) > 0 {
		return AuthorizeRequest{}, validationError(fields...)
	}
	if len(n.Metadata) == 0 {
		n.Metadata = nil // encoded as {}; saves a map per payment copy
	}
	return n, nil
}

func checkToken(tok string) *FieldError {
	switch {
	case tok == "":
		return &FieldError{Field: "payment_method", Code: CodeRequired, Message: "payment_method is required (a gateway token such as pm_card_visa)"}
	case looksLikePAN(tok):
		return &FieldError{Field: "payment_method", Code: CodeCardDataNotAllowed, Message: "payment_method must be a token; raw card numbers are not accepted"}
	case len(tok) > maxTokenLen || !validSlug(tok, maxTokenLen):
		return &FieldError{Field: "payment_method", Code: CodeInvalid, Message: "payment_method must be a token of letters, digits, '_', '-' or '.'"}
	}
	return nil
}

func checkMetadata(md map[string]string) []FieldError {
	var fields []FieldError
	if len(md) > maxMetadataKeys {
		fields = append(fields, FieldError{Field: "metadata", Code: CodeInvalid, Message: fmt.Sprintf("metadata has more than %d keys", maxMetadataKeys)})
		return fields
	}
	for k, v := range md {
		// A rejected key is never echoed: it may be card data or garbage.
		switch {
		case k == "" || utf8.RuneCountInString(k) > maxMetadataKeyLen || !utf8.ValidString(k) || hasControl(k, false):
			fields = append(fields, FieldError{Field: "metadata", Code: CodeInvalid,
				Message: fmt.Sprintf("metadata keys must be 1-%d characters of valid UTF-8 without control characters", maxMetadataKeyLen)})
			continue
		case looksLikePAN(k):
			fields = append(fields, FieldError{Field: "metadata", Code: CodeCardDataNotAllowed, Message: "metadata keys must not contain card numbers"})
			continue
		}
		switch {
		case !utf8.ValidString(v) || hasControl(v, true):
			fields = append(fields, FieldError{Field: "metadata." + k, Code: CodeInvalid, Message: "metadata values must be valid UTF-8 without control characters (tab and newlines allowed)"})
		case utf8.RuneCountInString(v) > maxMetadataValueLen:
			fields = append(fields, FieldError{Field: "metadata." + k, Code: CodeTooLong, Message: fmt.Sprintf("metadata values must be at most %d characters", maxMetadataValueLen)})
		case looksLikePAN(v):
			fields = append(fields, FieldError{Field: "metadata." + k, Code: CodeCardDataNotAllowed, Message: "metadata must not contain card numbers"})
		}
	}
	slices.SortFunc(fields, func(a, b FieldError) int { return strings.Compare(a.Field, b.Field) }) // stable answers
	return fields
}

// hasControl reports whether s contains a control character (C0, DEL or
// C1, NUL included); textual allows tab, line feed and carriage return.
func hasControl(s string, textual bool) bool {
	for _, r := range s {
		if textual && (r == '\t' || r == '\n' || r == '\r') {
			continue
		}
		if unicode.IsControl(r) {
			return true
		}
	}
	return false
}

// maxIDLen bounds identifiers taken from callers (merchant, payment ids).
const maxIDLen = 128

// checkID validates an identifier a caller supplies (a merchant, a payment
// id in a path): 1-128 characters of letters, digits, '.', '_' or '-'.
// Anything else cannot name a stored object and is refused before any
// store or gateway call, so hostile values (NUL, invalid UTF-8, control
// characters, card numbers) never reach a store, a log or a span.
func checkID(field, v string) *Error {
	switch {
	case v == "":
		return validationError(FieldError{Field: field, Code: CodeRequired, Message: field + " is required"})
	case looksLikePAN(v):
		return validationError(FieldError{Field: field, Code: CodeCardDataNotAllowed, Message: field + " must not contain a card number"})
	case !validSlug(v, maxIDLen):
		return validationError(FieldError{Field: field, Code: CodeInvalid,
			Message: fmt.Sprintf("%s must be 1-%d characters of letters, digits, '.', '_' or '-'", field, maxIDLen)})
	}
	return nil
}

func validSlug(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isSlugByte(s[i]) {
			return false
		}
	}
	return true
}

// isSlugByte reports whether c may appear in an identifier: a letter, a
// digit, '.', '_' or '-'.
func isSlugByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
}

// looksLikePAN reports whether s contains a run of 13 to 19 digits
// (ignoring single spaces or dashes between them) that passes the Luhn
// check: a primary account number that must never be stored or logged.
func looksLikePAN(s string) bool {
	digits := make([]byte, 0, 19)
	flush := func() bool {
		defer func() { digits = digits[:0] }()
		if len(digits) < 13 {
			return false
		}
		// Check every 13..19 window: a PAN may be embedded in a longer run.
		for n := 13; n <= min(19, len(digits)); n++ {
			for i := 0; i+n <= len(digits); i++ {
				if luhn(digits[i : i+n]) {
					return true
				}
			}
		}
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits = append(digits, c)
		case (c == ' ' || c == '-') && len(digits) > 0 && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			// separator inside a number
		default:
			if flush() {
				return true
			}
		}
	}
	return flush()
}

func luhn(d []byte) bool {
	sum := 0
	double := false
	for i := len(d) - 1; i >= 0; i-- {
		n := int(d[i] - '0')
		if double {
			n *= 2
			if n > 9 {
				n -= 9
			}
		}
		sum += n
		double = !double
	}
	return sum%10 == 0
}

// canonicalAuthorize is the canonical encoding of a normalised create
// request, digested into its idempotency fingerprint: a JSON object with a
// fixed field order, no insignificant whitespace and sorted metadata keys.
// It appends to b and returns the extended buffer.
func canonicalAuthorize(b []byte, n *AuthorizeRequest) []byte {
	b = append(b, `{"amount":`...)
	b = strconv.AppendInt(b, n.Amount, 10)
	b = append(b, `,"currency":`...)
	b = appendString(b, n.Currency)
	b = append(b, `,"payment_method":`...)
	b = appendString(b, n.PaymentMethod)
	b = append(b, `,"origin":`...)
	b = appendString(b, n.Origin)
	b = append(b, `,"capture_method":`...)
	b = appendString(b, string(n.CaptureMethod))
	b = append(b, `,"metadata":`...)
	b = appendStringMap(b, n.Metadata)
	return append(b, '}')
}

// canonicalAmount is the canonical body of capture and refund requests.
func canonicalAmount(amount int64) []byte {
	return strconv.AppendInt([]byte(`{"amount":`), amount, 10)
}
