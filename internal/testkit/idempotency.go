package testkit

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/idempotency/driver"
)

// IdempotencyHarness describes the idempotency store under test to
// RunIdempotencyConformance and BenchmarkIdempotencyStore.
type IdempotencyHarness struct {
	// Open returns a new client of the store under test; the suite closes
	// it. With SharedClients, every client opened during one suite run reads
	// and writes the same records (one server namespace), each with its own
	// connections; without it, each call returns an independent empty store.
	Open func(ctx context.Context, t testing.TB) (driver.Store, error)
	// SharedClients declares that clients share records. Stores that live
	// in one process (memory) leave it false: the suite then runs its
	// multi-client cases on a single client from many goroutines.
	SharedClients bool
	// RoundTrips, if not nil, returns how many requests the client has sent
	// to its server so far (a pipeline or a script counts once). The suite
	// then checks the driver contract: at most two round trips for a request
	// that executes (Begin + Complete) and one for a replay.
	RoundTrips func(s driver.Store) int64
}

// Sizes and counts used by the suite.
const (
	// IdempotencyLargeBody is the body size of the large-body case.
	IdempotencyLargeBody = 1<<20 + 17
	// IdempotencyConcurrentBegins is how many Begins of one key race in the
	// concurrency case, spread over IdempotencyClients clients.
	IdempotencyConcurrentBegins = 500
	// IdempotencyClients is the number of independent clients racing.
	IdempotencyClients = 4
)

// idemTimeStep is the resolution stores must keep for times (lease and
// record expiry); the suite's clock readings are multiples of it.
const idemTimeStep = time.Millisecond

// RunIdempotencyConformance runs the idempotency store conformance suite
// against h. Every case uses its own merchants, so a shared server
// namespace may hold other records. Cases for optional interfaces
// (driver.Admin, driver.Pinger) run when the store implements them and are
// reported as such in the log.
func RunIdempotencyConformance(t *testing.T, h IdempotencyHarness) {
	t.Helper()
	if h.Open == nil {
		t.Fatal("testkit: IdempotencyHarness.Open is nil")
	}
	run := newIdemRun(h)
	cases := []struct {
		name string
		fn   func(t *testing.T, r *idemRun)
	}{
		{"BeginCompleteReplay", idemBeginCompleteReplay},
		{"RecordFields", idemRecordFields},
		{"FingerprintMismatch", idemFingerprintMismatch},
		{"InProgressConflict", idemInProgressConflict},
		{"LeaseExpiryTakeover", idemLeaseExpiryTakeover},
		{"ExtendKeepsLease", idemExtendKeepsLease},
		{"Release", idemRelease},
		{"WrongTokenRefused", idemWrongToken},
		{"TTLExpiry", idemTTLExpiry},
		{"InProgressRetentionExpiry", idemInProgressRetention},
		{"ConcurrentBeginsOneWinner", idemConcurrentBegins},
		{"ConcurrentTakeoverOneWinner", idemConcurrentTakeover},
		{"LargeBody", idemLargeBody},
		{"BinaryAndEmptyParts", idemBinaryParts},
		{"MerchantIsolation", idemMerchantIsolation},
		{"KeyCharacters", idemKeyCharacters},
		{"HostileStrings", idemHostileStrings},
		{"ContextCancellation", idemContextCancellation},
		{"RoundTrips", idemRoundTrips},
		{"Admin", idemAdmin},
		{"Ping", idemPing},
		{"ClosedStore", idemClosed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, run) })
	}
}

// idemRun is the state of one suite run.
type idemRun struct {
	h    IdempotencyHarness
	base time.Time // a clock reading aligned to idemTimeStep
	id   string    // unique per run, part of every merchant name
	seq  atomic.Int64
}

func newIdemRun(h IdempotencyHarness) *idemRun {
	return &idemRun{h: h, base: time.Now().Truncate(idemTimeStep), id: randomID(6)}
}

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// merchant returns a merchant name unique to this run and call.
func (r *idemRun) merchant(t testing.TB) string {
	return fmt.Sprintf("m-%s-%05d", r.id, r.seq.Add(1))
}

// open opens a client and closes it at the end of the test.
func (r *idemRun) open(t testing.TB) driver.Store {
	t.Helper()
	s, err := r.h.Open(context.Background(), t)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// clients returns n clients sharing records: n independent ones with
// SharedClients, otherwise n references to one store.
func (r *idemRun) clients(t testing.TB, n int) []driver.Store {
	t.Helper()
	out := make([]driver.Store, n)
	for i := range out {
		if i == 0 || r.h.SharedClients {
			out[i] = r.open(t)
		} else {
			out[i] = out[0]
		}
	}
	return out
}

func (r *idemRun) at(d time.Duration) time.Time { return r.base.Add(d) }

func idemReq(merchant, key, fp, token, resource string, now time.Time) *driver.BeginRequest {
	return &driver.BeginRequest{
		Merchant: merchant, Key: key, Fingerprint: fp, Token: token, ResourceID: resource,
		Lease: 10 * time.Second, TTL: time.Hour, Now: now,
	}
}

func begin(t testing.TB, s driver.Store, req *driver.BeginRequest, want driver.Outcome) *driver.BeginResult {
	t.Helper()
	res, err := s.Begin(context.Background(), req)
	if err != nil {
		t.Fatalf("Begin(%s/%s, token %s): %v", req.Merchant, req.Key, req.Token, err)
	}
	if res == nil || res.Record == nil {
		t.Fatalf("Begin(%s/%s): nil result or record", req.Merchant, req.Key)
	}
	if res.Outcome != want {
		t.Fatalf("Begin(%s/%s, token %s) = %v, want %v (record: state %s, token %q)",
			req.Merchant, req.Key, req.Token, res.Outcome, want, res.Record.State, res.Record.Token)
	}
	return res
}

func complete(t testing.TB, s driver.Store, m, k, token string, resp *driver.Response, now time.Time, ttl time.Duration) {
	t.Helper()
	if err := s.Complete(context.Background(), driver.CompleteRequest{Merchant: m, Key: k, Token: token, Response: resp, Now: now, TTL: ttl}); err != nil {
		t.Fatalf("Complete(%s/%s, token %s): %v", m, k, token, err)
	}
}

func wantErr(t testing.TB, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: error %v, want errors.Is(err, %v)", what, err, target)
	}
}

func sameTime(t testing.TB, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) {
		t.Errorf("%s = %s, want %s", what, got.UTC().Format(time.RFC3339Nano), want.UTC().Format(time.RFC3339Nano))
	}
}

func sameResponse(t testing.TB, what string, got, want *driver.Response) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: nil response, want status %d", what, want.StatusCode)
	}
	if got.StatusCode != want.StatusCode {
		t.Errorf("%s: status %d, want %d", what, got.StatusCode, want.StatusCode)
	}
	if !bytes.Equal(got.Body, want.Body) {
		t.Errorf("%s: body differs (%d bytes, want %d)", what, len(got.Body), len(want.Body))
	}
	if len(got.Header) != len(want.Header) || !maps.Equal(got.Header, want.Header) {
		t.Errorf("%s: header %v, want %v", what, got.Header, want.Header)
	}
}

func sampleResponse(id string) *driver.Response {
	return &driver.Response{
		StatusCode: 201,
		Header:     map[string]string{"Content-Type": "application/json", "Location": "/payments/" + id},
		Body:       []byte(`{"id":"` + id + `","status":"captured","amount":1999,"currency":"EUR"}`),
	}
}

