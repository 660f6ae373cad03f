package webhook_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/webhook"
)

// The Standard Webhooks test vector, published with the specification's
// reference libraries.
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func vectorHeaders(sig string) http.Header {
	h := http.Header{}
	h.Set(webhook.HeaderID, vectorID)
	h.Set(webhook.HeaderTimestamp, strconv.Itoa(vectorTimestamp))
	h.Set(webhook.HeaderSignature, sig)
	return h
}

func atVector() time.Time { return time.Unix(vectorTimestamp, 0) }

func mustSecret(t testing.TB) webhook.Secret {
	t.Helper()
	s, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustVerifier(t testing.TB, secrets []string, opts ...webhook.VerifierOption) *webhook.Verifier {
	t.Helper()
	v, err := webhook.NewVerifier(secrets, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func signed(t testing.TB, secrets []webhook.Secret, id string, ts time.Time, body []byte) http.Header {
	t.Helper()
	s, err := webhook.NewSigner(secrets...)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	if err := s.SetHeaders(h, id, ts, body); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestSpecTestVector(t *testing.T) {
	sec, err := webhook.ParseSecret(vectorSecret)
	if err != nil {
		t.Fatal(err)
	}
	if sec.Reveal() != vectorSecret {
		t.Errorf("Reveal() does not round-trip the vector's secret")
	}
	s, err := webhook.NewSigner(sec)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Sign(vectorID, atVector(), []byte(vectorBody))
	if err != nil {
		t.Fatal(err)
	}
	if got != vectorSignature {
		t.Fatalf("Sign = %q, want the spec's %q", got, vectorSignature)
	}
	v := mustVerifier(t, []string{vectorSecret}, webhook.WithClock(atVector))
	for _, header := range []string{
		vectorSignature,
		"v1,bm9wZQ== " + vectorSignature, // a stale signature first
		"v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg== " + vectorSignature,
		vectorSignature + " v2,whatever",
	} {
		if err := v.Verify(vectorHeaders(header), []byte(vectorBody)); err != nil {
			t.Errorf("Verify(%q) = %v, want nil", header, err)
		}
	}
}

func TestVerifyRejects(t *testing.T) {
	v := mustVerifier(t, []string{vectorSecret}, webhook.WithClock(atVector), webhook.WithMaxBodyBytes(64))
	body := []byte(vectorBody)
	with := func(name, value string) http.Header {
		h := vectorHeaders(vectorSignature)
		if value == "" {
			h.Del(name)
		} else {
			h.Set(name, value)
		}
		return h
	}
	other := mustSecret(t)
	wrongSecret := signed(t, []webhook.Secret{other}, vectorID, atVector(), body)
	cases := []struct {
		name string
		h    http.Header
		body []byte
		want error
	}{
		{"no id", with(webhook.HeaderID, ""), body, webhook.ErrMissingHeader},
		{"no timestamp", with(webhook.HeaderTimestamp, ""), body, webhook.ErrMissingHeader},
		{"no signature", with(webhook.HeaderSignature, ""), body, webhook.ErrMissingHeader},
		{"id with space", with(webhook.HeaderID, "msg 1"), body, webhook.ErrMalformedHeader},
		{"id too long", with(webhook.HeaderID, strings.Repeat("a", 257)), body, webhook.ErrMalformedHeader},
		{"negative timestamp", with(webhook.HeaderTimestamp, "-1614265330"), body, webhook.ErrMalformedHeader},
		{"float timestamp", with(webhook.HeaderTimestamp, "1614265330.0"), body, webhook.ErrMalformedHeader},
		{"RFC 3339 timestamp", with(webhook.HeaderTimestamp, "2021-02-25T15:02:10Z"), body, webhook.ErrMalformedHeader},
		{"huge timestamp", with(webhook.HeaderTimestamp, "99999999999999999999"), body, webhook.ErrMalformedHeader},
		{"huge signature header", with(webhook.HeaderSignature, strings.Repeat("v1,x ", 1000)), body, webhook.ErrMalformedHeader},
		{"body too large", vectorHeaders(vectorSignature), bytes.Repeat([]byte("x"), 65), webhook.ErrBodyTooLarge},
		{"tampered body", vectorHeaders(vectorSignature), []byte(`{"test": 2432232315}`), webhook.ErrInvalidSignature},
		{"re-serialized body", vectorHeaders(vectorSignature), []byte(`{"test":2432232314}`), webhook.ErrInvalidSignature},
		{"other id", with(webhook.HeaderID, "msg_other"), body, webhook.ErrInvalidSignature},
		{"timestamp shifted by 1 s", with(webhook.HeaderTimestamp, strconv.Itoa(vectorTimestamp+1)), body, webhook.ErrInvalidSignature},
		{"wrong secret", wrongSecret, body, webhook.ErrInvalidSignature},
		{"no v1 entry", with(webhook.HeaderSignature, "v1a,AAAA v2,BBBB"), body, webhook.ErrInvalidSignature},
		{"bare base64", with(webhook.HeaderSignature, strings.TrimPrefix(vectorSignature, "v1,")), body, webhook.ErrInvalidSignature},
		{"not base64", with(webhook.HeaderSignature, "v1,!!!!"), body, webhook.ErrInvalidSignature},
		{"truncated MAC", with(webhook.HeaderSignature, vectorSignature[:20]), body, webhook.ErrInvalidSignature},
		{"MAC with a trailing byte", with(webhook.HeaderSignature, "v1,"+base64.StdEncoding.EncodeToString(append(mustDecode(t, vectorSignature), 0))), body, webhook.ErrInvalidSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := v.Verify(c.h, c.body)
			if !errors.Is(err, c.want) {
				t.Fatalf("Verify = %v, want %v", err, c.want)
			}
		})
	}
}

func mustDecode(t testing.TB, sig string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(sig, "v1,"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVerifyTolerance(t *testing.T) {
	tol := 5 * time.Minute
	for _, c := range []struct {
		name   string
		offset time.Duration // clock minus timestamp
		ok     bool
	}{
		{"exactly on time", 0, true},
		{"at the past edge", tol, true},
		{"one second too old", tol + time.Second, false},
		{"at the future edge", -tol, true},
		{"one second too far ahead", -tol - time.Second, false},
		{"a day old", 24 * time.Hour, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := mustVerifier(t, []string{vectorSecret}, webhook.WithClock(func() time.Time { return atVector().Add(c.offset) }))
			err := v.Verify(vectorHeaders(vectorSignature), []byte(vectorBody))
			if c.ok && err != nil {
				t.Fatalf("Verify = %v, want nil", err)
			}
			if !c.ok && !errors.Is(err, webhook.ErrTimestampOutOfTolerance) {
				t.Fatalf("Verify = %v, want ErrTimestampOutOfTolerance", err)
			}
		})
	}
	// A narrower window applies.
	v := mustVerifier(t, []string{vectorSecret}, webhook.WithTolerance(10*time.Second),
		webhook.WithClock(func() time.Time { return atVector().Add(11 * time.Second) }))
	if err := v.Verify(vectorHeaders(vectorSignature), []byte(vectorBody)); !errors.Is(err, webhook.ErrTimestampOutOfTolerance) {
		t.Fatalf("with a 10 s tolerance, 11 s old: Verify = %v", err)
	}
}

func TestRotationTwoValidSecrets(t *testing.T) {
	oldS, newS := mustSecret(t), mustSecret(t)
	now := time.Now()
	body := []byte(`{"id":"evt_1"}`)
	both := signed(t, []webhook.Secret{newS, oldS}, "evt_1", now, body)
	if n := len(strings.Fields(both.Get(webhook.HeaderSignature))); n != 2 {
		t.Fatalf("a rotating signer sent %d signatures, want 2", n)
	}
	for name, secrets := range map[string][]string{
		"receiver still on the old secret": {oldS.Reveal()},
		"receiver already on the new one":  {newS.Reveal()},
		"receiver holding both":            {newS.Reveal(), oldS.Reveal()},
	} {
		if err := mustVerifier(t, secrets).Verify(both, body); err != nil {
			t.Errorf("%s: Verify = %v", name, err)
		}
	}
	// A receiver holding both accepts a sender on either one alone.
	v := mustVerifier(t, []string{newS.Reveal(), oldS.Reveal()})
	for name, s := range map[string]webhook.Secret{"old": oldS, "new": newS} {
		if err := v.Verify(signed(t, []webhook.Secret{s}, "evt_1", now, body), body); err != nil {
			t.Errorf("sender on the %s secret only: Verify = %v", name, err)
		}
	}
	// And a third secret is refused.
	if err := v.Verify(signed(t, []webhook.Secret{mustSecret(t)}, "evt_1", now, body), body); !errors.Is(err, webhook.ErrInvalidSignature) {
		t.Errorf("unknown secret: Verify = %v, want ErrInvalidSignature", err)
	}
}

func TestReplayRefusedByID(t *testing.T) {
	store := webhook.NewMemorySeenStore(0)
	v := mustVerifier(t, []string{vectorSecret}, webhook.WithClock(atVector), webhook.WithSeenStore(store))
	h, body := vectorHeaders(vectorSignature), []byte(vectorBody)

	// A forged delivery with the id does not use the id up.
	forged := vectorHeaders("v1," + base64.StdEncoding.EncodeToString(make([]byte, 32)))
	if err := v.Verify(forged, body); !errors.Is(err, webhook.ErrInvalidSignature) {
		t.Fatalf("forged: %v", err)
	}
	if err := v.Verify(h, body); err != nil {
		t.Fatalf("first delivery: %v", err)
	}
	if err := v.Verify(h, body); !errors.Is(err, webhook.ErrReplayed) {
		t.Fatalf("replay: Verify = %v, want ErrReplayed", err)
	}
	if err := v.Forget(context.Background(), vectorID); err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(h, body); err != nil {
		t.Fatalf("after Forget (processing failed), the retry: %v", err)
	}
	// Without a store, Verify does not track ids.
	plain := mustVerifier(t, []string{vectorSecret}, webhook.WithClock(atVector))
	for range 2 {
		if err := plain.Verify(h, body); err != nil {
			t.Fatalf("without a SeenStore: %v", err)
		}
	}
}

func TestMemorySeenStore(t *testing.T) {
	ctx := context.Background()
	s := webhook.NewMemorySeenStore(2)
	soon := 80 * time.Millisecond
	for _, c := range []struct {
		id   string
		want bool
	}{{"a", true}, {"a", false}, {"b", true}} {
		got, err := s.Claim(ctx, c.id, soon)
		if err != nil || got != c.want {
			t.Fatalf("Claim(%s) = %v, %v; want %v", c.id, got, err, c.want)
		}
	}
	if _, err := s.Claim(ctx, "c", soon); !errors.Is(err, webhook.ErrSeenStoreFull) {
		t.Fatalf("Claim on a full store = %v, want ErrSeenStoreFull", err)
	}
	time.Sleep(120 * time.Millisecond)
	if n := s.Len(); n != 0 {
		t.Fatalf("after expiry Len = %d, want 0", n)
	}
	if got, err := s.Claim(ctx, "a", time.Minute); err != nil || !got {
		t.Fatalf("Claim after expiry = %v, %v; want true", got, err)
	}
	if got, _ := s.Claim(ctx, "past", -time.Second); !got {
		t.Fatal("a claim already expired must succeed")
	}

	// Concurrent claims of one id: exactly one wins.
	s = webhook.NewMemorySeenStore(0)
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			if ok, err := s.Claim(ctx, "same", time.Minute); err == nil && ok {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d concurrent claims won, want 1", wins.Load())
	}
}

func TestParseSecret(t *testing.T) {
	raw := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	for _, c := range []struct {
		in string
		ok bool
	}{
		{"whsec_" + raw, true},
		{"whsec_" + strings.TrimRight(raw, "="), true},
		{raw, false}, // no prefix
		{"whsec_not*base64", false},
		{"whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 23)), false},
		{"whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 65)), false},
		{"whsec_", false},
		{"", false},
	} {
		s, err := webhook.ParseSecret(c.in)
		if c.ok != (err == nil) {
			t.Errorf("ParseSecret(%q) = %v", c.in, err)
			continue
		}
		if err != nil {
			if !errors.Is(err, webhook.ErrInvalidSecret) {
				t.Errorf("ParseSecret(%q) = %v, want ErrInvalidSecret", c.in, err)
			}
			if body := strings.TrimPrefix(c.in, "whsec_"); len(body) > 3 && strings.Contains(err.Error(), body) {
				t.Errorf("the error %q reveals the secret", err)
			}
			continue
		}
		if s.Reveal() != "whsec_"+raw {
			t.Errorf("Reveal() = %q, want the canonical form", s.Reveal())
		}
	}
	if _, err := webhook.NewVerifier(nil); !errors.Is(err, webhook.ErrInvalidSecret) {
		t.Errorf("NewVerifier(nil) = %v", err)
	}
	if _, err := webhook.NewSigner(); !errors.Is(err, webhook.ErrInvalidSecret) {
		t.Errorf("NewSigner() = %v", err)
	}
	if _, err := webhook.NewSigner(webhook.Secret{}); !errors.Is(err, webhook.ErrInvalidSecret) {
		t.Errorf("NewSigner(zero) = %v", err)
	}
}

func TestSignRefusesAmbiguousIDs(t *testing.T) {
	s, _ := webhook.NewSigner(mustSecret(t))
	for _, id := range []string{"", "evt.1", "evt 1", "evt\n1", strings.Repeat("a", 257), "évt"} {
		if _, err := s.Sign(id, time.Now(), nil); !errors.Is(err, webhook.ErrInvalidID) {
			t.Errorf("Sign(%q) = %v, want ErrInvalidID", id, err)
		}
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	sec := mustSecret(t)
	revealed := sec.Reveal()
	key := strings.TrimPrefix(revealed, webhook.SecretPrefix)
	signer, _ := webhook.NewSigner(sec)
	verifier := mustVerifier(t, []string{revealed})
	ep := webhook.Endpoint{ID: "we_1", Merchant: "m_1", URL: "https://example.com/hook", Secrets: []webhook.Secret{sec}, Enabled: true}

	var out strings.Builder
	for _, x := range []any{sec, &sec, signer, verifier, ep, &ep, []webhook.Secret{sec}} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X"} {
			fmt.Fprintf(&out, verb+"\n", x)
		}
	}
	j, err := json.Marshal(ep)
	if err != nil {
		t.Fatal(err)
	}
	out.Write(j)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("endpoint", "secret", sec, "endpoint", ep)
	slog.New(slog.NewTextHandler(&out, nil)).Info("endpoint", "secret", sec, "endpoint", ep)
	if strings.Contains(out.String(), key) || strings.Contains(out.String(), fmt.Sprintf("%x", mustDecodeKey(t, key))) {
		t.Fatalf("a secret was printed:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "REDACTED") {
		t.Fatalf("expected the redacted placeholder in:\n%s", out.String())
	}
	// The placeholder is not a secret.
	var back webhook.Endpoint
	if err := json.Unmarshal(j, &back); !errors.Is(err, webhook.ErrInvalidSecret) {
		t.Fatalf("unmarshaling a redacted endpoint = %v, want ErrInvalidSecret", err)
	}
}

func mustDecodeKey(t testing.TB, key string) []byte {
	b, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzVerify: Verify never panics, and accepts only a delivery whose
// timestamp is within tolerance and which carries the MAC of its content,
// recomputed here independently.
func FuzzVerify(f *testing.F) {
	f.Add(vectorID, strconv.Itoa(vectorTimestamp), vectorSignature, []byte(vectorBody))
	f.Add(vectorID, strconv.Itoa(vectorTimestamp), "v1,bm9wZQ== "+vectorSignature, []byte(vectorBody))
	f.Add("", "", "", []byte(nil))
	f.Add("msg.1", "0001614265330", "v1,,, v1a,x v1", []byte("{}"))
	f.Add(vectorID, "-1", "v1,"+strings.Repeat("A", 44), []byte(vectorBody))
	key := mustDecodeKey(f, strings.TrimPrefix(vectorSecret, webhook.SecretPrefix))
	v := mustVerifier(f, []string{vectorSecret}, webhook.WithClock(atVector), webhook.WithMaxBodyBytes(1<<12))
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set(webhook.HeaderID, id)
		h.Set(webhook.HeaderTimestamp, ts)
		h.Set(webhook.HeaderSignature, sig)
		err := v.Verify(h, body)
		if err != nil {
			return
		}
		n, perr := strconv.ParseInt(ts, 10, 64)
		if perr != nil || n < vectorTimestamp-300 || n > vectorTimestamp+300 {
			t.Fatalf("accepted timestamp %q outside the tolerance", ts)
		}
		m := hmac.New(sha256.New, key)
		m.Write([]byte(id + "." + ts + "."))
		m.Write(body)
		want := m.Sum(nil)
		for _, e := range strings.Fields(sig) {
			if b, ok := strings.CutPrefix(e, "v1,"); ok {
				if got, err := base64.StdEncoding.DecodeString(b); err == nil && hmac.Equal(got, want) {
					return
				}
			}
		}
		t.Fatalf("accepted id=%q ts=%q sig=%q without a matching MAC", id, ts, sig)
	})
}
