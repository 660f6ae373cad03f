package snssqs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/payrail/payrail/bus/driver"
)

// received turns an encoded message into what ReceiveMessage returns for it
// with raw delivery.
func received(e encoded, sys map[string]string) sqstypes.Message {
	return sqstypes.Message{MessageId: aws.String("sqs-id"), Body: aws.String(e.body), MessageAttributes: e.sqsAttrs(), Attributes: sys}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	many := map[string]string{}
	for i := range 15 {
		many[fmt.Sprintf("attr%02d", i)] = fmt.Sprint(i)
	}
	for _, c := range []struct {
		name string
		m    driver.Message
	}{
		{"text", driver.Message{ID: "id-1", Key: "k", Body: []byte(`{"amount":1999}`), Attributes: map[string]string{"a": "b"}}},
		{"binary", driver.Message{ID: "id-2", Body: []byte{0, 1, 2, 0xff, 0xfe, 'x'}}},
		{"control characters", driver.Message{ID: "id-3", Body: []byte("a\x00b\x1bc")}},
		{"noncharacter", driver.Message{ID: "id-4", Body: []byte("\uFFFF")}},
		{"empty body", driver.Message{ID: "id-5", Key: "k"}},
		{"15 attributes", driver.Message{ID: "id-6", Body: []byte("x"), Attributes: many}},
		{"awkward attributes", driver.Message{ID: "id-7", Body: []byte("x"), Attributes: map[string]string{
			"empty": "", "AWS.reserved": "v", "amazon.x": "v", ".dot": "v", "dot.": "v", "a..b": "v",
			"spaces in name": "v", "ünïcode": "v", "ctl": "a\x01b", "ok-name_1.x": "ünïcødé ✓", strings.Repeat("n", 257): "long",
		}}},
		{"unicode key and id", driver.Message{ID: "id with spaces ✓", Key: "clé ✓", Body: []byte("x")}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, err := encode(&c.m, nil, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(e.attrs) > MaxAttributes {
				t.Fatalf("%d native attributes, limit %d", len(e.attrs), MaxAttributes)
			}
			for k, v := range e.attrs {
				if !validAttrName(k) || v == "" || !validText([]byte(v)) {
					t.Errorf("native attribute %q=%q is not valid for SQS", k, v)
				}
			}
			if e.body == "" || !validText([]byte(e.body)) {
				t.Errorf("body %q is not valid SQS text", e.body)
			}
			d := decode(received(e, map[string]string{"ApproximateReceiveCount": "3", "SentTimestamp": "1700000000123"}), true)
			if d.msg.ID != c.m.ID || d.msg.Key != c.m.Key || !bytes.Equal(d.msg.Body, c.m.Body) || !maps.Equal(d.msg.Attributes, c.m.Attributes) {
				t.Errorf("decoded %+v, want %+v", d.msg, c.m)
			}
			if d.msg.DeliveryAttempt != 3 || !d.msg.PublishTime.Equal(time.UnixMilli(1700000000123)) {
				t.Errorf("attempt %d, publish time %v", d.msg.DeliveryAttempt, d.msg.PublishTime)
			}
			if d.dead != nil {
				t.Errorf("dead-letter info on a published message: %+v", d.dead)
			}
		})
	}
}

// TestEncodeKeepsNineNativeAttributes checks which attributes stay native:
// the first nine valid ones by name, the rest inside payrail.meta.
func TestEncodeKeepsNineNativeAttributes(t *testing.T) {
	attrs := map[string]string{"empty": "", "spaces in name": "x"}
	for i := range 12 {
		attrs[fmt.Sprintf("a%02d", i)] = "v"
	}
	e, err := encode(&driver.Message{ID: "x", Body: []byte("b"), Attributes: attrs}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		name := fmt.Sprintf("a%02d", i)
		if _, native := e.attrs[name]; native != (i < 9) {
			t.Errorf("%s native = %t", name, native)
		}
	}
	var md meta
	if err := json.Unmarshal([]byte(e.attrs[AttrMeta]), &md); err != nil {
		t.Fatal(err)
	}
	if len(md.Attrs) != 5 || md.Attrs["empty"] != "" || md.Attrs["spaces in name"] != "x" || md.Attrs["a11"] != "v" {
		t.Errorf("packed attributes %v", md.Attrs)
	}
}