func idemBeginCompleteReplay(t *testing.T, r *idemRun) {
	s := r.open(t)
	m := r.merchant(t)
	now := r.at(0)
	res := begin(t, s, idemReq(m, "order-1", "fp1", "tok-a", "pay_1", now), driver.Acquired)
	if res.Record.Token != "tok-a" || res.Record.State != driver.StateInProgress {
		t.Fatalf("acquired record: token %q state %s", res.Record.Token, res.Record.State)
	}
	resp := sampleResponse("pay_1")
	complete(t, s, m, "order-1", "tok-a", resp, r.at(time.Second), time.Hour)

	for i := range 3 { // every retry replays, whatever its token
		rep := begin(t, s, idemReq(m, "order-1", "fp1", fmt.Sprintf("tok-r%d", i), "pay_other", r.at(2*time.Second)), driver.Replay)
		sameResponse(t, "replay", rep.Record.Response, resp)
		if rep.Record.State != driver.StateCompleted {
			t.Errorf("replay state %s, want completed", rep.Record.State)
		}
		if rep.Record.ResourceID != "pay_1" {
			t.Errorf("replay ResourceID %q, want pay_1", rep.Record.ResourceID)
		}
		if rep.Record.Token != "" {
			t.Errorf("completed record keeps token %q, want none", rep.Record.Token)
		}
		if rep.Record.Fingerprint != "fp1" {
			t.Errorf("replay fingerprint %q", rep.Record.Fingerprint)
		}
		sameTime(t, "completed ExpiresAt", rep.Record.ExpiresAt, r.at(time.Second+time.Hour))
	}
	// A completed record can be neither completed again nor released.
	wantErr(t, "Complete twice", s.Complete(context.Background(), driver.CompleteRequest{Merchant: m, Key: "order-1", Token: "tok-a", Response: resp, Now: r.at(3 * time.Second), TTL: time.Hour}), driver.ErrLeaseLost)
	wantErr(t, "Release completed", s.Release(context.Background(), m, "order-1", "tok-a"), driver.ErrLeaseLost)
	wantErr(t, "Extend completed", s.Extend(context.Background(), driver.ExtendRequest{Merchant: m, Key: "order-1", Token: "tok-a", Now: r.at(3 * time.Second), Lease: time.Minute}), driver.ErrLeaseLost)
	// Operations on a key never begun.
	wantErr(t, "Complete unknown key", s.Complete(context.Background(), driver.CompleteRequest{Merchant: m, Key: "never", Token: "tok-a", Response: resp, Now: now, TTL: time.Hour}), driver.ErrLeaseLost)
	wantErr(t, "Extend unknown key", s.Extend(context.Background(), driver.ExtendRequest{Merchant: m, Key: "never", Token: "tok-a", Now: now, Lease: time.Minute}), driver.ErrLeaseLost)
	wantErr(t, "Release unknown key", s.Release(context.Background(), m, "never", "tok-a"), driver.ErrLeaseLost)
}

func idemRecordFields(t *testing.T, r *idemRun) {
	s := r.open(t)
	m := r.merchant(t)
	now := r.at(5 * time.Millisecond)
	req := &driver.BeginRequest{Merchant: m, Key: "k", Fingerprint: "fp", Token: "tok", ResourceID: "pay_9",
		Lease: 1500 * time.Millisecond, TTL: 90 * time.Minute, Now: now}
	rec := begin(t, s, req, driver.Acquired).Record
	if rec.Merchant != m || rec.Key != "k" || rec.Fingerprint != "fp" || rec.Token != "tok" || rec.ResourceID != "pay_9" {
		t.Errorf("record %+v does not echo the request", rec)
	}
	sameTime(t, "CreatedAt", rec.CreatedAt, now)
	sameTime(t, "LeaseExpiresAt", rec.LeaseExpiresAt, now.Add(1500*time.Millisecond))
	sameTime(t, "ExpiresAt", rec.ExpiresAt, now.Add(90*time.Minute))
	if rec.Response != nil {
		t.Errorf("in-progress record has a response")
	}
	// The in-progress record, as another request sees it.
	other := begin(t, s, idemReq(m, "k", "fp", "tok2", "pay_x", now.Add(time.Second)), driver.InProgress).Record
	if other.Token != "tok" || other.ResourceID != "pay_9" || other.State != driver.StateInProgress {
		t.Errorf("in-progress record seen as %+v", other)
	}
	sameTime(t, "seen LeaseExpiresAt", other.LeaseExpiresAt, now.Add(1500*time.Millisecond))
	sameTime(t, "seen CreatedAt", other.CreatedAt, now)
}

func idemFingerprintMismatch(t *testing.T, r *idemRun) {
	s := r.open(t)
	m := r.merchant(t)
	begin(t, s, idemReq(m, "k", "fp-a", "t1", "pay_1", r.at(0)), driver.Acquired)
	// In progress, live lease: a different payload is a mismatch, not a conflict.
	res := begin(t, s, idemReq(m, "k", "fp-b", "t2", "pay_2", r.at(time.Second)), driver.Mismatch)
	if res.Record.Fingerprint != "fp-a" {
		t.Errorf("mismatch record fingerprint %q, want fp-a", res.Record.Fingerprint)
	}
	// In progress, lapsed lease: still a mismatch, the lease is not taken.
	begin(t, s, idemReq(m, "k", "fp-b", "t3", "pay_3", r.at(time.Minute)), driver.Mismatch)
	complete(t, s, m, "k", "t1", sampleResponse("pay_1"), r.at(time.Minute), time.Hour)
	// Completed: a mismatch, and the stored result is untouched.
	begin(t, s, idemReq(m, "k", "fp-b", "t4", "pay_4", r.at(2*time.Minute)), driver.Mismatch)
	rep := begin(t, s, idemReq(m, "k", "fp-a", "t5", "pay_5", r.at(2*time.Minute)), driver.Replay)
	sameResponse(t, "replay after mismatch", rep.Record.Response, sampleResponse("pay_1"))
}

func idemInProgressConflict(t *testing.T, r *idemRun) {
	s := r.open(t)
	m := r.merchant(t)
	begin(t, s, idemReq(m, "k", "fp", "owner", "pay_1", r.at(0)), driver.Acquired)
	for _, d := range []time.Duration{0, time.Second, 10*time.Second - idemTimeStep} {
		res := begin(t, s, idemReq(m, "k", "fp", "other", "pay_2", r.at(d)), driver.InProgress)
		if res.Record.Token != "owner" {
			t.Errorf("at +%s: holder token %q, want owner", d, res.Record.Token)
		}
		sameTime(t, "lease", res.Record.LeaseExpiresAt, r.at(10*time.Second))
	}
	// The loser's attempts changed nothing: the owner still completes.
	complete(t, s, m, "k", "owner", sampleResponse("pay_1"), r.at(11*time.Second), time.Hour)
	wantErr(t, "loser Complete", s.Complete(context.Background(), driver.CompleteRequest{Merchant: m, Key: "k", Token: "other", Response: sampleResponse("pay_2"), Now: r.at(11 * time.Second), TTL: time.Hour}), driver.ErrLeaseLost)
}

