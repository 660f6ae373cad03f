package payments

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
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
	f.Fuzz(func(t *testing.T, body []byte, attrID, attrMerchant string) {
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
