package payments

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
)

func validCommand() string {
	return `{"v":1,"op":"authorize","payment_id":"pay_ABC","merchant":"acme"}`
}

// A poisoned or forged command is refused with a reason, never executed
// with defaults.
func TestDecodeCommandRefusesHostileInput(t *testing.T) {
	attrs := map[string]string{AttrCommand: "authorize", AttrPaymentID: "pay_ABC", AttrMerchant: "acme"}
	bad := map[string]struct {
		body  string
		attrs map[string]string
	}{
		"empty":               {``, nil},
		"null":                {`null`, nil},
		"array":               {`[]`, nil},
		"no version":          {`{"op":"authorize","payment_id":"pay_ABC","merchant":"acme"}`, nil},
		"future version":      {`{"v":2,"op":"authorize","payment_id":"pay_ABC","merchant":"acme"}`, nil},
		"unknown op":          {`{"v":1,"op":"refund","payment_id":"pay_ABC","merchant":"acme"}`, nil},
		"missing id":          {`{"v":1,"op":"authorize","merchant":"acme"}`, nil},
		"missing merchant":    {`{"v":1,"op":"authorize","payment_id":"pay_ABC"}`, nil},
		"unknown member":      {`{"v":1,"op":"authorize","payment_id":"pay_ABC","merchant":"acme","amount":1}`, nil},
		"duplicate merchant":  {`{"v":1,"op":"authorize","payment_id":"pay_ABC","merchant":"acme","merchant":"evil"}`, nil},
		"case mismatch":       {`{"v":1,"op":"authorize","payment_id":"pay_ABC","Merchant":"acme"}`, nil},
		"trailing":            {validCommand() + `{}`, nil},
		"NUL in id":           {`{"v":1,"op":"authorize","payment_id":"pay_\u0000","merchant":"acme"}`, nil},
		"card number id":      {`{"v":1,"op":"authorize","payment_id":"4242424242424242","merchant":"acme"}`, nil},
		"invalid UTF-8":       {"{\"v\":1,\"op\":\"authorize\",\"payment_id\":\"pay_\xff\",\"merchant\":\"acme\"}", nil},
		"version as string":   {`{"v":"1","op":"authorize","payment_id":"pay_ABC","merchant":"acme"}`, nil},
		"forged merchant":     {validCommand(), map[string]string{AttrMerchant: "other"}},
		"forged payment id":   {validCommand(), map[string]string{AttrPaymentID: "pay_XYZ"}},
		"forged command attr": {validCommand(), map[string]string{AttrCommand: "refund"}},
	}
	for name, tc := range bad {
		if cmd, err := decodeCommand([]byte(tc.body), tc.attrs); !errors.Is(err, errMalformedCommand) {
			t.Errorf("%s: accepted %+v (err %v)", name, cmd, err)
		} else if strings.Contains(err.Error(), "4242") || strings.Contains(err.Error(), "evil") {
			t.Errorf("%s: the reason echoes input: %v", name, err)
		}
	}
	cmd, err := decodeCommand([]byte(validCommand()), attrs)
	if err != nil || cmd != (command{Version: 1, Op: "authorize", PaymentID: "pay_ABC", Merchant: "acme"}) {
		t.Fatalf("valid command: %+v, %v", cmd, err)
	}
}