func idemLeaseExpiryTakeover(t *testing.T, r *idemRun) {
	s := r.open(t)
	m := r.merchant(t)
	first := begin(t, s, idemReq(m, "k", "fp", "crashed", "pay_orig", r.at(0)), driver.Acquired)
	// The lease lapses exactly at LeaseExpiresAt: the retry takes over and
	// must resume the same resource.
	res := begin(t, s, idemReq(m, "k", "fp", "retry", "pay_new", r.at(10*time.Second)), driver.Reacquired)
	if res.Record.ResourceID != "pay_orig" {
		t.Errorf("takeover ResourceID %q, want pay_orig (the crashed request's)", res.Record.ResourceID)
	}
	if res.Record.Token != "retry" || res.Record.State != driver.StateInProgress {
		t.Errorf("takeover record token %q state %s", res.Record.Token, res.Record.State)
	}
	sameTime(t, "takeover lease", res.Record.LeaseExpiresAt, r.at(20*time.Second))
	sameTime(t, "takeover CreatedAt", res.Record.CreatedAt, first.Record.CreatedAt)
	// The stale owner wakes up: every write of its is refused.
	ctx := context.Background()
	wantErr(t, "stale Extend", s.Extend(ctx, driver.ExtendRequest{Merchant: m, Key: "k", Token: "crashed", Now: r.at(11 * time.Second), Lease: 10 * time.Second}), driver.ErrLeaseLost)
	wantErr(t, "stale Complete", s.Complete(ctx, driver.CompleteRequest{Merchant: m, Key: "k", Token: "crashed", Response: sampleResponse("stale"), Now: r.at(11 * time.Second), TTL: time.Hour}), driver.ErrLeaseLost)
	wantErr(t, "stale Release", s.Release(ctx, m, "k", "crashed"), driver.ErrLeaseLost)
	// A third request meanwhile sees the new owner's live lease.
	held := begin(t, s, idemReq(m, "k", "fp", "third", "pay_3", r.at(12*time.Second)), driver.InProgress)
	if held.Record.Token != "retry" {
		t.Errorf("holder after takeover %q, want retry", held.Record.Token)
	}
	complete(t, s, m, "k", "retry", sampleResponse("pay_orig"), r.at(13*time.Second), time.Hour)
	rep := begin(t, s, idemReq(m, "k", "fp", "fourth", "pay_4", r.at(14*time.Second)), driver.Replay)
	sameResponse(t, "replay after takeover", rep.Record.Response, sampleResponse("pay_orig"))
	if rep.Record.ResourceID != "pay_orig" {
		t.Errorf("replay ResourceID %q", rep.Record.ResourceID)
	}
	// A second crash-and-takeover keeps the resource too.
	m2 := r.merchant(t)
	begin(t, s, idemReq(m2, "k", "fp", "c1", "pay_a", r.at(0)), driver.Acquired)
	begin(t, s, idemReq(m2, "k", "fp", "c2", "pay_b", r.at(15*time.Second)), driver.Reacquired)
	again := begin(t, s, idemReq(m2, "k", "fp", "c3", "pay_c", r.at(30*time.Second)), driver.Reacquired)
	if again.Record.ResourceID != "pay_a" {
		t.Errorf("second takeover ResourceID %q, want pay_a", again.Record.ResourceID)
	}
	wantErr(t, "first stale Complete", s.Complete(ctx, driver.CompleteRequest{Merchant: m2, Key: "k", Token: "c1", Response: sampleResponse("x"), Now: r.at(31 * time.Second), TTL: time.Hour}), driver.ErrLeaseLost)
	wantErr(t, "second stale Complete", s.Complete(ctx, driver.CompleteRequest{Merchant: m2, Key: "k", Token: "c2", Response: sampleResponse("x"), Now: r.at(31 * time.Second), TTL: time.Hour}), driver.ErrLeaseLost)
}

func idemExtendKeepsLease(t *testing.T, r *idemRun) {
	s := r.open(t)
	m := r.merchant(t)
	ctx := context.Background()
	begin(t, s, idemReq(m, "k", "fp", "owner", "pay_1", r.at(0)), driver.Acquired)
	if err := s.Extend(ctx, driver.ExtendRequest{Merchant: m, Key: "k", Token: "owner", Now: r.at(8 * time.Second), Lease: 10 * time.Second}); err != nil {
		t.Fatalf("Extend: %v", err)
	}
	// Past the original lease, before the extended one: still held.
	res := begin(t, s, idemReq(m, "k", "fp", "other", "pay_2", r.at(15*time.Second)), driver.InProgress)
	sameTime(t, "extended lease", res.Record.LeaseExpiresAt, r.at(18*time.Second))
	// A lapsed but not taken-over lease can still be renewed by its owner.
	if err := s.Extend(ctx, driver.ExtendRequest{Merchant: m, Key: "k", Token: "owner", Now: r.at(19 * time.Second), Lease: 10 * time.Second}); err != nil {
		t.Fatalf("Extend after lapse without takeover: %v", err)
	}
	begin(t, s, idemReq(m, "k", "fp", "other", "pay_2", r.at(25*time.Second)), driver.InProgress)
	begin(t, s, idemReq(m, "k", "fp", "other", "pay_2", r.at(29*time.Second)), driver.Reacquired)
	wantErr(t, "Extend after takeover", s.Extend(ctx, driver.ExtendRequest{Merchant: m, Key: "k", Token: "owner", Now: r.at(30 * time.Second), Lease: 10 * time.Second}), driver.ErrLeaseLost)
}

func idemRelease(t *testing.T, r *idemRun) {
	s := r.open(t)
	m := r.merchant(t)
	ctx := context.Background()
	begin(t, s, idemReq(m, "k", "fp", "owner", "pay_1", r.at(0)), driver.Acquired)
	wantErr(t, "Release by another token", s.Release(ctx, m, "k", "intruder"), driver.ErrLeaseLost)
	begin(t, s, idemReq(m, "k", "fp", "other", "pay_2", r.at(time.Second)), driver.InProgress)
	if err := s.Release(ctx, m, "k", "owner"); err != nil {
		t.Fatalf("Release: %v", err)
	}
	wantErr(t, "Release twice", s.Release(ctx, m, "k", "owner"), driver.ErrLeaseLost)
	wantErr(t, "Complete after Release", s.Complete(ctx, driver.CompleteRequest{Merchant: m, Key: "k", Token: "owner", Response: sampleResponse("x"), Now: r.at(time.Second), TTL: time.Hour}), driver.ErrLeaseLost)
	// The key is free again, even with another payload and resource.
	res := begin(t, s, idemReq(m, "k", "fp-new", "next", "pay_3", r.at(2*time.Second)), driver.Acquired)
	if res.Record.ResourceID != "pay_3" || res.Record.Fingerprint != "fp-new" {
		t.Errorf("after Release: resource %q fingerprint %q", res.Record.ResourceID, res.Record.Fingerprint)
	}
}

func idemWrongToken(t *testing.T, r *idemRun) {
	s := r.open(t)
	m := r.merchant(t)
	ctx := context.Background()
	begin(t, s, idemReq(m, "k", "fp", "owner", "pay_1", r.at(0)), driver.Acquired)
	wantErr(t, "Complete wrong token", s.Complete(ctx, driver.CompleteRequest{Merchant: m, Key: "k", Token: "nope", Response: sampleResponse("x"), Now: r.at(time.Second), TTL: time.Hour}), driver.ErrLeaseLost)
	wantErr(t, "Extend wrong token", s.Extend(ctx, driver.ExtendRequest{Merchant: m, Key: "k", Token: "nope", Now: r.at(time.Second), Lease: time.Minute}), driver.ErrLeaseLost)
	wantErr(t, "Complete empty token", s.Complete(ctx, driver.CompleteRequest{Merchant: m, Key: "k", Token: "", Response: sampleResponse("x"), Now: r.at(time.Second), TTL: time.Hour}), driver.ErrLeaseLost)
	// The wrong-token attempts left the lease alone.
	res := begin(t, s, idemReq(m, "k", "fp", "other", "pay_2", r.at(2*time.Second)), driver.InProgress)
	sameTime(t, "lease after refused Extend", res.Record.LeaseExpiresAt, r.at(10*time.Second))
	complete(t, s, m, "k", "owner", sampleResponse("pay_1"), r.at(3*time.Second), time.Hour)
	// After completion the empty token must not match the cleared token.
	wantErr(t, "Complete completed with empty token", s.Complete(ctx, driver.CompleteRequest{Merchant: m, Key: "k", Token: "", Response: sampleResponse("x"), Now: r.at(4 * time.Second), TTL: time.Hour}), driver.ErrLeaseLost)
	wantErr(t, "Release completed with empty token", s.Release(ctx, m, "k", ""), driver.ErrLeaseLost)
}

