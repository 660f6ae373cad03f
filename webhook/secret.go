package webhook

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strings"
)

// SecretPrefix starts the serialized form of every signing secret.
const SecretPrefix = "whsec_"

// Secret lengths, in bytes of key material, that the Standard Webhooks
// specification allows for HMAC-SHA256 signing secrets.
const (
	MinSecretBytes = 24
	MaxSecretBytes = 64
)

// Secret is an HMAC-SHA256 signing secret. Its zero value is not a valid
// secret. A Secret never prints: fmt (every verb), slog and String show
// only a redacted placeholder. [Secret.Reveal] returns the serialized form,
// to store or to show a merchant once.
type Secret struct {
	key []byte
}

// ParseSecret parses the serialized form of a secret: "whsec_" followed by
// the standard base64 encoding (padded or not) of 24 to 64 random bytes.
// Its errors never contain the secret.
func ParseSecret(s string) (Secret, error) {
	rest, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return Secret{}, fmt.Errorf("%w: it must start with %q", ErrInvalidSecret, SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		key, err = base64.RawStdEncoding.DecodeString(rest)
	}
	if err != nil {
		return Secret{}, fmt.Errorf("%w: the part after %q is not base64", ErrInvalidSecret, SecretPrefix)
	}
	if len(key) < MinSecretBytes || len(key) > MaxSecretBytes {
		return Secret{}, fmt.Errorf("%w: it holds %d bytes, want %d to %d", ErrInvalidSecret, len(key), MinSecretBytes, MaxSecretBytes)
	}
	return Secret{key: key}, nil
}

// NewSecret returns a new random secret of 32 bytes from crypto/rand.
func NewSecret() (Secret, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return Secret{}, fmt.Errorf("webhook: generating a secret: %w", err)
	}
	return Secret{key: key}, nil
}

// Reveal returns the serialized form of the secret ("whsec_…"). It is the
// only way to see a secret: call it to store the secret or to show it to
// its merchant, never to log it.
func (s Secret) Reveal() string {
	if len(s.key) == 0 {
		return ""
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(s.key)
}

// IsZero reports whether s is the zero Secret.
func (s Secret) IsZero() bool { return len(s.key) == 0 }

const redacted = SecretPrefix + "REDACTED"

// String returns a redacted placeholder, never the secret.
func (s Secret) String() string { return redacted }

// GoString returns a redacted placeholder, never the secret.
func (s Secret) GoString() string { return "webhook.Secret{" + redacted + "}" }

// Format prints a redacted placeholder for every verb.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(s.GoString()))
		return
	}
	_, _ = f.Write([]byte(redacted))
}

// LogValue makes slog show a redacted placeholder.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText encodes the redacted placeholder, so that an [Endpoint]
// marshaled for display never carries its secrets. Store [Secret.Reveal].
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// UnmarshalText parses the serialized form, as [ParseSecret] does (the
// redacted placeholder is not a secret and fails).
func (s *Secret) UnmarshalText(b []byte) error {
	p, err := ParseSecret(string(b))
	if err != nil {
		return err
	}
	*s = p
	return nil
}
