package payments

import (
	"errors"
	"fmt"

	jsonv2 "github.com/go-json-experiment/json"
)

// command is the body of an async payment command.
type command struct {
	Version   int    `json:"v"`
	Op        string `json:"op"`
	PaymentID string `json:"payment_id"`
	Merchant  string `json:"merchant"`
}

// commandVersion is the command format this version writes and reads.
const commandVersion = 1

// errMalformedCommand is wrapped by every decodeCommand error.
var errMalformedCommand = errors.New("malformed payment command")

// decodeCommand reads a command from a message body, as strictly as the
// HTTP API reads requests: one JSON object with exactly the known members
// (no unknown, duplicate or case-mismatched names, valid UTF-8, nothing
// after it), the version this code writes, a known operation and valid
// identifiers; and when the message carries the payrail.* attributes the
// publisher sets, they must agree with the body (a forged or altered
// envelope). The error names the reason without echoing values.
func decodeCommand(body []byte, attrs map[string]string) (command, error) {
	var cmd command
	if len(body) == 0 || body[0] != '{' {
		return command{}, fmt.Errorf("%w: the body is not a JSON object", errMalformedCommand)
	}
	if err := jsonv2.Unmarshal(body, &cmd, jsonv2.RejectUnknownMembers(true)); err != nil {
		return command{}, fmt.Errorf("%w: %s", errMalformedCommand, commandJSONReason(err))
	}
	switch {
	case cmd.Version != commandVersion:
		return command{}, fmt.Errorf("%w: version %d, want %d", errMalformedCommand, cmd.Version, commandVersion)
	case cmd.Op != opAuthorize && cmd.Op != opEvents:
		return command{}, fmt.Errorf("%w: unknown operation", errMalformedCommand)
	case checkID("payment_id", cmd.PaymentID) != nil:
		return command{}, fmt.Errorf("%w: invalid payment_id", errMalformedCommand)
	case checkID("merchant", cmd.Merchant) != nil:
		return command{}, fmt.Errorf("%w: invalid merchant", errMalformedCommand)
	}
	for attr, want := range map[string]string{AttrCommand: cmd.Op, AttrPaymentID: cmd.PaymentID, AttrMerchant: cmd.Merchant} {
		if v, ok := attrs[attr]; ok && v != want {
			return command{}, fmt.Errorf("%w: attribute %s does not match the body", errMalformedCommand, attr)
		}
	}
	return cmd, nil
}

// commandJSONReason describes a decoding error without quoting the input.
func commandJSONReason(err error) string {
	if se, ok := errors.AsType[*jsonv2.SemanticError](err); ok {
		if errors.Is(se.Err, jsonv2.ErrUnknownName) {
			return "unknown member"
		}
		return "a member has the wrong type"
	}
	return "invalid JSON (syntax, duplicate member, invalid UTF-8 or trailing data)"
}