func idemTTLExpiry(t *testing.T, r *idemRun) {
	s := r.open(t)
	m := r.merchant(t)
	begin(t, s, idemReq(m, "k", "fp-old", "t1", "pay_old", r.at(0)), driver.Acquired)
	complete(t, s, m, "k", "t1", sampleResponse("pay_old"), r.at(time.Second), 2*time.Minute)
	// Just before expiry: replayed. At expiry: gone, the key is new again,
	// whatever the payload, with the new request's resource.
	begin(t, s, idemReq(m, "k", "fp-old", "t2", "pay_x", r.at(time.Second+2*time.Minute-idemTimeStep)), driver.Replay)
	res := begin(t, s, idemReq(m, "k", "fp-new", "t3", "pay_new", r.at(time.Second+2*time.Minute)), driver.Acquired)
	if res.Record.ResourceID != "pay_new" || res.Record.Fingerprint != "fp-new" || res.Record.Response != nil {
		t.Errorf("record after TTL expiry: resource %q fingerprint %q response %v", res.Record.ResourceID, res.Record.Fingerprint, res.Record.Response)
	}
	sameTime(t, "new CreatedAt", res.Record.CreatedAt, r.at(time.Second+2*time.Minute))
	// The expired record's owner token is gone too.
	wantErr(t, "old token Complete", s.Complete(context.Background(), driver.CompleteRequest{Merchant: m, Key: "k", Token: "t1", Response: sampleResponse("x"), Now: r.at(3 * time.Minute), TTL: time.Hour}), driver.ErrLeaseLost)
	complete(t, s, m, "k", "t3", sampleResponse("pay_new"), r.at(3*time.Minute), time.Hour)
	rep := begin(t, s, idemReq(m, "k", "fp-new", "t4", "pay_y", r.at(4*time.Minute)), driver.Replay)
	sameResponse(t, "replay of the new record", rep.Record.Response, sampleResponse("pay_new"))
}

func idemInProgressRetention(t *testing.T, r *idemRun) {
	// An in-progress record is kept for its TTL at most: past it the key is
	// new (Acquired, not Reacquired: the old resource is not resumed).
	s := r.open(t)
	m := r.merchant(t)
	req := idemReq(m, "k", "fp", "t1", "pay_1", r.at(0))
	req.TTL = time.Minute
	begin(t, s, req, driver.Acquired)
	begin(t, s, idemReq(m, "k", "fp", "t2", "pay_2", r.at(30*time.Second)), driver.Reacquired)
	res := begin(t, s, idemReq(m, "k", "fp-other", "t3", "pay_3", r.at(time.Minute)), driver.Acquired)
	if res.Record.ResourceID != "pay_3" {
		t.Errorf("ResourceID after retention %q, want pay_3", res.Record.ResourceID)
	}
}

func idemConcurrentBegins(t *testing.T, r *idemRun) {
	cs := r.clients(t, IdempotencyClients)
	m := r.merchant(t)
	now := time.Now().Truncate(idemTimeStep)
	var (
		wg       sync.WaitGroup
		start    = make(chan struct{})
		mu       sync.Mutex
		winners  []string
		outcomes = map[driver.Outcome]int{}
		errs     []error
	)
	for i := range IdempotencyConcurrentBegins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			tok := fmt.Sprintf("tok-%d", i)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			res, err := cs[i%len(cs)].Begin(ctx, &driver.BeginRequest{Merchant: m, Key: "hot", Fingerprint: "fp",
				Token: tok, ResourceID: "pay_" + tok, Lease: time.Minute, TTL: time.Hour, Now: now})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			outcomes[res.Outcome]++
			if res.Outcome == driver.Acquired {
				winners = append(winners, tok)
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d Begins failed, first: %v", len(errs), errs[0])
	}
	if len(winners) != 1 || outcomes[driver.InProgress] != IdempotencyConcurrentBegins-1 {
		t.Fatalf("outcomes %v, winners %v: want exactly one acquired and %d in progress", outcomes, winners, IdempotencyConcurrentBegins-1)
	}
	// The store agrees on who won: only the winner can complete.
	w := winners[0]
	for i, c := range cs {
		if tok := fmt.Sprintf("tok-%d", i); tok != w {
			wantErr(t, "loser Complete", c.Complete(context.Background(), driver.CompleteRequest{Merchant: m, Key: "hot", Token: tok, Response: sampleResponse("x"), Now: now, TTL: time.Hour}), driver.ErrLeaseLost)
		}
	}
	complete(t, cs[1%len(cs)], m, "hot", w, sampleResponse("pay_"+w), now, time.Hour)
	rep := begin(t, cs[len(cs)-1], idemReq(m, "hot", "fp", "late", "pay_late", now), driver.Replay)
	if rep.Record.ResourceID != "pay_"+w {
		t.Errorf("replayed ResourceID %q, want the winner's pay_%s", rep.Record.ResourceID, w)
	}
}

func idemConcurrentTakeover(t *testing.T, r *idemRun) {
	// Many retries of a crashed request race for its lapsed lease: one
	// takes it over, the others see it in progress.
	cs := r.clients(t, IdempotencyClients)
	m := r.merchant(t)
	now := time.Now().Truncate(idemTimeStep)
	begin(t, cs[0], &driver.BeginRequest{Merchant: m, Key: "k", Fingerprint: "fp", Token: "crashed",
		ResourceID: "pay_orig", Lease: time.Second, TTL: time.Hour, Now: now}, driver.Acquired)
	later := now.Add(2 * time.Second)
	const n = 100
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		count   = map[driver.Outcome]int{}
		holders = map[string]bool{}
		firstEr error
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := fmt.Sprintf("retry-%d", i)
			res, err := cs[i%len(cs)].Begin(context.Background(), &driver.BeginRequest{Merchant: m, Key: "k",
				Fingerprint: "fp", Token: tok, ResourceID: "pay_" + tok, Lease: time.Minute, TTL: time.Hour, Now: later})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				firstEr = cmpErr(firstEr, err)
				return
			}
			count[res.Outcome]++
			if res.Record.ResourceID != "pay_orig" {
				holders["resource:"+res.Record.ResourceID] = true
			}
		}()
	}
	wg.Wait()
	if firstEr != nil {
		t.Fatalf("Begin: %v", firstEr)
	}
	if count[driver.Reacquired] != 1 || count[driver.InProgress] != n-1 {
		t.Fatalf("outcomes %v: want exactly one reacquired and %d in progress", count, n-1)
	}
	if len(holders) > 0 {
		t.Errorf("some results carry another resource: %v", holders)
	}
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

func idemLargeBody(t *testing.T, r *idemRun) {
	cs := r.clients(t, 2)
	m := r.merchant(t)
	body := make([]byte, IdempotencyLargeBody)
	_, _ = rand.Read(body) // incompressible
	resp := &driver.Response{StatusCode: 200, Header: map[string]string{"Content-Type": "application/octet-stream"}, Body: body}
	begin(t, cs[0], idemReq(m, "big", "fp", "t1", "pay_1", r.at(0)), driver.Acquired)
	complete(t, cs[0], m, "big", "t1", resp, r.at(time.Second), time.Hour)
	rep := begin(t, cs[1], idemReq(m, "big", "fp", "t2", "pay_2", r.at(2*time.Second)), driver.Replay)
	sameResponse(t, "large replay", rep.Record.Response, resp)
	if a, ok := cs[1].(driver.Admin); ok {
		rec, err := a.Get(context.Background(), m, "big")
		if err != nil {
			t.Fatalf("Admin Get large: %v", err)
		}
		sameResponse(t, "large Get", rec.Response, resp)
	}
}