// FuzzDecodeCommand: whatever a message body holds, decodeCommand either
// refuses it or returns a command that the publisher's own encoding
// reproduces exactly (nothing defaulted, nothing dropped).
func FuzzDecodeCommand(f *testing.F) {
	for _, s := range []string{validCommand(), `{}`, `null`, `{"v":1,"op":"authorize","payment_id":"p","merchant":"m","x":1}`,
		`{"v":1,"op":"authorize","payment_id":"p","merchant":"m","merchant":"n"}`, `{"v":1.0,"op":"authorize","payment_id":"p","merchant":"m"}`} {
		f.Add([]byte(s), "", "")
	}
	f.Add([]byte(validCommand()), "pay_ABC", "acme")
	f.Add([]byte(`{"v":1,"op":"authorize","payment_id":"pay_ABC","merchant":"acme"} `), "", "")
	f.Add([]byte(`{"v":1,"op":"authorize","payment_id":"pay_ABC","merchant":"ac\u006de"}`), "", "")
	f.Fuzz(func(t *testing.T, body []byte, attrID, attrMerchant string) {
		// What the reflection-free reading accepts, the strict JSON
		// decoder reads into the same command.
		if c, ok := decodeCanonical(body); ok {
			var v command
			if err := jsonv2.Unmarshal(body, &v, jsonv2.RejectUnknownMembers(true)); err != nil || v != c {
				t.Fatalf("decodeCanonical read %+v from %q; the JSON decoder %+v, %v", c, body, v, err)
			}
		}
		attrs := map[string]string{}
		if attrID != "" {
			attrs[AttrPaymentID] = attrID
		}
		if attrMerchant != "" {
			attrs[AttrMerchant] = attrMerchant
		}
		cmd, err := decodeCommand(body, attrs)
		if err != nil {
			if !errors.Is(err, errMalformedCommand) {
				t.Fatalf("error without the sentinel: %v", err)
			}
			return
		}
		if checkID("payment_id", cmd.PaymentID) != nil || checkID("merchant", cmd.Merchant) != nil || cmd.Op != opAuthorize || cmd.Version != 1 {
			t.Fatalf("accepted an invalid command %+v from %q", cmd, body)
		}
		if (attrID != "" && attrID != cmd.PaymentID) || (attrMerchant != "" && attrMerchant != cmd.Merchant) {
			t.Fatalf("accepted attributes that contradict the body: %+v %q %q", cmd, attrID, attrMerchant)
		}
		re, _ := json.Marshal(cmd)
		again, err := decodeCommand(re, nil)
		if err != nil || again != cmd {
			t.Fatalf("re-encoded %s does not decode to the same command: %+v, %v", re, again, err)
		}
	})
}

// encodeCommand writes what encoding/json writes for the same command, in
// the canonical form the worker reads without the JSON decoder; values
// that need escaping are escaped (and left to the decoder).
func TestEncodeCommandIsCanonical(t *testing.T) {
	for _, c := range []command{
		{Version: 1, Op: opAuthorize, PaymentID: "pay_ABC", Merchant: "acme"},
		{Version: 1, Op: opEvents, PaymentID: "pay_01JE7Q9ZK3M5N8P2R4T6V8X0YB", Merchant: "merchant-a.eu_1"},
	} {
		got := encodeCommand(c.Op, c.PaymentID, c.Merchant)
		if want, _ := json.Marshal(c); string(got) != string(want) {
			t.Errorf("encodeCommand = %s, want %s", got, want)
		}
		if d, ok := decodeCanonical(got); !ok || d != c {
			t.Errorf("decodeCanonical(%s) = %+v, %v", got, d, ok)
		}
		if d, err := decodeCommand(got, nil); err != nil || d != c {
			t.Errorf("decodeCommand(%s) = %+v, %v", got, d, err)
		}
	}
	odd := encodeCommand(opAuthorize, `pay"1`, `a\b`)
	var v command
	if err := json.Unmarshal(odd, &v); err != nil || v.PaymentID != `pay"1` || v.Merchant != `a\b` {
		t.Errorf("encodeCommand with values to escape: %s: %+v, %v", odd, v, err)
	}
	if _, ok := decodeCanonical(odd); ok {
		t.Errorf("decodeCanonical took %s for the canonical form", odd)
	}
}

// BenchmarkCommandRoundTrip encodes a command as publishCommand does and
// decodes it as the worker does: the per-command cost of every async
// payment, whichever bus carries it.
func BenchmarkCommandRoundTrip(b *testing.B) {
	attrs := map[string]string{AttrCommand: opAuthorize, AttrPaymentID: "pay_01JE7Q9ZK3M5N8P2R4T6V8X0YB", AttrMerchant: "merchant-a"}
	b.ReportAllocs()
	for b.Loop() {
		body := encodeCommand(opAuthorize, "pay_01JE7Q9ZK3M5N8P2R4T6V8X0YB", "merchant-a")
		if _, err := decodeCommand(body, attrs); err != nil {
			b.Fatal(err)
		}
	}
}
