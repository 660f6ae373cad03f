package payments

import (
	"math"
	"math/big"
	"regexp"
	"strings"
	"testing"
)

// jsonInteger is a JSON number without fraction or exponent.
var jsonInteger = regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)

// FuzzParseAmount: through the request decoder, an amount is accepted
// exactly when it is a JSON integer (no fraction, exponent, leading zero
// or quotes) from 1 to MaxInt64, and then with that value; an absent or
// null amount is "required" only when required; anything else is refused
// as an invalid amount field.
func FuzzParseAmount(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string, required bool) {
		var b amountBody
		if e := decodeJSON([]byte(`{"amount":`+raw+`}`), &b, true); e != nil {
			if e.Code != CodeMalformedRequest && e.Code != CodeValidation {
				t.Fatalf("decoding amount %q: %v", raw, e)
			}
			return // not one JSON value: the decoder refused the body
		}
		v, e := parseAmount(b.Amount, required)
		lit := strings.Trim(raw, " \t\r\n")
		if lit == "null" {
			if (e != nil) != required || v != 0 {
				t.Fatalf("amount null (required %v): %d, %v", required, v, e)
			}
			return
		}
		n, isInt := new(big.Int).SetString(lit, 10)
		want := jsonInteger.MatchString(lit) && isInt && n.Sign() > 0 && n.Cmp(big.NewInt(math.MaxInt64)) <= 0
		if !want {
			if e == nil {
				t.Fatalf("amount %q accepted as %d", raw, v)
			}
			if e.Code != CodeValidation || len(e.Fields) != 1 || e.Fields[0].Field != "amount" {
				t.Fatalf("amount %q refused with %+v", raw, e)
			}
			return
		}
		if e != nil || v != n.Int64() {
			t.Fatalf("amount %q: %d, %v; want %s", raw, v, e, n)
		}
	})
}

// FuzzLookupCurrency: LookupCurrency finds exactly the codes of the
// currency table, case-sensitively (its documented contract: callers
// normalise case); the request normaliser accepts a currency exactly when
// its upper-case form without surrounding spaces is such a code, and
// always stores the table's canonical three ASCII letters. (It uses
// Unicode case mapping and spaces: "uſd" and "USD\u00a0" are accepted as
// USD; the stored value stays canonical.)
func FuzzLookupCurrency(f *testing.F) {
	codes := map[string]Currency{}
	for _, c := range Currencies() {
		codes[c.Code] = c
	}
	f.Fuzz(func(t *testing.T, code string) {
		c, ok := LookupCurrency(code)
		if want, known := codes[code]; ok != known || c != want {
			t.Fatalf("LookupCurrency(%q) = %+v, %v; want %+v, %v", code, c, ok, want, known)
		}
		if ok && (len(code) != 3 || !isASCII(code) || strings.ToUpper(code) != code) {
			t.Fatalf("LookupCurrency(%q) accepted a code that is not three upper-case letters", code)
		}
		n, e := normalizeAuthorize(&AuthorizeRequest{Merchant: "m", IdempotencyKey: "k", Amount: 1, Currency: code, PaymentMethod: "pm_card_visa"})
		norm := strings.ToUpper(strings.TrimSpace(code))
		_, valid := codes[norm]
		refused := e != nil && hasField(e, "currency")
		if valid == refused {
			t.Fatalf("currency %q: refused %v (%v), want accepted %v", code, refused, e, valid)
		}
		if valid {
			if _, canonical := codes[n.Currency]; !canonical || n.Currency != norm {
				t.Fatalf("currency %q normalised to %q, want %q", code, n.Currency, norm)
			}
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func hasField(e *Error, field string) bool {
	for _, f := range e.Fields {
		if f.Field == field {
			return true
		}
	}
	return false
}