func idemBinaryParts(t *testing.T, r *idemRun) {
	s := r.open(t)
	m := r.merchant(t)
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	cases := map[string]*driver.Response{
		"every-byte": {StatusCode: 402, Header: map[string]string{"Content-Type": "application/problem+json", "Retry-After": "1", "X-Empty": ""}, Body: all},
		"empty-body": {StatusCode: 204},
		"utf8":       {StatusCode: 200, Header: map[string]string{"Content-Language": "es"}, Body: []byte(`{"detalle":"pago rechazado – fondos insuficientes €"}`)},
	}
	for k, resp := range cases {
		begin(t, s, idemReq(m, k, "fp", "t-"+k, "pay_"+k, r.at(0)), driver.Acquired)
		complete(t, s, m, k, "t-"+k, resp, r.at(time.Second), time.Hour)
		rep := begin(t, s, idemReq(m, k, "fp", "r-"+k, "x", r.at(2*time.Second)), driver.Replay)
		got := rep.Record.Response
		if got == nil {
			t.Fatalf("%s: nil response", k)
		}
		if len(resp.Body) == 0 && len(got.Body) == 0 {
			got = &driver.Response{StatusCode: got.StatusCode, Header: got.Header, Body: resp.Body}
		}
		if len(resp.Header) == 0 && len(got.Header) == 0 {
			got.Header = resp.Header
		}
		sameResponse(t, k, got, resp)
	}
}

func idemMerchantIsolation(t *testing.T, r *idemRun) {
	s := r.open(t)
	ma, mb := r.merchant(t), r.merchant(t)
	begin(t, s, idemReq(ma, "order-1", "fp-a", "ta", "pay_a", r.at(0)), driver.Acquired)
	// The same key for another merchant is another key, even with another payload.
	begin(t, s, idemReq(mb, "order-1", "fp-b", "tb", "pay_b", r.at(0)), driver.Acquired)
	ctx := context.Background()
	wantErr(t, "cross-merchant Complete", s.Complete(ctx, driver.CompleteRequest{Merchant: mb, Key: "order-1", Token: "ta", Response: sampleResponse("x"), Now: r.at(time.Second), TTL: time.Hour}), driver.ErrLeaseLost)
	wantErr(t, "cross-merchant Release", s.Release(ctx, mb, "order-1", "ta"), driver.ErrLeaseLost)
	complete(t, s, ma, "order-1", "ta", sampleResponse("pay_a"), r.at(time.Second), time.Hour)
	begin(t, s, idemReq(mb, "order-1", "fp-b", "tb2", "x", r.at(2*time.Second)), driver.InProgress)
	rep := begin(t, s, idemReq(ma, "order-1", "fp-a", "ta2", "x", r.at(2*time.Second)), driver.Replay)
	sameResponse(t, "merchant a", rep.Record.Response, sampleResponse("pay_a"))
	// Separator characters in names must not let two merchants collide.
	mc := r.merchant(t)
	begin(t, s, idemReq(mc+":x", "y", "fp1", "t1", "p1", r.at(0)), driver.Acquired)
	begin(t, s, idemReq(mc, "x:y", "fp2", "t2", "p2", r.at(0)), driver.Acquired)
	begin(t, s, idemReq(mc+"#x", "y", "fp3", "t3", "p3", r.at(0)), driver.Acquired)
	begin(t, s, idemReq(mc+"/x", "y", "fp6", "t6", "p6", r.at(0)), driver.Acquired)
	begin(t, s, idemReq(mc+"%3A", "x", "fp4", "t4", "p4", r.at(0)), driver.Acquired)
	begin(t, s, idemReq(mc+"*", "x", "fp5", "t5", "p5", r.at(0)), driver.Acquired)
}

func idemKeyCharacters(t *testing.T, r *idemRun) {
	s := r.open(t)
	m := r.merchant(t)
	long := bytes.Repeat([]byte("k"), 255)
	for i, key := range []string{"a", " spaced key ", `~!@#$%^&*()_+{}|:"<>?[]\;',./` + "`", string(long), "order-1*", "order-?"} {
		tok := fmt.Sprintf("t%d", i)
		begin(t, s, idemReq(m, key, "fp", tok, "pay", r.at(0)), driver.Acquired)
		complete(t, s, m, key, tok, sampleResponse(tok), r.at(time.Second), time.Hour)
	}
	// Glob-like keys are not patterns: "order-1" is its own, new key.
	begin(t, s, idemReq(m, "order-1", "fp", "tz", "pay", r.at(0)), driver.Acquired)
	rep := begin(t, s, idemReq(m, string(long), "fp", "tx", "pay", r.at(2*time.Second)), driver.Replay)
	sameResponse(t, "255-char key", rep.Record.Response, sampleResponse("t3"))
}

func idemContextCancellation(t *testing.T, r *idemRun) {
	s := r.open(t)
	m := r.merchant(t)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Begin(cancelled, idemReq(m, "k", "fp", "t1", "pay_1", r.at(0)))
	wantErr(t, "Begin with a cancelled context", err, context.Canceled)
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	_, err = s.Begin(expired, idemReq(m, "k", "fp", "t1", "pay_1", r.at(0)))
	wantErr(t, "Begin past its deadline", err, context.DeadlineExceeded)
	// Nothing was claimed by the cancelled calls.
	begin(t, s, idemReq(m, "k", "fp", "t2", "pay_2", r.at(0)), driver.Acquired)
	wantErr(t, "Complete with a cancelled context", s.Complete(cancelled, driver.CompleteRequest{Merchant: m, Key: "k", Token: "t2", Response: sampleResponse("x"), Now: r.at(time.Second), TTL: time.Hour}), context.Canceled)
	wantErr(t, "Extend with a cancelled context", s.Extend(cancelled, driver.ExtendRequest{Merchant: m, Key: "k", Token: "t2", Now: r.at(time.Second), Lease: time.Minute}), context.Canceled)
	wantErr(t, "Release with a cancelled context", s.Release(cancelled, m, "k", "t2"), context.Canceled)
	// None of them took effect: the lease still holds and its owner completes.
	res := begin(t, s, idemReq(m, "k", "fp", "t3", "pay_3", r.at(2*time.Second)), driver.InProgress)
	sameTime(t, "lease after cancelled Extend", res.Record.LeaseExpiresAt, r.at(10*time.Second))
	complete(t, s, m, "k", "t2", sampleResponse("pay_2"), r.at(3*time.Second), time.Hour)
	if a, ok := s.(driver.Admin); ok {
		_, err := a.List(cancelled, driver.Filter{Merchant: m})
		wantErr(t, "List with a cancelled context", err, context.Canceled)
		_, err = a.Get(cancelled, m, "k")
		wantErr(t, "Get with a cancelled context", err, context.Canceled)
	}
}

