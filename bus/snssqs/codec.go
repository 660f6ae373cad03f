package snssqs

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/driver"
)

// Wire format: see "Message format" in the package documentation.

const (
	// AttrMeta is the message attribute holding the driver's metadata: a
	// JSON object with the message ID, key, body encoding, the attributes
	// that did not fit as native message attributes and, on dead letters,
	// the dead-lettering details. Publishing an attribute with this name is
	// refused.
	AttrMeta = "payrail.meta"
	// AttrDeadLetterReason is the native message attribute carrying the
	// reason of a message dead-lettered by Subscription.DeadLetter (the
	// portable bus.AttrDeadLetterReason). Publishing an attribute with this
	// name is refused.
	AttrDeadLetterReason = bus.AttrDeadLetterReason

	// MaxAttributes is the number of message attributes SQS and SNS accept
	// on one message.
	MaxAttributes = 10
	// MaxSNSMessageBytes is the largest SNS message: body plus attribute
	// names, types and values.
	MaxSNSMessageBytes = 256 << 10
	// MaxSQSMessageBytes is the largest SQS message (and SendMessageBatch
	// request), counted the same way.
	MaxSQSMessageBytes = 1 << 20

	metaVersion  = 1
	encBase64    = "base64"
	encEmpty     = "empty"
	emptyBody    = "(empty)"
	stringType   = "String"
	maxIDLength  = 128
	hashedPrefix = "h-"
)

// meta is the JSON value of AttrMeta.
type meta struct {
	V     int               `json:"v"`
	ID    string            `json:"id,omitempty"`
	Key   string            `json:"key,omitempty"`
	Enc   string            `json:"enc,omitempty"`
	Attrs map[string]string `json:"attrs,omitempty"`
	DLQ   *deadInfo         `json:"dlq,omitempty"`
}

// deadInfo records a dead-lettering by Subscription.DeadLetter.
type deadInfo struct {
	Reason  string    `json:"reason,omitempty"` // when it cannot be a native attribute
	At      time.Time `json:"at"`
	Attempt int       `json:"attempt,omitempty"`
	Source  string    `json:"source,omitempty"` // the queue's ARN
}

// encoded is a message ready for SendMessage / Publish.
type encoded struct {
	body  string
	attrs map[string]string // native String attributes, AttrMeta included
	size  int               // as SQS and SNS count it
}

// reservedAttr reports whether a published attribute name is the driver's.
func reservedAttr(name string) bool { return name == AttrMeta || name == AttrDeadLetterReason }

// encode turns m into a body and at most MaxAttributes native attributes.
// dl, reason are set when m is being dead-lettered.
func encode(m *driver.Message, dl *deadInfo, reason string) (encoded, error) {
	md := meta{V: metaVersion, ID: m.ID, Key: m.Key, DLQ: dl}
	var e encoded
	switch {
	case len(m.Body) == 0:
		e.body, md.Enc = emptyBody, encEmpty
	case validText(m.Body):
		e.body = string(m.Body)
	default:
		e.body, md.Enc = base64.StdEncoding.EncodeToString(m.Body), encBase64
	}
	e.attrs = make(map[string]string, min(len(m.Attributes)+2, MaxAttributes))
	slots := MaxAttributes - 1 // AttrMeta
	if dl != nil {
		if reason != "" && validText([]byte(reason)) {
			e.attrs[AttrDeadLetterReason] = reason
			slots--
		} else {
			dl.Reason = reason
		}
	}
	names := slices.Sorted(maps.Keys(m.Attributes))
	for _, name := range names {
		v := m.Attributes[name]
		if dl == nil && reservedAttr(name) {
			return encoded{}, fmt.Errorf("snssqs: attribute %q is reserved by the driver", name)
		}
		if slots > 0 && validAttrName(name) && v != "" && validText([]byte(v)) {
			e.attrs[name] = v
			slots--
			continue
		}
		if md.Attrs == nil {
			md.Attrs = map[string]string{}
		}
		md.Attrs[name] = v
	}
	mj, err := json.Marshal(md)
	if err != nil {
		return encoded{}, fmt.Errorf("snssqs: encoding metadata: %w", err)
	}
	e.attrs[AttrMeta] = string(mj)
	e.size = len(e.body)
	for k, v := range e.attrs {
		e.size += len(k) + len(stringType) + len(v)
	}
	return e, nil
}

// sqsAttrs converts native attributes for the SQS API.
func (e encoded) sqsAttrs() map[string]sqstypes.MessageAttributeValue {
	out := make(map[string]sqstypes.MessageAttributeValue, len(e.attrs))
	for k, v := range e.attrs {
		out[k] = sqstypes.MessageAttributeValue{DataType: aws.String(stringType), StringValue: aws.String(v)}
	}
	return out
}

// decoded is a received SQS message in the portable form.
type decoded struct {
	msg    driver.Message
	dead   *deadInfo // set on messages dead-lettered by this driver
	reason string    // their reason
}

// snsEnvelope is the JSON body SNS delivers to SQS without raw delivery.
type snsEnvelope struct {
	Type              string
	MessageID         string `json:"MessageId"`
	TopicArn          string
	Message           *string
	Timestamp         string
	MessageAttributes map[string]struct{ Type, Value string }
}