func TestEncodeRefusesReservedAttributes(t *testing.T) {
	for _, name := range []string{AttrMeta, AttrDeadLetterReason} {
		if _, err := encode(&driver.Message{ID: "x", Body: []byte("b"), Attributes: map[string]string{name: "v"}}, nil, ""); err == nil || !strings.Contains(err.Error(), "reserved") {
			t.Errorf("attribute %s: %v, want refused", name, err)
		}
	}
}

func TestDeadLetterEncoding(t *testing.T) {
	m := &driver.Message{ID: "id", Key: "k", Body: []byte("b"), Attributes: map[string]string{"tenant": "acme"}, DeliveryAttempt: 3}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, reason := range []string{"failed on final attempt 3: boom", "control\x00character", ""} {
		e, err := encode(m, &deadInfo{At: at, Attempt: 3, Source: "arn:aws:sqs:r:1:q"}, reason)
		if err != nil {
			t.Fatal(err)
		}
		_, native := e.attrs[AttrDeadLetterReason]
		if native != (reason != "" && validText([]byte(reason))) {
			t.Errorf("reason %q native = %t", reason, native)
		}
		d := decode(received(e, nil), true)
		if d.reason != reason || d.dead == nil || !d.dead.At.Equal(at) || d.dead.Attempt != 3 || d.dead.Source != "arn:aws:sqs:r:1:q" {
			t.Errorf("reason %q: decoded reason %q, info %+v", reason, d.reason, d.dead)
		}
		if !maps.Equal(d.msg.Attributes, m.Attributes) || d.msg.Key != "k" || d.msg.ID != "id" {
			t.Errorf("dead letter %+v; want the original attributes, key and ID", d.msg)
		}
	}
}

func TestDecodeForeignMessages(t *testing.T) {
	// Sent by another producer: no payrail.meta. Delivered as it is.
	sm := sqstypes.Message{
		MessageId: aws.String("sqs-1"),
		Body:      aws.String(`{"order":42}`),
		MessageAttributes: map[string]sqstypes.MessageAttributeValue{
			"s": {DataType: aws.String("String"), StringValue: aws.String("v")},
			"n": {DataType: aws.String("Number"), StringValue: aws.String("12.5")},
			"b": {DataType: aws.String("Binary"), BinaryValue: []byte{1, 2, 3}},
		},
		Attributes: map[string]string{"MessageGroupId": "group-7"},
	}
	d := decode(sm, true)
	want := map[string]string{"s": "v", "n": "12.5", "b": "AQID"}
	if d.msg.ID != "sqs-1" || d.msg.Key != "group-7" || string(d.msg.Body) != `{"order":42}` || !maps.Equal(d.msg.Attributes, want) || d.msg.DeliveryAttempt != 1 {
		t.Errorf("foreign message decoded as %+v", d.msg)
	}

	// Metadata it cannot read: kept, body untouched.
	sm = sqstypes.Message{MessageId: aws.String("sqs-2"), Body: aws.String("QUJD"), MessageAttributes: map[string]sqstypes.MessageAttributeValue{
		AttrMeta: {DataType: aws.String("String"), StringValue: aws.String(`{"v":99,"enc":"base64"}`)},
	}}
	d = decode(sm, true)
	if string(d.msg.Body) != "QUJD" || d.msg.Attributes[AttrMeta] != `{"v":99,"enc":"base64"}` {
		t.Errorf("unknown metadata: decoded %+v", d.msg)
	}
	// A corrupt base64 body: delivered as it is, with the metadata.
	sm.MessageAttributes[AttrMeta] = sqstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(`{"v":1,"enc":"base64","id":"x"}`)}
	sm.Body = aws.String("not base64!")
	d = decode(sm, true)
	if string(d.msg.Body) != "not base64!" || d.msg.Attributes[AttrMeta] == "" {
		t.Errorf("corrupt body: decoded %+v", d.msg)
	}
}