func idemRoundTrips(t *testing.T, r *idemRun) {
	if r.h.RoundTrips == nil {
		t.Log("capability: round trips not observable for this store (RoundTrips is nil); contract not measured")
		return
	}
	s := r.open(t)
	m := r.merchant(t)
	// Warm up (prepared statements, script cache, connections).
	for i := range 3 {
		k := fmt.Sprintf("warm-%d", i)
		begin(t, s, idemReq(m, k, "fp", "w", "p", r.at(0)), driver.Acquired)
		complete(t, s, m, k, "w", sampleResponse("p"), r.at(0), time.Hour)
		begin(t, s, idemReq(m, k, "fp", "w2", "p", r.at(0)), driver.Replay)
	}
	for i := range 5 {
		k := fmt.Sprintf("rt-%d", i)
		c0 := r.h.RoundTrips(s)
		begin(t, s, idemReq(m, k, "fp", "t", "p", r.at(0)), driver.Acquired)
		complete(t, s, m, k, "t", sampleResponse("p"), r.at(0), time.Hour)
		c1 := r.h.RoundTrips(s)
		begin(t, s, idemReq(m, k, "fp", "t2", "p", r.at(time.Second)), driver.Replay)
		c2 := r.h.RoundTrips(s)
		begin(t, s, idemReq(m, k, "fp-other", "t3", "p", r.at(time.Second)), driver.Mismatch)
		c3 := r.h.RoundTrips(s)
		if c1-c0 > 2 || c2-c1 > 1 || c3-c2 > 1 {
			t.Fatalf("round trips: execute %d (want ≤ 2), replay %d (want 1), mismatch %d (want 1)", c1-c0, c2-c1, c3-c2)
		}
		if i == 0 {
			t.Logf("round trips: execute (Begin+Complete) %d, replay %d, mismatch %d", c1-c0, c2-c1, c3-c2)
		}
	}
}

func idemAdmin(t *testing.T, r *idemRun) {
	s := r.open(t)
	a, ok := s.(driver.Admin)
	if !ok {
		t.Log("capability: store does not implement driver.Admin")
		return
	}
	ctx := context.Background()
	ma, mb := r.merchant(t), r.merchant(t)
	// ma: k1 completed, k2 in progress, k3 completed; mb: k1 in progress.
	begin(t, s, idemReq(ma, "k2", "fp", "t2", "pay_2", r.at(0)), driver.Acquired)
	begin(t, s, idemReq(ma, "k1", "fp", "t1", "pay_1", r.at(0)), driver.Acquired)
	begin(t, s, idemReq(ma, "k3", "fp", "t3", "pay_3", r.at(0)), driver.Acquired)
	begin(t, s, idemReq(mb, "k1", "fp", "tb", "pay_b", r.at(0)), driver.Acquired)
	complete(t, s, ma, "k1", "t1", sampleResponse("pay_1"), r.at(time.Second), time.Hour)
	// k3 expires first, and the case keeps the clock before the others'
	// expiry: a store may reclaim expired records at any time.
	complete(t, s, ma, "k3", "t3", sampleResponse("pay_3"), r.at(time.Second), time.Minute)

	keys := func(recs []*driver.Record) []string {
		var out []string
		for _, rec := range recs {
			out = append(out, rec.Merchant+"/"+rec.Key)
		}
		return out
	}
	list := func(f driver.Filter) []*driver.Record {
		t.Helper()
		recs, err := a.List(ctx, f)
		if err != nil {
			t.Fatalf("List(%+v): %v", f, err)
		}
		return recs
	}
	eq := func(what string, got []*driver.Record, want ...string) {
		t.Helper()
		if g := keys(got); fmt.Sprint(g) != fmt.Sprint(want) {
			t.Errorf("%s: %v, want %v", what, g, want)
		}
	}
	eq("merchant a", list(driver.Filter{Merchant: ma}), ma+"/k1", ma+"/k2", ma+"/k3")
	eq("merchant a completed", list(driver.Filter{Merchant: ma, State: driver.StateCompleted}), ma+"/k1", ma+"/k3")
	eq("merchant a in progress", list(driver.Filter{Merchant: ma, State: driver.StateInProgress}), ma+"/k2")
	eq("limit", list(driver.Filter{Merchant: ma, Limit: 2}), ma+"/k1", ma+"/k2")
	eq("after", list(driver.Filter{Merchant: ma, AfterMerchant: ma, AfterKey: "k1"}), ma+"/k2", ma+"/k3")
	eq("after and limit", list(driver.Filter{Merchant: ma, AfterMerchant: ma, AfterKey: "k1", Limit: 1}), ma+"/k2")
	eq("merchant b", list(driver.Filter{Merchant: mb}), mb+"/k1")
	// Across merchants, ordered by (merchant, key); other records may exist
	// in a shared namespace, so look at ours only.
	var ours []*driver.Record
	f := driver.Filter{AfterMerchant: ma, Limit: 2}
	for range 100 {
		page := list(f)
		if len(page) == 0 {
			break
		}
		for _, rec := range page {
			if rec.Merchant == ma || rec.Merchant == mb {
				ours = append(ours, rec)
			}
		}
		last := page[len(page)-1]
		if last.Merchant > mb {
			break
		}
		f.AfterMerchant, f.AfterKey = last.Merchant, last.Key
	}
	eq("paged across merchants", ours, ma+"/k1", ma+"/k2", ma+"/k3", mb+"/k1")

	rec, err := a.Get(ctx, ma, "k1")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if rec.State != driver.StateCompleted || rec.ResourceID != "pay_1" || rec.Fingerprint != "fp" {
		t.Errorf("Get record %+v", rec)
	}
	sameResponse(t, "Get response", rec.Response, sampleResponse("pay_1"))
	sameTime(t, "Get ExpiresAt", rec.ExpiresAt, r.at(time.Second+time.Hour))
	_, err = a.Get(ctx, ma, "missing")
	wantErr(t, "Get missing", err, driver.ErrNotFound)
	_, err = a.Get(ctx, mb, "k2")
	wantErr(t, "Get other merchant's key", err, driver.ErrNotFound)

	// Compare-and-delete: a record that changed since it was read is kept.
	ip, err := a.Get(ctx, ma, "k2")
	if err != nil {
		t.Fatalf("Get in progress: %v", err)
	}
	if ip.State != driver.StateInProgress || ip.Token != "t2" {
		t.Fatalf("Get in-progress record: %+v", ip)
	}
	begin(t, s, idemReq(ma, "k2", "fp", "t2b", "x", r.at(time.Minute)), driver.Reacquired)
	wantErr(t, "Delete of a record taken over since read", a.Delete(ctx, ip), driver.ErrLeaseLost)
	ip2, err := a.Get(ctx, ma, "k2")
	if err != nil || ip2.Token != "t2b" {
		t.Fatalf("after refused Delete: %+v, %v", ip2, err)
	}
	if err := a.Delete(ctx, ip2); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err = a.Get(ctx, ma, "k2")
	wantErr(t, "Get deleted", err, driver.ErrNotFound)
	wantErr(t, "Delete twice", a.Delete(ctx, ip2), driver.ErrLeaseLost)
	wantErr(t, "owner Complete after Delete", s.Complete(ctx, driver.CompleteRequest{Merchant: ma, Key: "k2", Token: "t2b", Response: sampleResponse("x"), Now: r.at(time.Minute), TTL: time.Hour}), driver.ErrLeaseLost)
	begin(t, s, idemReq(ma, "k2", "fp-new", "t2c", "pay_new", r.at(time.Minute)), driver.Acquired)

	// A completed record replaced since it was read (expired, reused) is kept.
	old, err := a.Get(ctx, ma, "k3")
	if err != nil {
		t.Fatalf("Get k3: %v", err)
	}
	begin(t, s, idemReq(ma, "k3", "fp", "t3b", "x", r.at(2*time.Minute)), driver.Acquired)
	complete(t, s, ma, "k3", "t3b", sampleResponse("x"), r.at(2*time.Minute), time.Hour)
	wantErr(t, "Delete of a completed record replaced since read", a.Delete(ctx, old), driver.ErrLeaseLost)
	cur, err := a.Get(ctx, ma, "k3")
	if err != nil {
		t.Fatalf("Get k3: %v", err)
	}
	if err := a.Delete(ctx, cur); err != nil {
		t.Fatalf("Delete completed: %v", err)
	}
	eq("after deletes", list(driver.Filter{Merchant: ma}), ma+"/k1", ma+"/k2")
}

