package idempotency_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/payrail/payrail/idempotency"
	"github.com/payrail/payrail/idempotency/memory"
)

// The request structs' zero values are sensible: a zero Now is the current
// time, a zero Lease DefaultLease and a zero TTL DefaultTTL.
func TestRequestZeroValues(t *testing.T) {
	ctx := context.Background()
	s := idempotency.New(memory.New())
	defer s.Close()
	res := begin(t, s, "k")

	before := time.Now()
	if err := s.Extend(ctx, idempotency.ExtendRequest{Merchant: "m", Key: "k", Token: res.Record.Token}); err != nil {
		t.Fatalf("Extend with zero Now and Lease: %v", err)
	}
	rec, err := s.Get(ctx, "m", "k")
	if err != nil {
		t.Fatal(err)
	}
	if lo, hi := before.Add(idempotency.DefaultLease), time.Now().Add(idempotency.DefaultLease); rec.LeaseExpiresAt.Before(lo.Add(-time.Millisecond)) || rec.LeaseExpiresAt.After(hi.Add(time.Millisecond)) {
		t.Fatalf("lease expires at %v, want now+DefaultLease in [%v, %v]", rec.LeaseExpiresAt, lo, hi)
	}

	before = time.Now()
	if err := s.Complete(ctx, idempotency.CompleteRequest{Merchant: "m", Key: "k", Token: res.Record.Token,
		Response: &idempotency.Response{StatusCode: 201}}); err != nil {
		t.Fatalf("Complete with zero Now and TTL: %v", err)
	}
	if rec, err = s.Get(ctx, "m", "k"); err != nil {
		t.Fatal(err)
	}
	if rec.State != idempotency.StateCompleted || rec.Response == nil || rec.Response.StatusCode != 201 {
		t.Fatalf("record after Complete: %+v", rec)
	}
	if lo, hi := before.Add(idempotency.DefaultTTL), time.Now().Add(idempotency.DefaultTTL); rec.ExpiresAt.Before(lo.Add(-time.Millisecond)) || rec.ExpiresAt.After(hi.Add(time.Millisecond)) {
		t.Fatalf("record expires at %v, want now+DefaultTTL in [%v, %v]", rec.ExpiresAt, lo, hi)
	}
}

// The append forms extend the caller's buffer with what Fingerprint and
// NewToken return: a known SHA-256 digest in hex, and 32 hex characters
// that differ from call to call.
func TestAppendFingerprintAndToken(t *testing.T) {
	got := string(idempotency.AppendFingerprint([]byte("id:"), "POST", "/payments", []byte("{}")))
	sum := sha256.Sum256([]byte("POST\x00/payments\x00{}"))
	if exp := "id:" + hex.EncodeToString(sum[:]); got != exp {
		t.Fatalf("AppendFingerprint = %q, want %q", got, exp)
	}
	if fp := idempotency.Fingerprint("POST", "/payments", []byte("{}")); fp != got[3:] || len(fp) != idempotency.FingerprintLength {
		t.Fatalf("Fingerprint = %q, want %q", fp, got[3:])
	}
	a := string(idempotency.AppendToken([]byte("x")))
	b := idempotency.NewToken()
	if len(a) != 1+idempotency.TokenLength || a[0] != 'x' || len(b) != idempotency.TokenLength || a[1:] == b {
		t.Fatalf("AppendToken = %q, NewToken = %q", a, b)
	}
	if _, err := hex.DecodeString(a[1:]); err != nil {
		t.Fatalf("token %q is not hex: %v", a[1:], err)
	}
}