// decode turns a received SQS message into a driver message. It never
// fails: a body or metadata it cannot decode is delivered as it is, with
// every attribute, so that nothing is lost.
func decode(sm sqstypes.Message, unwrap bool) decoded {
	var d decoded
	body := aws.ToString(sm.Body)
	attrs := make(map[string]string, len(sm.MessageAttributes))
	for k, v := range sm.MessageAttributes {
		attrs[k] = attrString(aws.ToString(v.DataType), v.StringValue, v.BinaryValue)
	}
	sys := sm.Attributes
	d.msg.ID = aws.ToString(sm.MessageId)
	d.msg.Key = sys[string(sqstypes.MessageSystemAttributeNameMessageGroupId)]
	d.msg.DeliveryAttempt = 1
	if n, err := strconv.Atoi(sys[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)]); err == nil && n > 0 {
		d.msg.DeliveryAttempt = n
	}
	if ms, err := strconv.ParseInt(sys[string(sqstypes.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil {
		d.msg.PublishTime = time.UnixMilli(ms)
	}
	if _, ok := attrs[AttrMeta]; !ok && unwrap && strings.HasPrefix(body, "{") {
		var env snsEnvelope
		if json.Unmarshal([]byte(body), &env) == nil && env.Type == "Notification" && env.TopicArn != "" && env.Message != nil {
			body = *env.Message
			if env.MessageID != "" {
				d.msg.ID = env.MessageID
			}
			if t, err := time.Parse(time.RFC3339Nano, env.Timestamp); err == nil {
				d.msg.PublishTime = t
			}
			for k, v := range env.MessageAttributes {
				attrs[k] = v.Value // String and Number as they are, Binary in base64
			}
		}
	}
	d.msg.Body = []byte(body)
	d.msg.Attributes = attrs
	mj, ok := attrs[AttrMeta]
	if !ok {
		d.msg.Attributes = nilIfEmpty(attrs)
		return d // not published by this driver: delivered as it is
	}
	var md meta
	if err := json.Unmarshal([]byte(mj), &md); err != nil || md.V != metaVersion {
		return d // unknown metadata: kept as an attribute
	}
	switch md.Enc {
	case "":
	case encEmpty:
		d.msg.Body = nil
	case encBase64:
		b, err := base64.StdEncoding.DecodeString(body)
		if err != nil {
			return d
		}
		d.msg.Body = b
	default:
		return d
	}
	delete(attrs, AttrMeta)
	maps.Copy(attrs, md.Attrs)
	if md.ID != "" {
		d.msg.ID = md.ID
	}
	d.msg.Key = md.Key
	if md.DLQ != nil {
		d.dead = md.DLQ
		d.reason = md.DLQ.Reason
		if r, ok := attrs[AttrDeadLetterReason]; ok {
			d.reason = r
			delete(attrs, AttrDeadLetterReason)
		}
	}
	d.msg.Attributes = nilIfEmpty(attrs)
	return d
}

func nilIfEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

// attrString renders a received attribute as a string: String and Number
// (and custom String.x / Number.x types) by value, Binary in base64.
func attrString(dataType string, s *string, b []byte) string {
	if strings.HasPrefix(dataType, "Binary") {
		return base64.StdEncoding.EncodeToString(b)
	}
	return aws.ToString(s)
}

// validText reports whether b is valid UTF-8 made only of the characters
// SQS accepts in bodies and attribute values: #x9 | #xA | #xD | #x20 to
// #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF.
func validText(b []byte) bool {
	for len(b) > 0 {
		c := b[0]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
				return false
			}
			b = b[1:]
			continue
		}
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n <= 1 {
			return false
		}
		if r == 0xFFFE || r == 0xFFFF {
			return false
		}
		b = b[n:]
	}
	return true
}

// validAttrName reports whether name can be a native SQS/SNS message
// attribute name: 1-256 characters among A-Z a-z 0-9 _ - ., not starting
// or ending with a period, without two periods in a row, not starting with
// AWS. or Amazon. (any case).
func validAttrName(name string) bool {
	if name == "" || len(name) > 256 || name[0] == '.' || name[len(name)-1] == '.' || strings.Contains(name, "..") {
		return false
	}
	low := strings.ToLower(name)
	if strings.HasPrefix(low, "aws.") || strings.HasPrefix(low, "amazon.") {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// fifoID turns s into a valid MessageGroupId / MessageDeduplicationId
// (1-128 printable ASCII characters, no space): s itself when valid, and
// otherwise a hash of it, so that equal inputs give equal IDs.
func fifoID(s string) string {
	ok := s != "" && len(s) <= maxIDLength && !strings.HasPrefix(s, hashedPrefix)
	for i := 0; ok && i < len(s); i++ {
		ok = s[i] > ' ' && s[i] < 0x7f
	}
	if ok {
		return s
	}
	h := sha256.Sum256([]byte(s))
	return hashedPrefix + hex.EncodeToString(h[:])
}

// groupFor is the MessageGroupId of a message on a FIFO queue or topic:
// its key, or for a message without a key its ID (keyless messages are not
// ordered with respect to each other).
func groupFor(m *driver.Message) string {
	if m.Key != "" {
		return fifoID(m.Key)
	}
	return fifoID("id:" + m.ID)
}

// dedupFor derives a deduplication ID from parts (hashed when needed).
func dedupFor(parts ...string) string {
	if len(parts) == 1 {
		return fifoID(parts[0])
	}
	return fifoID(strings.Join(parts, "\x00"))
}