func idemPing(t *testing.T, r *idemRun) {
	s := r.open(t)
	p, ok := s.(driver.Pinger)
	if !ok {
		t.Log("capability: store does not implement driver.Pinger")
		return
	}
	if err := p.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func idemClosed(t *testing.T, r *idemRun) {
	s, err := r.h.Open(context.Background(), t)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	m := r.merchant(t)
	ctx := context.Background()
	begin(t, s, idemReq(m, "k", "fp", "t", "p", r.at(0)), driver.Acquired)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_, err = s.Begin(ctx, idemReq(m, "k2", "fp", "t", "p", r.at(0)))
	wantErr(t, "Begin after Close", err, driver.ErrClosed)
	wantErr(t, "Complete after Close", s.Complete(ctx, driver.CompleteRequest{Merchant: m, Key: "k", Token: "t", Response: sampleResponse("x"), Now: r.at(0), TTL: time.Hour}), driver.ErrClosed)
	wantErr(t, "Extend after Close", s.Extend(ctx, driver.ExtendRequest{Merchant: m, Key: "k", Token: "t", Now: r.at(0), Lease: time.Minute}), driver.ErrClosed)
	wantErr(t, "Release after Close", s.Release(ctx, m, "k", "t"), driver.ErrClosed)
	if a, ok := s.(driver.Admin); ok {
		_, err = a.List(ctx, driver.Filter{})
		wantErr(t, "List after Close", err, driver.ErrClosed)
		_, err = a.Get(ctx, m, "k")
		wantErr(t, "Get after Close", err, driver.ErrClosed)
		wantErr(t, "Delete after Close", a.Delete(ctx, &driver.Record{Merchant: m, Key: "k"}), driver.ErrClosed)
	}
	if p, ok := s.(driver.Pinger); ok {
		wantErr(t, "Ping after Close", p.Ping(ctx), driver.ErrClosed)
	}
	// A second Close must not panic; it may report ErrClosed.
	if err := s.Close(); err != nil && !errors.Is(err, driver.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	// Closing one client leaves the records to the others.
	if r.h.SharedClients {
		s2 := r.open(t)
		begin(t, s2, idemReq(m, "k", "fp", "t2", "p", r.at(time.Second)), driver.InProgress)
	}
}

// BenchmarkIdempotencyStore runs the store benchmarks under b:
// "BeginComplete" (a request that executes: Begin on a new key, then
// Complete; ops/s is requests per second) and "Replay" (Begin on a
// completed key), both from parallel goroutines on one client. It reports
// round trips per request when h.RoundTrips is set.
func BenchmarkIdempotencyStore(b *testing.B, h IdempotencyHarness) {
	s, err := h.Open(context.Background(), b)
	if err != nil {
		b.Fatalf("open: %v", err)
	}
	defer s.Close()
	run := newIdemRun(h)
	m := run.merchant(b)
	resp := sampleResponse("pay_bench")
	var seq atomic.Int64
	report := func(b *testing.B, c0 int64) {
		if h.RoundTrips != nil {
			b.ReportMetric(float64(h.RoundTrips(s)-c0)/float64(b.N), "roundtrips/op")
		}
	}
	b.Run("BeginComplete", func(b *testing.B) {
		var c0 int64
		if h.RoundTrips != nil {
			c0 = h.RoundTrips(s)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			for pb.Next() {
				k := fmt.Sprintf("bc-%d", seq.Add(1))
				now := time.Now()
				res, err := s.Begin(ctx, &driver.BeginRequest{Merchant: m, Key: k, Fingerprint: "fp", Token: "t",
					ResourceID: "pay", Lease: time.Minute, TTL: time.Hour, Now: now})
				if err != nil || res.Outcome != driver.Acquired {
					b.Errorf("Begin: %v %v", res, err)
					return
				}
				if err := s.Complete(ctx, driver.CompleteRequest{Merchant: m, Key: k, Token: "t", Response: resp, Now: now, TTL: time.Hour}); err != nil {
					b.Errorf("Complete: %v", err)
					return
				}
			}
		})
		report(b, c0)
	})
	ctx := context.Background()
	now := time.Now()
	if _, err := s.Begin(ctx, &driver.BeginRequest{Merchant: m, Key: "replayed", Fingerprint: "fp", Token: "t",
		ResourceID: "pay", Lease: time.Minute, TTL: time.Hour, Now: now}); err != nil {
		b.Fatal(err)
	}
	if err := s.Complete(ctx, driver.CompleteRequest{Merchant: m, Key: "replayed", Token: "t", Response: resp, Now: now, TTL: time.Hour}); err != nil {
		b.Fatal(err)
	}
	b.Run("Replay", func(b *testing.B) {
		var c0 int64
		if h.RoundTrips != nil {
			c0 = h.RoundTrips(s)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				res, err := s.Begin(ctx, &driver.BeginRequest{Merchant: m, Key: "replayed", Fingerprint: "fp", Token: "t2",
					ResourceID: "pay", Lease: time.Minute, TTL: time.Hour, Now: time.Now()})
				if err != nil || res.Outcome != driver.Replay {
					b.Errorf("Begin: %v %v", res, err)
					return
				}
			}
		})
		report(b, c0)
	})
}

// idemRecordDiff names the fields of got that differ from the request.
func idemRecordDiff(got *driver.Record, req *driver.BeginRequest, token string) []string {
	var out hostileDiff
	str := out.str
	str("Merchant", got.Merchant, req.Merchant)
	str("Key", got.Key, req.Key)
	str("Fingerprint", got.Fingerprint, req.Fingerprint)
	str("Token", got.Token, token)
	str("ResourceID", got.ResourceID, req.ResourceID)
	return out
}

// idemResponseDiff names the parts of got that differ from want.
func idemResponseDiff(got, want *driver.Response) []string {
	if got == nil {
		return []string{"no response"}
	}
	var out []string
	if got.StatusCode != want.StatusCode {
		out = append(out, fmt.Sprintf("status %d, want %d", got.StatusCode, want.StatusCode))
	}
	if !bytes.Equal(got.Body, want.Body) {
		out = append(out, fmt.Sprintf("body %s, want %s", hostileShow(string(got.Body)), hostileShow(string(want.Body))))
	}
	if len(got.Header) != len(want.Header) {
		out = append(out, fmt.Sprintf("%d headers, want %d", len(got.Header), len(want.Header)))
	}
	for k, v := range want.Header {
		g, ok := got.Header[k]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("header %s missing", hostileShow(k)))
		case g != v:
			out = append(out, fmt.Sprintf("header %s = %s, want %s", hostileShow(k), hostileShow(g), hostileShow(v)))
		}
	}
	return out
}

var idemHostileBeginFields = []hostileField[driver.BeginRequest]{
	{"Merchant", func(r *driver.BeginRequest, v string) { r.Merchant = v }, true},
	{"Key", func(r *driver.BeginRequest, v string) { r.Key = v }, true},
	{"Fingerprint", func(r *driver.BeginRequest, v string) { r.Fingerprint = v }, false},
	{"Token", func(r *driver.BeginRequest, v string) { r.Token = v }, false},
	{"ResourceID", func(r *driver.BeginRequest, v string) { r.ResourceID = v }, false},
}

