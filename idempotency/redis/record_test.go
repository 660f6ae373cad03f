package redis

import (
	"maps"
	"testing"
	"time"

	"github.com/payrail/payrail/idempotency/driver"
)

// FuzzDecode: any value decodes to a record or errCorrupt, never a panic,
// and a record that decodes survives a Begin claim's encoding unchanged.
func FuzzDecode(f *testing.F) {
	now := time.UnixMilli(1_796_416_756_011)
	claim := encodeClaim(&driver.BeginRequest{Merchant: "m:1", Key: "k", Fingerprint: "f\x00p", Token: "t",
		ResourceID: "pay_1", Lease: time.Minute, TTL: time.Hour, Now: now})
	f.Add(string(claim))
	f.Add("c0:13:179642035601113:17964168160112:fp5:pay_113:17964167560111:m1:k3:2019:4:Etag1:x3:abc")
	f.Add("")
	f.Add("i")
	f.Add("i-1:")
	f.Add("i99999999999999999999:x")
	f.Fuzz(func(t *testing.T, v string) {
		rec, err := decode(v)
		if err != nil {
			if err != errCorrupt {
				t.Fatalf("decode(%q): %v, want errCorrupt", v, err)
			}
			return
		}
		if rec.State != driver.StateInProgress && rec.State != driver.StateCompleted {
			t.Fatalf("decode(%q): state %q", v, rec.State)
		}
	})
}

func TestRecordEncoding(t *testing.T) {
	now := time.UnixMilli(1_796_416_756_011)
	r := &driver.BeginRequest{Merchant: "m:1%", Key: "k:1", Fingerprint: "f\x00p\xff", Token: "tok",
		ResourceID: "", Lease: time.Minute, TTL: time.Hour, Now: now}
	rec, err := decode(string(encodeClaim(r)))
	if err != nil {
		t.Fatal(err)
	}
	want := driver.Record{Merchant: r.Merchant, Key: r.Key, Fingerprint: r.Fingerprint, State: driver.StateInProgress,
		Token: r.Token, LeaseExpiresAt: now.Add(time.Minute), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if rec.Merchant != want.Merchant || rec.Key != want.Key || rec.Fingerprint != want.Fingerprint || rec.State != want.State ||
		rec.Token != want.Token || rec.ResourceID != "" || !rec.LeaseExpiresAt.Equal(want.LeaseExpiresAt) ||
		!rec.CreatedAt.Equal(want.CreatedAt) || !rec.ExpiresAt.Equal(want.ExpiresAt) || rec.Response != nil {
		t.Fatalf("decoded %+v, want %+v", rec, want)
	}
	done, err := decode("c0:13:179642035601113:17964168160112:fp5:pay_113:17964167560111:m1:k3:2019:4:Etag1:x3:abc")
	if err != nil {
		t.Fatal(err)
	}
	if done.State != driver.StateCompleted || done.Response.StatusCode != 201 || string(done.Response.Body) != "abc" ||
		!maps.Equal(done.Response.Header, map[string]string{"Etag": "x"}) || done.ResourceID != "pay_1" {
		t.Fatalf("completed record decoded as %+v %+v", done, done.Response)
	}
	for _, bad := range []string{"x1:t", "i1:t", "c0:13:1796420356011", "i1:t3:abc"} {
		if _, err := decode(bad); err != errCorrupt {
			t.Errorf("decode(%q): %v, want errCorrupt", bad, err)
		}
	}
}
