package payments

import (
	"bytes"
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
	cmd, ok := decodeCanonical(body)
	if !ok {
		if len(body) == 0 || body[0] != '{' {
			return command{}, fmt.Errorf("%w: the body is not a JSON object", errMalformedCommand)
		}
		var v command // on the heap (the decoder takes its address) only on this path
		if err := jsonv2.Unmarshal(body, &v, jsonv2.RejectUnknownMembers(true)); err != nil {
			return command{}, fmt.Errorf("%w: %s", errMalformedCommand, commandJSONReason(err))
		}
		cmd = v
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
	for _, a := range [...]struct{ attr, want string }{{AttrCommand, cmd.Op}, {AttrPaymentID, cmd.PaymentID}, {AttrMerchant, cmd.Merchant}} {
		if v, ok := attrs[a.attr]; ok && v != a.want {
			return command{}, fmt.Errorf("%w: attribute %s does not match the body", errMalformedCommand, a.attr)
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

// The canonical form of a command, as encodeCommand writes it for an
// operation and identifiers that need no escaping (letters, digits, '.',
// '_' and '-', as checkID wants them): the members in this order, without
// white space.
const (
	canonOp       = `{"v":1,"op":"`
	canonID       = `","payment_id":"`
	canonMerchant = `","merchant":"`
	canonEnd      = `"}`
)

// encodeCommand is the body of a command. Its values are escaped as JSON
// strings, so the body is JSON whatever they hold; identifiers that
// checkID accepts need no escaping, and give the canonical form.
func encodeCommand(op, paymentID, merchant string) []byte {
	b := make([]byte, 0, len(canonOp)+len(op)+len(canonID)+len(paymentID)+len(canonMerchant)+len(merchant)+len(canonEnd))
	b = appendString(append(b, canonOp[:len(canonOp)-1]...), op)
	b = appendString(append(b, canonID[1:len(canonID)-1]...), paymentID)
	b = appendString(append(b, canonMerchant[1:len(canonMerchant)-1]...), merchant)
	return append(b, '}')
}

// decodeCanonical reads a body in the canonical form without reflection;
// ok is false for any other text, which decodeCommand hands to the JSON
// decoder as before. A body it accepts is a JSON object with exactly the
// known members, once each and in their exact case, which the strict
// decoder would read into the same command (FuzzDecodeCommand checks it).
func decodeCanonical(body []byte) (cmd command, ok bool) {
	rest, ok := bytes.CutPrefix(body, []byte(canonOp))
	if !ok {
		return command{}, false
	}
	op, rest, ok := cutSlug(rest, canonID)
	if !ok {
		return command{}, false
	}
	id, rest, ok := cutSlug(rest, canonMerchant)
	if !ok {
		return command{}, false
	}
	merchant, rest, ok := cutSlug(rest, canonEnd)
	if !ok || len(rest) != 0 {
		return command{}, false
	}
	cmd = command{Version: commandVersion, PaymentID: string(id), Merchant: string(merchant)}
	switch string(op) { // no allocation: the known operations' constants
	case opAuthorize:
		cmd.Op = opAuthorize
	case opEvents:
		cmd.Op = opEvents
	default:
		cmd.Op = string(op) // refused by decodeCommand
	}
	return cmd, true
}

// cutSlug returns the non-empty run of identifier characters (letters,
// digits, '.', '_', '-') that b starts with, which sep must follow, and
// what follows sep.
func cutSlug(b []byte, sep string) (slug, rest []byte, ok bool) {
	i := 0
	for i < len(b) && isSlugByte(b[i]) {
		i++
	}
	if i == 0 || !bytes.HasPrefix(b[i:], []byte(sep)) {
		return nil, nil, false
	}
	return b[:i], b[i+len(sep):], true
}