func TestDecodeSNSEnvelope(t *testing.T) {
	e, err := encode(&driver.Message{ID: "id-1", Key: "k", Body: []byte{0xff, 0}, Attributes: map[string]string{"tenant": "acme", "empty": ""}}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	envAttrs := map[string]any{}
	for k, v := range e.attrs {
		envAttrs[k] = map[string]string{"Type": "String", "Value": v}
	}
	env, _ := json.Marshal(map[string]any{
		"Type": "Notification", "MessageId": "sns-1", "TopicArn": "arn:aws:sns:us-east-1:1:t",
		"Message": e.body, "Timestamp": "2026-01-02T03:04:05.678Z", "MessageAttributes": envAttrs,
	})
	sm := sqstypes.Message{MessageId: aws.String("sqs-1"), Body: aws.String(string(env)), Attributes: map[string]string{"ApproximateReceiveCount": "2"}}
	d := decode(sm, true)
	if d.msg.ID != "id-1" || d.msg.Key != "k" || !bytes.Equal(d.msg.Body, []byte{0xff, 0}) || d.msg.Attributes["tenant"] != "acme" || len(d.msg.Attributes) != 2 {
		t.Errorf("unwrapped %+v", d.msg)
	}
	if want := time.Date(2026, 1, 2, 3, 4, 5, 678e6, time.UTC); !d.msg.PublishTime.Equal(want) || d.msg.DeliveryAttempt != 2 {
		t.Errorf("publish time %v attempt %d", d.msg.PublishTime, d.msg.DeliveryAttempt)
	}
	// raw=true: never unwrapped.
	if d := decode(sm, false); string(d.msg.Body) != string(env) || d.msg.ID != "sqs-1" {
		t.Errorf("raw=true unwrapped the envelope: %+v", d.msg)
	}
	// A foreign SNS message (no payrail metadata): unwrapped, SNS message ID.
	env, _ = json.Marshal(map[string]any{"Type": "Notification", "MessageId": "sns-2", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": "hello",
		"MessageAttributes": map[string]any{"n": map[string]string{"Type": "Number", "Value": "3"}}})
	d = decode(sqstypes.Message{MessageId: aws.String("sqs-2"), Body: aws.String(string(env))}, true)
	if d.msg.ID != "sns-2" || string(d.msg.Body) != "hello" || d.msg.Attributes["n"] != "3" {
		t.Errorf("foreign envelope: %+v", d.msg)
	}
	// JSON that is not an envelope stays as it is.
	d = decode(sqstypes.Message{MessageId: aws.String("sqs-3"), Body: aws.String(`{"Type":"Other","Message":"x"}`)}, true)
	if string(d.msg.Body) != `{"Type":"Other","Message":"x"}` {
		t.Errorf("non-envelope JSON changed: %q", d.msg.Body)
	}
}

func TestFIFOIDs(t *testing.T) {
	if got := fifoID("order-1001"); got != "order-1001" {
		t.Errorf("valid ID changed: %q", got)
	}
	long := strings.Repeat("x", 129)
	for _, s := range []string{"with space", "ünï", long, "", "h-looks-hashed"} {
		got := fifoID(s)
		if got == s || len(got) > maxIDLength || !strings.HasPrefix(got, hashedPrefix) || got != fifoID(s) {
			t.Errorf("fifoID(%q) = %q; want a stable hash", s, got)
		}
	}
	if fifoID("a b") == fifoID("a  b") {
		t.Error("different keys share a group")
	}
	if g := groupFor(&driver.Message{ID: "m1"}); g == groupFor(&driver.Message{ID: "m2"}) {
		t.Errorf("keyless messages share the group %q", g)
	}
}

func TestValidText(t *testing.T) {
	for s, want := range map[string]bool{
		"plain": true, "tab\tnl\ncr\r": true, "ünï ✓ 日本語 😀": true, "\x00": false, "\x1f": false,
		"\uFFFE": false, "\uFFFF": false, "\uFFFD": true, string([]byte{0xc3, 0x28}): false, "\U0010FFFF": true,
	} {
		if got := validText([]byte(s)); got != want {
			t.Errorf("validText(%q) = %t, want %t", s, got, want)
		}
	}
}
