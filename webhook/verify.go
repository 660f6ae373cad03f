package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Verifier defaults.
const (
	// DefaultTolerance is how far webhook-timestamp may be from the
	// receiver's clock, either way.
	DefaultTolerance = 5 * time.Minute
	// DefaultMaxBodyBytes caps the body a Verifier accepts.
	DefaultMaxBodyBytes = 1 << 20
)

// maxSignatures bounds how many entries of webhook-signature are tried, so
// a hostile header cannot buy unbounded HMAC work; a sender sends one per
// valid secret (two during a rotation).
const maxSignatures = 8

// maxSignatureHeader bounds webhook-signature's length.
const maxSignatureHeader = 4096

// Verifier checks deliveries. It is safe for concurrent use and never
// prints its secrets.
type Verifier struct {
	keys      [][]byte
	tolerance time.Duration
	maxBody   int64
	seen      SeenStore
	now       func() time.Time
}

// VerifierOption configures a Verifier.
type VerifierOption func(*Verifier) error

// WithTolerance sets how far webhook-timestamp may be from the receiver's
// clock, in the past or the future (default [DefaultTolerance]). It must be
// positive.
func WithTolerance(d time.Duration) VerifierOption {
	return func(v *Verifier) error {
		if d <= 0 {
			return fmt.Errorf("webhook: tolerance %v must be positive", d)
		}
		v.tolerance = d
		return nil
	}
}

// WithMaxBodyBytes caps the body the Verifier accepts (default
// [DefaultMaxBodyBytes]). It must be positive.
func WithMaxBodyBytes(n int64) VerifierOption {
	return func(v *Verifier) error {
		if n <= 0 {
			return fmt.Errorf("webhook: body cap %d must be positive", n)
		}
		v.maxBody = n
		return nil
	}
}

// WithSeenStore makes the Verifier replay-safe: a correctly signed
// delivery is accepted only if the store has not seen its webhook-id within
// the tolerance window. Without one, Verify checks signatures and
// timestamps only. Every replica of a receiver must share the store (a
// [MemorySeenStore] protects one process only).
func WithSeenStore(s SeenStore) VerifierOption {
	return func(v *Verifier) error {
		v.seen = s
		return nil
	}
}

// WithClock sets the clock the tolerance is measured against (default
// time.Now). For tests.
func WithClock(now func() time.Time) VerifierOption {
	return func(v *Verifier) error {
		if now == nil {
			return fmt.Errorf("webhook: nil clock")
		}
		v.now = now
		return nil
	}
}

// NewVerifier returns a Verifier that accepts a delivery signed with any of
// secrets ("whsec_…"; several during a rotation). Its errors never contain
// a secret.
func NewVerifier(secrets []string, opts ...VerifierOption) (*Verifier, error) {
	if len(secrets) == 0 {
		return nil, fmt.Errorf("%w: no secret given", ErrInvalidSecret)
	}
	v := &Verifier{tolerance: DefaultTolerance, maxBody: DefaultMaxBodyBytes, now: time.Now}
	for i, s := range secrets {
		sec, err := ParseSecret(s)
		if err != nil {
			return nil, fmt.Errorf("secret %d: %w", i, err)
		}
		v.keys = append(v.keys, sec.key)
	}
	for _, o := range opts {
		if err := o(v); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// String describes the verifier without its secrets.
func (v *Verifier) String() string {
	return fmt.Sprintf("webhook.Verifier{secrets: %d, tolerance: %v}", len(v.keys), v.tolerance)
}

// Format prints [Verifier.String] for every verb.
func (v *Verifier) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(v.String())) }

// Verify is [Verifier.VerifyContext] with context.Background.
func (v *Verifier) Verify(h http.Header, body []byte) error {
	return v.VerifyContext(context.Background(), h, body)
}

