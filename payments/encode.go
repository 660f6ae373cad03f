package payments

import (
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// The API representations of Payment and Refund are on the hot path of
// every operation (they are rendered once per request and stored for
// idempotent replay), so they are encoded by hand instead of by reflection.
// The output is byte-for-byte what encoding/json produces with HTML
// escaping off (except that nil metadata is {}), which encode_test.go
// checks, including by fuzzing.

// MarshalJSON encodes the payment's API representation.
func (p *Payment) MarshalJSON() ([]byte, error) { return p.appendJSON(make([]byte, 0, 640)), nil }

// MarshalJSON encodes the refund's API representation.
func (r *Refund) MarshalJSON() ([]byte, error) { return r.appendJSON(make([]byte, 0, 256)), nil }

func (p *Payment) appendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = appendString(b, p.ID)
	b = append(b, `,"merchant":`...)
	b = appendString(b, p.Merchant)
	b = append(b, `,"amount":`...)
	b = strconv.AppendInt(b, p.Amount, 10)
	b = append(b, `,"currency":`...)
	b = appendString(b, p.Currency)
	b = append(b, `,"payment_method":`...)
	b = appendString(b, p.PaymentMethod)
	b = append(b, `,"origin":`...)
	b = appendString(b, p.Origin)
	b = append(b, `,"capture_method":`...)
	b = appendString(b, string(p.CaptureMethod))
	b = append(b, `,"status":`...)
	b = appendString(b, string(p.Status))
	if p.Gateway != "" {
		b = append(b, `,"gateway":`...)
		b = appendString(b, p.Gateway)
	}
	if p.GatewayReference != "" {
		b = append(b, `,"gateway_reference":`...)
		b = appendString(b, p.GatewayReference)
	}
	if p.DeclineCode != "" {
		b = append(b, `,"decline_code":`...)
		b = appendString(b, p.DeclineCode)
	}
	if p.FailureCode != "" {
		b = append(b, `,"failure_code":`...)
		b = appendString(b, p.FailureCode)
	}
	b = append(b, `,"amount_captured":`...)
	b = strconv.AppendInt(b, p.AmountCaptured, 10)
	b = append(b, `,"amount_refunded":`...)
	b = strconv.AppendInt(b, p.AmountRefunded, 10)
	b = append(b, `,"refunds":`...)
	if p.Refunds == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range p.Refunds {
			if i > 0 {
				b = append(b, ',')
			}
			b = p.Refunds[i].appendJSON(b)
		}
		b = append(b, ']')
	}
	b = append(b, `,"metadata":`...)
	b = appendStringMap(b, p.Metadata)
	b = append(b, `,"created_at":`...)
	b = appendTime(b, p.CreatedAt)
	b = append(b, `,"updated_at":`...)
	b = appendTime(b, p.UpdatedAt)
	return append(b, '}')
}

func (r *Refund) appendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = appendString(b, r.ID)
	b = append(b, `,"payment_id":`...)
	b = appendString(b, r.PaymentID)
	b = append(b, `,"amount":`...)
	b = strconv.AppendInt(b, r.Amount, 10)
	b = append(b, `,"currency":`...)
	b = appendString(b, r.Currency)
	b = append(b, `,"status":`...)
	b = appendString(b, r.Status)
	if r.GatewayReference != "" {
		b = append(b, `,"gateway_reference":`...)
		b = appendString(b, r.GatewayReference)
	}
	b = append(b, `,"created_at":`...)
	b = appendTime(b, r.CreatedAt)
	return append(b, '}')
}

// appendStringMap encodes m with sorted keys, as encoding/json does; a nil
// map is encoded as {} (payments keep empty metadata as nil).
func appendStringMap(b []byte, m map[string]string) []byte {
	if len(m) == 0 {
		return append(b, "{}"...)
	}
	var keysBuf [16]string
	keys := keysBuf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = appendString(b, m[k])
	}
	return append(b, '}')
}

// appendTime encodes t as time.Time.MarshalJSON does (RFC 3339 with
// nanoseconds, trailing zeros trimmed).
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendString encodes s as a JSON string the way encoding/json does with
// HTML escaping disabled: quotes, backslashes and control characters are
// escaped, invalid UTF-8 becomes U+FFFD, and U+2028/U+2029 are escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
