package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The Standard Webhooks headers.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// signatureVersion prefixes HMAC-SHA256 signatures in webhook-signature.
const signatureVersion = "v1"

// maxIDLen bounds a webhook id, on both sides.
const maxIDLen = 256

// Signer signs deliveries with one or more secrets: the endpoint's current
// secret and, during a rotation, its previous one. Every secret's signature
// goes into webhook-signature, so a receiver that knows either verifies. A
// Signer is safe for concurrent use and never prints its secrets.
type Signer struct {
	keys [][]byte
}

// NewSigner returns a Signer for secrets, current first. It needs at least
// one non-zero secret.
func NewSigner(secrets ...Secret) (*Signer, error) {
	if len(secrets) == 0 {
		return nil, fmt.Errorf("%w: no secret given", ErrInvalidSecret)
	}
	s := &Signer{}
	for i, sec := range secrets {
		if sec.IsZero() {
			return nil, fmt.Errorf("%w: secret %d is the zero Secret", ErrInvalidSecret, i)
		}
		s.keys = append(s.keys, sec.key)
	}
	return s, nil
}

// String describes the signer without its secrets.
func (s *Signer) String() string { return fmt.Sprintf("webhook.Signer{secrets: %d}", len(s.keys)) }

// Format prints [Signer.String] for every verb.
func (s *Signer) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }

// Sign returns the webhook-signature header value for a delivery: one
// "v1,<base64 HMAC-SHA256 of id.timestamp.body>" per secret, separated by
// spaces. The id must be 1 to 256 printable ASCII characters without a full
// stop or white space.
func (s *Signer) Sign(id string, ts time.Time, body []byte) (string, error) {
	if err := checkID(id, false); err != nil {
		return "", err
	}
	unix := strconv.FormatInt(ts.Unix(), 10)
	var b strings.Builder
	b.Grow(len(s.keys) * 48)
	for i, key := range s.keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(signatureVersion)
		b.WriteByte(',')
		b.WriteString(base64.StdEncoding.EncodeToString(mac(key, id, unix, body)))
	}
	return b.String(), nil
}

// SetHeaders signs a delivery and sets webhook-id, webhook-timestamp and
// webhook-signature on h.
func (s *Signer) SetHeaders(h http.Header, id string, ts time.Time, body []byte) error {
	sig, err := s.Sign(id, ts, body)
	if err != nil {
		return err
	}
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, sig)
	return nil
}

// mac is HMAC-SHA256 under key of "id.unix.body".
func mac(key []byte, id, unix string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(unix))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// checkID validates a webhook id: 1 to 256 printable ASCII characters, no
// space. A full stop is refused when signing (the id is a field of the
// dot-delimited signed content, so the sender keeps it unambiguous) and
// accepted when verifying (the signature covers it anyway).
func checkID(id string, allowDot bool) error {
	if id == "" {
		return fmt.Errorf("%w: empty", ErrInvalidID)
	}
	if len(id) > maxIDLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidID, maxIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c <= ' ' || c >= 0x7f || (c == '.' && !allowDot) {
			return fmt.Errorf("%w: byte %d is not allowed", ErrInvalidID, i)
		}
	}
	return nil
}