// VerifyContext checks a delivery: the three headers are present and well
// formed, the body is within the cap, webhook-timestamp is within the
// tolerance of the clock, one v1 signature of webhook-signature matches
// under one of the secrets (compared in constant time), and, with a
// SeenStore, the id was not accepted before. Only then is the id recorded,
// so a forged or stale delivery never uses up an id. Errors wrap
// ErrMissingHeader, ErrMalformedHeader, ErrBodyTooLarge,
// ErrTimestampOutOfTolerance, ErrInvalidSignature or ErrReplayed, or are
// the SeenStore's.
//
// A receiver that fails to process an accepted delivery should call
// [Verifier.Forget] so that the sender's retry is accepted
// ([Verifier.Middleware] does).
func (v *Verifier) VerifyContext(ctx context.Context, h http.Header, body []byte) error {
	id, ts, err := v.check(h, body)
	if err != nil {
		return err
	}
	if v.seen == nil {
		return nil
	}
	// The id can be replayed with its (signed) timestamp until that
	// timestamp leaves the tolerance window; after that the timestamp check
	// refuses it. One extra second covers the truncation to whole seconds.
	ttl := time.Unix(ts, 0).Add(v.tolerance + time.Second).Sub(v.now())
	fresh, err := v.seen.Claim(ctx, id, ttl)
	if err != nil {
		return fmt.Errorf("webhook: seen store: %w", err)
	}
	if !fresh {
		return fmt.Errorf("%w: id %q was already accepted", ErrReplayed, id)
	}
	return nil
}

// Forget removes id from the SeenStore (if any), so a redelivery of it is
// accepted again. Call it when processing an accepted delivery failed.
func (v *Verifier) Forget(ctx context.Context, id string) error {
	if v.seen == nil {
		return nil
	}
	return v.seen.Release(ctx, id)
}

// check does everything but the replay check.
func (v *Verifier) check(h http.Header, body []byte) (id string, ts int64, err error) {
	id = h.Get(HeaderID)
	tsText := h.Get(HeaderTimestamp)
	sigText := h.Get(HeaderSignature)
	switch {
	case id == "":
		return "", 0, fmt.Errorf("%w: %s", ErrMissingHeader, HeaderID)
	case tsText == "":
		return "", 0, fmt.Errorf("%w: %s", ErrMissingHeader, HeaderTimestamp)
	case sigText == "":
		return "", 0, fmt.Errorf("%w: %s", ErrMissingHeader, HeaderSignature)
	}
	if err := checkID(id, true); err != nil {
		return "", 0, fmt.Errorf("%w: %s: %v", ErrMalformedHeader, HeaderID, err)
	}
	ts, err = parseUnix(tsText)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %s must be integer Unix seconds", ErrMalformedHeader, HeaderTimestamp)
	}
	if len(sigText) > maxSignatureHeader {
		return "", 0, fmt.Errorf("%w: %s longer than %d bytes", ErrMalformedHeader, HeaderSignature, maxSignatureHeader)
	}
	if int64(len(body)) > v.maxBody {
		return "", 0, fmt.Errorf("%w: %d bytes, the cap is %d", ErrBodyTooLarge, len(body), v.maxBody)
	}
	now := v.now().Unix()
	tol := int64(v.tolerance / time.Second)
	if ts < now-tol {
		return "", 0, fmt.Errorf("%w: %d s in the past (tolerance %v)", ErrTimestampOutOfTolerance, now-ts, v.tolerance)
	}
	if ts > now+tol {
		return "", 0, fmt.Errorf("%w: %d s in the future (tolerance %v)", ErrTimestampOutOfTolerance, ts-now, v.tolerance)
	}
	expected := make([][]byte, len(v.keys))
	for i, key := range v.keys {
		expected[i] = mac(key, id, tsText, body)
	}
	var buf [48]byte
	tried := 0
	for _, entry := range strings.Fields(sigText) {
		version, encoded, ok := strings.Cut(entry, ",")
		if !ok || version != signatureVersion {
			continue // another scheme (v1a) or garbage: not ours to judge
		}
		if tried++; tried > maxSignatures {
			break
		}
		if len(encoded) > 64 { // base64 of 48 bytes; a SHA-256 MAC is 44
			continue
		}
		n, err := base64.StdEncoding.Decode(buf[:], []byte(encoded))
		if err != nil || n != sha256.Size {
			continue
		}
		for _, e := range expected {
			if hmac.Equal(buf[:n], e) {
				return id, ts, nil
			}
		}
	}
	if tried == 0 {
		return "", 0, fmt.Errorf("%w: no %s signature in %s", ErrInvalidSignature, signatureVersion, HeaderSignature)
	}
	return "", 0, fmt.Errorf("%w: none of %d signatures matches", ErrInvalidSignature, min(tried, maxSignatures))
}

// parseUnix parses integer Unix seconds: 1 to 19 ASCII digits, no sign.
// Timestamps are signed as the header text, so this refuses forms that
// would parse to the same number from different text only for clarity: the
// MAC is computed over the text received.
func parseUnix(s string) (int64, error) {
	if len(s) == 0 || len(s) > 19 {
		return 0, strconv.ErrRange
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, strconv.ErrSyntax
		}
	}
	return strconv.ParseInt(s, 10, 64)
}