// idemHostileStrings feeds the merchant, key, fingerprint, token and
// resource id of Begin, and the headers and body of Complete, with each of
// HostileStrings: the store must keep the value exactly (read back by a
// later Begin, a replay and Admin.Get) or refuse it with ErrInvalidInput,
// storing nothing, and go on working. (The idempotency.Store in front of a
// driver admits printable-ASCII keys only; drivers are held to the
// contract for any value.)
func idemHostileStrings(t *testing.T, r *idemRun) {
	s := r.open(t)
	ctx := context.Background()
	admin, _ := s.(driver.Admin)
	n := 0
	var refusals []string
	for _, f := range idemHostileBeginFields {
		for _, hv := range HostileStrings() {
			n++
			what := fmt.Sprintf("%s=%s", f.name, hv.Name)
			m := r.merchant(t)
			req := idemReq(m, fmt.Sprintf("hostile-%s-%d", r.id, n), "fp", "tok", "pay_1", r.at(0))
			f.set(req, hv.Value)
			var res *driver.BeginResult
			err := hostileCall(func() (err error) { res, err = s.Begin(ctx, req); return err })
			if hostileRefusal(t, driver.ErrInvalidInput, "Begin with "+what, hv.Value, err) {
				refusals = append(refusals, what)
				// Nothing was stored: the owner's writes find no lease.
				cerr := hostileCall(func() error {
					return s.Complete(ctx, driver.CompleteRequest{Merchant: req.Merchant, Key: req.Key, Token: req.Token, Response: sampleResponse("x"), Now: r.at(time.Second), TTL: time.Hour})
				})
				if !errors.Is(cerr, driver.ErrLeaseLost) && !errors.Is(cerr, driver.ErrInvalidInput) {
					t.Errorf("Complete after a refused Begin with %s: %v, want ErrLeaseLost or ErrInvalidInput", what, cerr)
				}
				if f.identity {
					if admin != nil {
						_, gerr := admin.Get(ctx, req.Merchant, req.Key)
						if !errors.Is(gerr, driver.ErrNotFound) {
							t.Errorf("Admin Get after a refused Begin with %s: %v, want ErrNotFound", what, gerr)
						}
					}
					continue
				}
				begin(t, s, idemReq(req.Merchant, req.Key, "fp", "tok-sane", "pay_2", r.at(time.Second)), driver.Acquired)
				continue
			}
			if res == nil || res.Record == nil || res.Outcome != driver.Acquired {
				t.Errorf("Begin with %s: %+v, want Acquired", what, res)
				continue
			}
			if d := idemRecordDiff(res.Record, req, req.Token); len(d) > 0 {
				t.Errorf("Begin with %s: acquired record: %s", what, strings.Join(d, "; "))
			}
			// Read back by another request (same payload), the replay and
			// the admin interface.
			other := *req
			other.Token, other.Now = "tok-other", r.at(time.Second)
			var seen *driver.BeginResult
			err = hostileCall(func() (err error) { seen, err = s.Begin(ctx, &other); return err })
			switch {
			case err != nil:
				t.Errorf("second Begin with %s: %v", what, err)
				continue
			case seen.Outcome != driver.InProgress:
				t.Errorf("second Begin with %s: %v, want in_progress (the stored values differ from the request's?)", what, seen.Outcome)
				continue
			}
			if d := idemRecordDiff(seen.Record, req, req.Token); len(d) > 0 {
				t.Errorf("Begin with %s: stored record: %s", what, strings.Join(d, "; "))
			}
			resp := sampleResponse("pay_1")
			if err := hostileCall(func() error {
				return s.Complete(ctx, driver.CompleteRequest{Merchant: req.Merchant, Key: req.Key, Token: req.Token, Response: resp, Now: r.at(2 * time.Second), TTL: time.Hour})
			}); err != nil {
				t.Errorf("Complete after Begin with %s: %v", what, err)
				continue
			}
			other.Token, other.Now = "tok-replay", r.at(3*time.Second)
			err = hostileCall(func() (err error) { seen, err = s.Begin(ctx, &other); return err })
			if err != nil || seen.Outcome != driver.Replay {
				t.Errorf("replay after Begin with %s: %v %v", what, seen, err)
				continue
			}
			if d := append(idemRecordDiff(seen.Record, req, ""), idemResponseDiff(seen.Record.Response, resp)...); len(d) > 0 {
				t.Errorf("replay after Begin with %s: %s", what, strings.Join(d, "; "))
			}
			if admin != nil {
				rec, err := admin.Get(ctx, req.Merchant, req.Key)
				if err != nil {
					t.Errorf("Admin Get after Begin with %s: %v", what, err)
				} else if d := idemRecordDiff(rec, req, ""); len(d) > 0 {
					t.Errorf("Admin Get after Begin with %s: %s", what, strings.Join(d, "; "))
				}
			}
		}
	}
	completeFields := []struct {
		name string
		resp func(v string) *driver.Response
	}{
		{"HeaderName", func(v string) *driver.Response {
			return &driver.Response{StatusCode: 201, Header: map[string]string{v: "1", "Content-Type": "application/json"}, Body: []byte(`{}`)}
		}},
		{"HeaderValue", func(v string) *driver.Response {
			return &driver.Response{StatusCode: 201, Header: map[string]string{"X-Note": v}, Body: []byte(`{}`)}
		}},
		{"Body", func(v string) *driver.Response {
			return &driver.Response{StatusCode: 201, Header: map[string]string{"Content-Type": "application/json"}, Body: []byte(v)}
		}},
	}
	m := r.merchant(t)
	for _, f := range completeFields {
		for _, hv := range HostileStrings() {
			n++
			what := fmt.Sprintf("%s=%s", f.name, hv.Name)
			k := fmt.Sprintf("hostile-%d", n)
			begin(t, s, idemReq(m, k, "fp", "tok", "pay_1", r.at(0)), driver.Acquired)
			resp := f.resp(hv.Value)
			err := hostileCall(func() error {
				return s.Complete(ctx, driver.CompleteRequest{Merchant: m, Key: k, Token: "tok", Response: resp, Now: r.at(time.Second), TTL: time.Hour})
			})
			if hostileRefusal(t, driver.ErrInvalidInput, "Complete with "+what, hv.Value, err) {
				refusals = append(refusals, what)
				// Nothing was stored: the record is still in progress and
				// its owner completes it.
				begin(t, s, idemReq(m, k, "fp", "tok-2", "pay_2", r.at(2*time.Second)), driver.InProgress)
				complete(t, s, m, k, "tok", sampleResponse("pay_1"), r.at(2*time.Second), time.Hour)
				continue
			}
			rep := begin(t, s, idemReq(m, k, "fp", "tok-2", "pay_2", r.at(2*time.Second)), driver.Replay)
			if d := idemResponseDiff(rep.Record.Response, resp); len(d) > 0 {
				t.Errorf("replay after Complete with %s: %s", what, strings.Join(d, "; "))
			}
			if admin != nil {
				rec, err := admin.Get(ctx, m, k)
				if err != nil {
					t.Errorf("Admin Get after Complete with %s: %v", what, err)
				} else if d := idemResponseDiff(rec.Response, resp); len(d) > 0 {
					t.Errorf("Admin Get after Complete with %s: %s", what, strings.Join(d, "; "))
				}
			}
		}
	}
	t.Logf("capability: %d of %d hostile values kept exactly, refused: %s", n-len(refusals), n, strings.Join(refusals, " "))
	// The store keeps working.
	m = r.merchant(t)
	begin(t, s, idemReq(m, "after", "fp", "t1", "pay_1", r.at(0)), driver.Acquired)
	complete(t, s, m, "after", "t1", sampleResponse("pay_1"), r.at(time.Second), time.Hour)
	rep := begin(t, s, idemReq(m, "after", "fp", "t2", "pay_2", r.at(2*time.Second)), driver.Replay)
	sameResponse(t, "replay after the hostile values", rep.Record.Response, sampleResponse("pay_1"))
}
