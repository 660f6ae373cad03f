package testkit

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payrail/payrail/payments"
)

// PaymentStoreHarness describes a payments.Store under test.
type PaymentStoreHarness struct {
	// Open returns a new, empty store; the suite closes it. Each call gets
	// its own namespace (for a database store, its own table).
	Open func(ctx context.Context, t testing.TB) (payments.Store, error)
	// Reopen, if not nil, returns another client of the store s was opened
	// as (same namespace, own connections): the suite then checks that
	// writes are visible across clients and that concurrent updates from
	// two clients have one winner.
	Reopen func(ctx context.Context, t testing.TB, s payments.Store) (payments.Store, error)
	// ClosedErrors declares that operations after Close return an error
	// (stores holding connections); a store whose Close releases nothing
	// (payments.MemoryStore) leaves it false.
	ClosedErrors bool
}

// RunPaymentStoreConformance runs the payment store conformance suite:
// create/get round trip of every field, id conflicts, merchant scoping,
// optimistic versioning (a stale Update is refused, concurrent updates have
// exactly one winner), ListStale filtering and ordering, copies independent
// of the store, context cancellation, hostile strings (kept exactly or
// refused with payments.ErrStoreInvalid), the webhook outbox
// (payments.EventStore: events kept with the payment, found by when they
// are due, updated without a version change) and Close.
func RunPaymentStoreConformance(t *testing.T, h PaymentStoreHarness) {
	t.Helper()
	if h.Open == nil {
		t.Fatal("testkit: PaymentStoreHarness.Open is nil")
	}
	cases := []struct {
		name string
		fn   func(t *testing.T, h PaymentStoreHarness, s payments.Store)
	}{
		{"CreateGetRoundTrip", storeRoundTrip},
		{"CreateConflict", storeCreateConflict},
		{"MerchantScoping", storeMerchantScoping},
		{"OptimisticUpdate", storeOptimisticUpdate},
		{"ConcurrentUpdatesOneWinner", storeConcurrentUpdates},
		{"ListStale", storeListStale},
		{"CopiesAreIndependent", storeCopies},
		{"ContextCancellation", storeContextCancellation},
		{"SharedAcrossClients", storeShared},
		{"HostileStrings", storeHostileStrings},
		{"Events", storeEvents},
		{"Close", storeClose},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := h.Open(context.Background(), t)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			t.Cleanup(func() { _ = s.Close() })
			c.fn(t, h, s)
		})
	}
}

// storeT0 is a clock reading at microsecond resolution (what databases keep).
var storeT0 = time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.UTC)

func storePayment(id, merchant string, status payments.Status, updated time.Time) *payments.Payment {
	return &payments.Payment{
		ID: id, Merchant: merchant, Amount: 1999, Currency: "EUR", PaymentMethod: "pm_card_visa", Origin: "web",
		CaptureMethod: payments.CaptureAutomatic, Status: status, Gateway: "mock", GatewayReference: "ch_" + id,
		AmountCaptured: 1999, AmountRefunded: 500,
		Refunds: []payments.Refund{{ID: "re_" + id, PaymentID: id, Amount: 500, Currency: "EUR", Status: "succeeded",
			GatewayReference: "gre_1", CreatedAt: updated}},
		Metadata:  map[string]string{"order": "1001", "note": "ñandú – 100 €"},
		CreatedAt: storeT0, UpdatedAt: updated,
		// The fencing claim is store-only state (not in the API's JSON):
		// stores must keep it too.
		AttemptUntil: updated.Add(90 * time.Second),
		// So is the count of reconciliation attempts, shared by every
		// process's Reconciler.
		ReconcileAttempts: 2,
	}
}

func storeEqual(t testing.TB, what string, got, want *payments.Payment) {
	t.Helper()
	g, w := got.Clone(), want.Clone()
	// nil and empty collections are the same payment.
	if len(g.Refunds) == 0 && len(w.Refunds) == 0 {
		g.Refunds, w.Refunds = nil, nil
	}
	if len(g.Metadata) == 0 && len(w.Metadata) == 0 {
		g.Metadata, w.Metadata = nil, nil
	}
	diff := func(field string, a, b any) { t.Errorf("%s: %s = %v, want %v", what, field, a, b) }
	if !g.CreatedAt.Equal(w.CreatedAt) {
		diff("CreatedAt", g.CreatedAt, w.CreatedAt)
	}
	if !g.UpdatedAt.Equal(w.UpdatedAt) {
		diff("UpdatedAt", g.UpdatedAt, w.UpdatedAt)
	}
	if !g.AttemptUntil.Equal(w.AttemptUntil) {
		diff("AttemptUntil", g.AttemptUntil, w.AttemptUntil)
	}
	if len(g.Refunds) != len(w.Refunds) {
		diff("Refunds", g.Refunds, w.Refunds)
	} else {
		for i := range g.Refunds {
			a, b := g.Refunds[i], w.Refunds[i]
			if !a.CreatedAt.Equal(b.CreatedAt) {
				diff(fmt.Sprintf("Refunds[%d].CreatedAt", i), a.CreatedAt, b.CreatedAt)
			}
			a.CreatedAt, b.CreatedAt = time.Time{}, time.Time{}
			if a != b {
				diff(fmt.Sprintf("Refunds[%d]", i), a, b)
			}
		}
	}
	if !maps.Equal(g.Metadata, w.Metadata) {
		diff("Metadata", g.Metadata, w.Metadata)
	}
	g.CreatedAt, g.UpdatedAt, w.CreatedAt, w.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	g.AttemptUntil, w.AttemptUntil = time.Time{}, time.Time{}
	g.Refunds, w.Refunds, g.Metadata, w.Metadata = nil, nil, nil, nil
	if !reflect.DeepEqual(*g, *w) {
		t.Errorf("%s: got %+v, want %+v", what, *g, *w)
	}
}

func storeRoundTrip(t *testing.T, _ PaymentStoreHarness, s payments.Store) {
	ctx := context.Background()
	p := storePayment("pay_rt", "acme", payments.StatusCaptured, storeT0.Add(time.Second))
	p.DeclineCode, p.FailureCode = "none", "none"
	if err := s.Create(ctx, p); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if p.Version != 1 {
		t.Errorf("Create set Version %d, want 1", p.Version)
	}
	got, err := s.Get(ctx, "acme", "pay_rt")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	storeEqual(t, "Get after Create", got, p)
	// Clearing the fencing claim is stored too.
	got.AttemptUntil = time.Time{}
	got.ReconcileAttempts = 3
	if err := s.Update(ctx, got); err != nil {
		t.Fatalf("Update clearing AttemptUntil: %v", err)
	}
	again, err := s.Get(ctx, "acme", "pay_rt")
	if err != nil {
		t.Fatalf("Get after Update: %v", err)
	}
	if !again.AttemptUntil.IsZero() || again.ReconcileAttempts != 3 {
		t.Errorf("after Update: AttemptUntil = %v, ReconcileAttempts = %d; want zero, 3", again.AttemptUntil, again.ReconcileAttempts)
	}
	again.ReconcileAttempts = 0
	if err := s.Update(ctx, again); err != nil {
		t.Fatalf("Update resetting ReconcileAttempts: %v", err)
	}
	if again, err := s.Get(ctx, "acme", "pay_rt"); err != nil || again.ReconcileAttempts != 0 {
		t.Errorf("ReconcileAttempts after resetting = %d (err %v), want 0", again.ReconcileAttempts, err)
	}
	// A minimal payment: empty collections and optional fields.
	m := &payments.Payment{ID: "pay_min", Merchant: "acme", Amount: 1, Currency: "JPY", Status: payments.StatusPending,
		CreatedAt: storeT0, UpdatedAt: storeT0}
	if err := s.Create(ctx, m); err != nil {
		t.Fatalf("Create minimal: %v", err)
	}
	got, err = s.Get(ctx, "acme", "pay_min")
	if err != nil {
		t.Fatalf("Get minimal: %v", err)
	}
	storeEqual(t, "minimal payment", got, m)
	_, err = s.Get(ctx, "acme", "pay_missing")
	if !errors.Is(err, payments.ErrNotFound) {
		t.Errorf("Get missing: %v, want ErrNotFound", err)
	}
}

func storeCreateConflict(t *testing.T, _ PaymentStoreHarness, s payments.Store) {
	ctx := context.Background()
	if err := s.Create(ctx, storePayment("pay_dup", "acme", payments.StatusPending, storeT0)); err != nil {
		t.Fatal(err)
	}
	other := storePayment("pay_dup", "acme", payments.StatusFailed, storeT0)
	other.Amount = 5
	if err := s.Create(ctx, other); !errors.Is(err, payments.ErrStoreConflict) {
		t.Fatalf("Create of an existing id: %v, want ErrStoreConflict", err)
	}
	// Ids are global: another merchant cannot reuse one either.
	if err := s.Create(ctx, storePayment("pay_dup", "globex", payments.StatusPending, storeT0)); !errors.Is(err, payments.ErrStoreConflict) {
		t.Fatalf("Create of an existing id by another merchant: %v, want ErrStoreConflict", err)
	}
	got, err := s.Get(ctx, "acme", "pay_dup")
	if err != nil || got.Amount != 1999 || got.Status != payments.StatusPending {
		t.Fatalf("the refused Create changed the payment: %+v %v", got, err)
	}
}

func storeMerchantScoping(t *testing.T, _ PaymentStoreHarness, s payments.Store) {
	ctx := context.Background()
	p := storePayment("pay_scoped", "acme", payments.StatusAuthorized, storeT0)
	if err := s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "globex", "pay_scoped"); !errors.Is(err, payments.ErrNotFound) {
		t.Errorf("Get by another merchant: %v, want ErrNotFound", err)
	}
	q := p.Clone()
	q.Merchant = "globex"
	q.Status = payments.StatusVoided
	if err := s.Update(ctx, q); !errors.Is(err, payments.ErrNotFound) {
		t.Errorf("Update by another merchant: %v, want ErrNotFound", err)
	}
	got, err := s.Get(ctx, "acme", "pay_scoped")
	if err != nil || got.Status != payments.StatusAuthorized || got.Version != 1 {
		t.Errorf("after a foreign Update: %+v %v", got, err)
	}
}

func storeOptimisticUpdate(t *testing.T, _ PaymentStoreHarness, s payments.Store) {
	ctx := context.Background()
	p := storePayment("pay_upd", "acme", payments.StatusAuthorized, storeT0)
	if err := s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	stale, _ := s.Get(ctx, "acme", "pay_upd")
	p.Status = payments.StatusCaptured
	p.UpdatedAt = storeT0.Add(time.Minute)
	p.Refunds = append(p.Refunds, payments.Refund{ID: "re_2", PaymentID: "pay_upd", Amount: 1, Currency: "EUR", Status: "succeeded", CreatedAt: p.UpdatedAt})
	if err := s.Update(ctx, p); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if p.Version != 2 {
		t.Errorf("Update set Version %d, want 2", p.Version)
	}
	got, err := s.Get(ctx, "acme", "pay_upd")
	if err != nil {
		t.Fatal(err)
	}
	storeEqual(t, "after Update", got, p)
	// The stale copy (Version 1) is refused and changes nothing.
	stale.Status = payments.StatusVoided
	if err := s.Update(ctx, stale); !errors.Is(err, payments.ErrStoreConflict) {
		t.Fatalf("stale Update: %v, want ErrStoreConflict", err)
	}
	if stale.Version != 1 {
		t.Errorf("a refused Update changed the caller's Version to %d", stale.Version)
	}
	got, _ = s.Get(ctx, "acme", "pay_upd")
	if got.Status != payments.StatusCaptured || got.Version != 2 {
		t.Errorf("after a stale Update: status %s version %d", got.Status, got.Version)
	}
	missing := storePayment("pay_nope", "acme", payments.StatusPending, storeT0)
	missing.Version = 1
	if err := s.Update(ctx, missing); !errors.Is(err, payments.ErrNotFound) {
		t.Errorf("Update of a missing payment: %v, want ErrNotFound", err)
	}
	// Several updates in a row.
	for i := range 3 {
		got.AmountRefunded += 10
		if err := s.Update(ctx, got); err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
	}
	final, _ := s.Get(ctx, "acme", "pay_upd")
	if final.Version != 5 || final.AmountRefunded != 530 {
		t.Errorf("after 3 more updates: version %d refunded %d, want 5 and 530", final.Version, final.AmountRefunded)
	}
}

func storeConcurrentUpdates(t *testing.T, h PaymentStoreHarness, s payments.Store) {
	ctx := context.Background()
	if err := s.Create(ctx, storePayment("pay_race", "acme", payments.StatusAuthorized, storeT0)); err != nil {
		t.Fatal(err)
	}
	clients := []payments.Store{s}
	if h.Reopen != nil {
		s2, err := h.Reopen(ctx, t, s)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		t.Cleanup(func() { _ = s2.Close() })
		clients = append(clients, s2)
	}
	const n = 50
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		wins      int
		conflicts int
		others    []error
	)
	copies := make([]*payments.Payment, n)
	for i := range copies { // every contender read version 1
		p, err := clients[i%len(clients)].Get(ctx, "acme", "pay_race")
		if err != nil {
			t.Fatal(err)
		}
		copies[i] = p
	}
	for i := range n {
		c, p := clients[i%len(clients)], copies[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.AmountCaptured = int64(i)
			err := c.Update(ctx, p)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, payments.ErrStoreConflict):
				conflicts++
			default:
				others = append(others, err)
			}
		}()
	}
	wg.Wait()
	if len(others) > 0 || wins != 1 || conflicts != n-1 {
		t.Fatalf("%d updates of version 1: %d won, %d conflicts, errors %v; want exactly one winner", n, wins, conflicts, others)
	}
	got, _ := s.Get(ctx, "acme", "pay_race")
	if got.Version != 2 {
		t.Errorf("version after the race %d, want 2", got.Version)
	}
}

func storeListStale(t *testing.T, _ PaymentStoreHarness, s payments.Store) {
	ctx := context.Background()
	mk := func(id, merchant string, st payments.Status, age time.Duration) {
		t.Helper()
		if err := s.Create(ctx, storePayment(id, merchant, st, storeT0.Add(-age))); err != nil {
			t.Fatal(err)
		}
	}
	mk("p_old_pending", "acme", payments.StatusPending, 10*time.Minute)
	mk("p_older_processing", "globex", payments.StatusProcessing, 20*time.Minute)
	mk("p_new_pending", "acme", payments.StatusPending, 10*time.Second)
	mk("p_old_captured", "acme", payments.StatusCaptured, 30*time.Minute)
	mk("p_same_age_b", "acme", payments.StatusPending, 15*time.Minute)
	mk("p_same_age_a", "globex", payments.StatusProcessing, 15*time.Minute)
	ids := func(ps []*payments.Payment) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.ID)
		}
		return out
	}
	cutoff := storeT0.Add(-time.Minute)
	all, err := s.ListStale(ctx, []payments.Status{payments.StatusPending, payments.StatusProcessing}, cutoff, 100)
	if err != nil {
		t.Fatalf("ListStale: %v", err)
	}
	want := []string{"p_older_processing", "p_same_age_a", "p_same_age_b", "p_old_pending"}
	if got := ids(all); !slices.Equal(got, want) {
		t.Errorf("ListStale = %v, want %v (oldest first, then by id, across merchants)", got, want)
	}
	for _, p := range all {
		if p.Version != 1 {
			t.Errorf("%s: Version %d, want 1", p.ID, p.Version)
		}
	}
	lim, err := s.ListStale(ctx, []payments.Status{payments.StatusPending, payments.StatusProcessing}, cutoff, 2)
	if err != nil || !slices.Equal(ids(lim), want[:2]) {
		t.Errorf("ListStale limit 2 = %v %v, want %v", ids(lim), err, want[:2])
	}
	only, err := s.ListStale(ctx, []payments.Status{payments.StatusCaptured}, cutoff, 100)
	if err != nil || !slices.Equal(ids(only), []string{"p_old_captured"}) {
		t.Errorf("ListStale captured = %v %v", ids(only), err)
	}
	// The cutoff is exclusive.
	exact, err := s.ListStale(ctx, []payments.Status{payments.StatusPending}, storeT0.Add(-10*time.Minute), 100)
	if err != nil || !slices.Equal(ids(exact), []string{"p_same_age_b"}) {
		t.Errorf("ListStale with the cutoff at an UpdatedAt = %v %v, want [p_same_age_b]", ids(exact), err)
	}
	none, err := s.ListStale(ctx, []payments.Status{payments.StatusRefunded}, cutoff, 100)
	if err != nil || len(none) != 0 {
		t.Errorf("ListStale refunded = %v %v, want none", ids(none), err)
	}
	wantP := storePayment("p_older_processing", "globex", payments.StatusProcessing, storeT0.Add(-20*time.Minute))
	wantP.Version = 1
	storeEqual(t, "listed payment", all[0], wantP)
}

func storeCopies(t *testing.T, _ PaymentStoreHarness, s payments.Store) {
	ctx := context.Background()
	p := storePayment("pay_copy", "acme", payments.StatusCaptured, storeT0)
	if err := s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	// Mutating the caller's payment or a returned copy leaves the store
	// alone. (Metadata is read-only after creation by the Store contract,
	// which lets a store share the map, so it is not mutated here.)
	p.Refunds[0].Amount = 1
	p.Status = payments.StatusRefunded
	p.AmountRefunded = 1999
	got, _ := s.Get(ctx, "acme", "pay_copy")
	got.Refunds[0].Amount = 2
	got.Refunds = append(got.Refunds, payments.Refund{ID: "re_extra"})
	got.Status = payments.StatusVoided
	again, _ := s.Get(ctx, "acme", "pay_copy")
	if again.Refunds[0].Amount != 500 || len(again.Refunds) != 1 || again.Status != payments.StatusCaptured || again.AmountRefunded != 500 {
		t.Errorf("stored payment changed through a copy: %+v", again)
	}
}

func storeContextCancellation(t *testing.T, _ PaymentStoreHarness, s payments.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := storePayment("pay_ctx", "acme", payments.StatusPending, storeT0)
	if err := s.Create(ctx, p); !errors.Is(err, context.Canceled) {
		t.Errorf("Create with a cancelled context: %v, want context.Canceled", err)
	}
	if _, err := s.Get(context.Background(), "acme", "pay_ctx"); !errors.Is(err, payments.ErrNotFound) {
		t.Errorf("the cancelled Create stored the payment: %v", err)
	}
	if _, err := s.Get(ctx, "acme", "pay_ctx"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a cancelled context: %v, want context.Canceled", err)
	}
	if err := s.Update(ctx, p); !errors.Is(err, context.Canceled) {
		t.Errorf("Update with a cancelled context: %v, want context.Canceled", err)
	}
	if _, err := s.ListStale(ctx, []payments.Status{payments.StatusPending}, storeT0, 10); !errors.Is(err, context.Canceled) {
		t.Errorf("ListStale with a cancelled context: %v, want context.Canceled", err)
	}
}

func storeShared(t *testing.T, h PaymentStoreHarness, s payments.Store) {
	if h.Reopen == nil {
		t.Log("capability: single-process store (Reopen is nil); nothing shared across clients to check")
		return
	}
	ctx := context.Background()
	s2, err := h.Reopen(ctx, t, s)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s2.Close()
	p := storePayment("pay_shared", "acme", payments.StatusPending, storeT0)
	if err := s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	got, err := s2.Get(ctx, "acme", "pay_shared")
	if err != nil {
		t.Fatalf("Get from another client: %v", err)
	}
	storeEqual(t, "seen by another client", got, p)
	got.Status = payments.StatusProcessing
	if err := s2.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, p); !errors.Is(err, payments.ErrStoreConflict) {
		t.Errorf("Update of a version another client replaced: %v, want ErrStoreConflict", err)
	}
}

func storeClose(t *testing.T, h PaymentStoreHarness, s payments.Store) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Create(ctx, storePayment("pay_before", "acme", payments.StatusPending, storeT0)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !h.ClosedErrors {
		t.Log("capability: Close releases nothing (ClosedErrors is false); operations after Close not checked")
		_ = s.Close() // a second Close must not panic
		return
	}
	if err := s.Create(ctx, storePayment("pay_closed", "acme", payments.StatusPending, storeT0)); err == nil {
		t.Error("Create after Close succeeded")
	}
	if _, err := s.Get(ctx, "acme", "pay_before"); err == nil {
		t.Error("Get after Close succeeded")
	}
	if _, err := s.ListStale(ctx, []payments.Status{payments.StatusPending}, storeT0.Add(time.Hour), 10); err == nil {
		t.Error("ListStale after Close succeeded")
	}
	_ = s.Close() // a second Close must not panic
	if ctx.Err() != nil {
		t.Fatal("an operation after Close hung")
	}
}

// HostileString is a value a client may send, by mistake or on purpose, in
// any string a store keeps.
type HostileString struct {
	Name  string
	Value string
}

// HostileStrings returns the values of the hostile-input cases: NUL bytes,
// invalid UTF-8 (a stray byte, an overlong encoding, UTF-16 surrogate
// halves encoded as bytes, a truncated sequence), control characters,
// values of 10 KiB and 1 MiB, right-to-left and zero-width characters, and
// SQL- and JSON-ish metacharacters.
func HostileStrings() []HostileString {
	// Varied printable text: long values that a store compresses no better
	// than real data.
	long := func(n int) string {
		b := make([]byte, n)
		x := uint32(2463534242)
		for i := range b {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			b[i] = byte(' ' + x%95)
		}
		return string(b)
	}
	return []HostileString{
		{"empty", ""},
		{"nul", "\x00"},
		{"embedded-nul", "pay\x00ment"},
		{"invalid-byte", "a\xffb"},
		{"overlong-slash", "\xc0\xaf"},
		{"high-surrogate-bytes", "\xed\xa0\x80"},
		{"low-surrogate-bytes", "x\xed\xbf\xbfy"},
		{"truncated-euro", "\xe2\x82"},
		{"latin1", "caf\xe9"},
		{"control", "\x01\x07\x08\x1b[31m\t\r\n\x7f\u0085"},
		{"10KiB", long(10 << 10)},
		{"1MiB", long(1 << 20)},
		{"rtl-zero-width", "\u202egnp.exe\u200b\u200c\u200d\u2060\ufeff"},
		{"line-separators", "a\u2028b\u2029c"},
		{"non-bmp", "💳𝔘\U0010FFFF"},
		{"noncharacter", "\ufffe\uffff\ufffd"},
		{"quotes-backslash", `"'\` + "`"},
		{"sql", `'); DROP TABLE x;--`},
		{"json-operator", `{"$ne":1}`},
		{"escaped-nul-text", `\u0000`},
		{"json-breakout", `","status":"captured`},
		{"separators", "%3A:%25/#*?[]\\"},
	}
}

// hostileShow describes a value for failure messages without printing a
// long one.
func hostileShow(v string) string {
	if len(v) > 40 {
		return fmt.Sprintf("%q... (%d bytes)", v[:40], len(v))
	}
	return fmt.Sprintf("%q", v)
}

// hostileDiff collects differences, showing values shortened.
type hostileDiff []string

func (d *hostileDiff) str(name, got, want string) {
	if got != want {
		*d = append(*d, fmt.Sprintf("%s = %s, want %s", name, hostileShow(got), hostileShow(want)))
	}
}

// storeDiff names the fields in which got differs from want (times
// compared as instants), showing values shortened.
func storeDiff(got, want *payments.Payment) []string {
	var out hostileDiff
	str := out.str
	str("ID", got.ID, want.ID)
	str("Merchant", got.Merchant, want.Merchant)
	str("Currency", got.Currency, want.Currency)
	str("PaymentMethod", got.PaymentMethod, want.PaymentMethod)
	str("Origin", got.Origin, want.Origin)
	str("CaptureMethod", string(got.CaptureMethod), string(want.CaptureMethod))
	str("Status", string(got.Status), string(want.Status))
	str("Gateway", got.Gateway, want.Gateway)
	str("GatewayReference", got.GatewayReference, want.GatewayReference)
	str("DeclineCode", got.DeclineCode, want.DeclineCode)
	str("FailureCode", got.FailureCode, want.FailureCode)
	if got.Amount != want.Amount || got.AmountCaptured != want.AmountCaptured || got.AmountRefunded != want.AmountRefunded {
		out = append(out, "amounts differ")
	}
	if !got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) || !got.AttemptUntil.Equal(want.AttemptUntil) {
		out = append(out, "times differ")
	}
	if len(got.Metadata) != len(want.Metadata) {
		out = append(out, fmt.Sprintf("Metadata has %d entries, want %d", len(got.Metadata), len(want.Metadata)))
	}
	for k, v := range want.Metadata {
		g, ok := got.Metadata[k]
		if !ok {
			out = append(out, fmt.Sprintf("Metadata key %s missing", hostileShow(k)))
			continue
		}
		str("Metadata["+hostileShow(k)+"]", g, v)
	}
	if len(got.Refunds) != len(want.Refunds) {
		out = append(out, fmt.Sprintf("%d refunds, want %d", len(got.Refunds), len(want.Refunds)))
		return out
	}
	for i := range want.Refunds {
		g, w := got.Refunds[i], want.Refunds[i]
		f := fmt.Sprintf("Refunds[%d].", i)
		str(f+"ID", g.ID, w.ID)
		str(f+"PaymentID", g.PaymentID, w.PaymentID)
		str(f+"Currency", g.Currency, w.Currency)
		str(f+"Status", g.Status, w.Status)
		str(f+"GatewayReference", g.GatewayReference, w.GatewayReference)
		if g.Amount != w.Amount || !g.CreatedAt.Equal(w.CreatedAt) {
			out = append(out, f+"Amount or CreatedAt differs")
		}
	}
	return out
}

// hostileField sets one string field of a T (a payment, a Begin request)
// to a hostile value.
type hostileField[T any] struct {
	name string
	set  func(p *T, v string)
	// identity fields (a payment's id and merchant, a record's merchant
	// and key) name what is stored: an Update cannot change them.
	identity bool
}

var hostileFields = []hostileField[payments.Payment]{
	{"ID", func(p *payments.Payment, v string) { p.ID = v }, true},
	{"Merchant", func(p *payments.Payment, v string) { p.Merchant = v }, true},
	{"Currency", func(p *payments.Payment, v string) { p.Currency = v }, false},
	{"PaymentMethod", func(p *payments.Payment, v string) { p.PaymentMethod = v }, false},
	{"Origin", func(p *payments.Payment, v string) { p.Origin = v }, false},
	{"CaptureMethod", func(p *payments.Payment, v string) { p.CaptureMethod = payments.CaptureMethod(v) }, false},
	{"Status", func(p *payments.Payment, v string) { p.Status = payments.Status(v) }, false},
	{"Gateway", func(p *payments.Payment, v string) { p.Gateway = v }, false},
	{"GatewayReference", func(p *payments.Payment, v string) { p.GatewayReference = v }, false},
	{"DeclineCode", func(p *payments.Payment, v string) { p.DeclineCode = v }, false},
	{"FailureCode", func(p *payments.Payment, v string) { p.FailureCode = v }, false},
	{"MetadataKey", func(p *payments.Payment, v string) { p.Metadata = map[string]string{v: "value", "order": "1001"} }, false},
	{"MetadataValue", func(p *payments.Payment, v string) { p.Metadata = map[string]string{"note": v, "order": "1001"} }, false},
	{"RefundID", func(p *payments.Payment, v string) { p.Refunds[0].ID = v }, false},
	{"RefundPaymentID", func(p *payments.Payment, v string) { p.Refunds[0].PaymentID = v }, false},
	{"RefundCurrency", func(p *payments.Payment, v string) { p.Refunds[0].Currency = v }, false},
	{"RefundStatus", func(p *payments.Payment, v string) { p.Refunds[0].Status = v }, false},
	{"RefundGatewayReference", func(p *payments.Payment, v string) { p.Refunds[0].GatewayReference = v }, false},
}

// hostileCall runs op, turning a panic into an error that matches nothing
// the suites accept.
func hostileCall(op func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return op()
}

// hostileRefusal checks the error of a store given a hostile value: nil,
// or one matching sentinel whose message does not echo the value. It
// reports whether the store refused.
func hostileRefusal(t *testing.T, sentinel error, what, value string, err error) (refused bool) {
	t.Helper()
	if err == nil {
		return false
	}
	if !errors.Is(err, sentinel) {
		t.Errorf("%s: error %v, want nil (kept exactly) or one matching %v", what, err, sentinel)
		return true
	}
	if len(value) >= 6 && strings.Contains(err.Error(), value) {
		t.Errorf("%s: the error message echoes the refused value", what)
	}
	return true
}

// storeHostileStrings feeds every string field of a payment, through
// Create and through Update, with each of HostileStrings: the store must
// keep the value exactly or refuse it with ErrStoreInvalid, storing
// nothing, and go on working.
func storeHostileStrings(t *testing.T, _ PaymentStoreHarness, s payments.Store) {
	ctx := context.Background()
	values := HostileStrings()
	n := 0
	var refusals []string
	for _, f := range hostileFields {
		for _, hv := range values {
			n++
			what := fmt.Sprintf("%s=%s", f.name, hv.Name)
			id := fmt.Sprintf("pay_hostile_%d", n)
			p := storePayment(id, "acme", payments.StatusCaptured, storeT0)
			p.DeclineCode, p.FailureCode = "none", "none"
			f.set(p, hv.Value)
			want := p.Clone()
			err := hostileCall(func() error { return s.Create(ctx, p) })
			refused := hostileRefusal(t, payments.ErrStoreInvalid, "Create with "+what, hv.Value, err)
			if refused {
				refusals = append(refusals, what)
			}
			var got *payments.Payment
			gerr := hostileCall(func() (err error) { got, err = s.Get(ctx, p.Merchant, p.ID); return err })
			switch {
			case refused && !errors.Is(gerr, payments.ErrNotFound):
				t.Errorf("Get after a refused Create with %s: %v, want ErrNotFound (nothing stored)", what, gerr)
			case !refused && gerr != nil:
				t.Errorf("Get after Create with %s: %v", what, gerr)
			case !refused:
				if d := storeDiff(got, want); len(d) > 0 {
					t.Errorf("Create with %s did not keep the payment exactly: %s", what, strings.Join(d, "; "))
				}
			}
			if f.identity {
				continue
			}
			// The same value in an Update of a stored, clean payment.
			uid := id + "_upd"
			clean := storePayment(uid, "acme", payments.StatusCaptured, storeT0)
			if err := s.Create(ctx, clean); err != nil {
				t.Fatalf("Create of a clean payment after %s: %v (the store stopped working)", what, err)
			}
			before := clean.Clone()
			u := clean.Clone()
			f.set(u, hv.Value)
			want = u.Clone()
			err = hostileCall(func() error { return s.Update(ctx, u) })
			refused = hostileRefusal(t, payments.ErrStoreInvalid, "Update with "+what, hv.Value, err)
			gerr = hostileCall(func() (err error) { got, err = s.Get(ctx, "acme", uid); return err })
			if gerr != nil {
				t.Errorf("Get after Update with %s: %v", what, gerr)
				continue
			}
			if refused {
				if got.Version != 1 {
					t.Errorf("a refused Update with %s changed the version to %d", what, got.Version)
				}
				want = before
			} else if got.Version != 2 {
				t.Errorf("Update with %s: version %d, want 2", what, got.Version)
			}
			if d := storeDiff(got, want); len(d) > 0 {
				t.Errorf("after Update with %s (refused %v): %s", what, refused, strings.Join(d, "; "))
			}
		}
	}
	t.Logf("capability: %d of %d hostile values kept exactly, refused: %s", n-len(refusals), n, strings.Join(refusals, " "))
	// The store keeps working.
	p := storePayment("pay_after_hostile", "acme", payments.StatusCaptured, storeT0)
	if err := s.Create(ctx, p); err != nil {
		t.Fatalf("Create after the hostile values: %v", err)
	}
	got, err := s.Get(ctx, "acme", "pay_after_hostile")
	if err != nil {
		t.Fatalf("Get after the hostile values: %v", err)
	}
	storeEqual(t, "payment stored after the hostile values", got, p)
}

// storeEvents: the outbox. Events are written with the payment (Create,
// Update) and read back exactly; ListEventsDue finds payments by
// EventsDue; UpdateEvents replaces them without changing the version, and
// refuses a stale version.
func storeEvents(t *testing.T, h PaymentStoreHarness, s payments.Store) {
	es, ok := s.(payments.EventStore)
	if !ok {
		t.Skipf("%T does not implement payments.EventStore: a Worker cannot deliver webhooks from it", s)
	}
	ctx := context.Background()
	due := storeT0.Add(time.Minute)
	withEvents := func(id string, at time.Time) *payments.Payment {
		p := storePayment(id, "m1", payments.StatusCaptured, storeT0)
		p.Events = []payments.Event{{
			Type: "payment.captured", PaymentVersion: 1, CreatedAt: at,
			State: &payments.EventState{Status: payments.StatusCaptured, AmountCaptured: 1999, Refunds: 1},
		}, {
			// The latest event: its state is the payment's (State nil).
			Type: "payment.refunded", PaymentVersion: 2, CreatedAt: at,
		}}
		p.EventsDue = at
		return p
	}
	a, b := withEvents("pay_ev_a", due), withEvents("pay_ev_b", due.Add(time.Second))
	plain := storePayment("pay_ev_c", "m1", payments.StatusCaptured, storeT0)
	for _, p := range []*payments.Payment{b, a, plain} {
		if err := s.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Get(ctx, "m1", a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Events) != 2 || got.Events[0].PaymentVersion != 1 || got.Events[0].Type != a.Events[0].Type ||
		!got.Events[0].CreatedAt.Equal(due) || got.Events[0].State == nil || got.Events[0].State.AmountCaptured != 1999 ||
		got.Events[1].State != nil || got.Events[1].PaymentVersion != 2 || !got.EventsDue.Equal(due) {
		t.Fatalf("events read back = %+v due %v, want %+v due %v", got.Events, got.EventsDue, a.Events, due)
	}
	list := func(before time.Time) []string {
		t.Helper()
		ps, err := es.ListEventsDue(ctx, before, 10)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, p := range ps {
			ids = append(ids, p.ID)
		}
		return ids
	}
	if ids := list(due.Add(-time.Nanosecond)); len(ids) != 0 {
		t.Errorf("ListEventsDue before anything is due = %v", ids)
	}
	if ids := list(due); len(ids) != 1 || ids[0] != a.ID {
		t.Errorf("ListEventsDue(due) = %v, want [%s]", ids, a.ID)
	}
	if ids := list(due.Add(time.Hour)); len(ids) != 2 || ids[0] != a.ID || ids[1] != b.ID {
		t.Errorf("ListEventsDue(later) = %v, want [%s %s] (earliest first; never the payment without events)", ids, a.ID, b.ID)
	}

	// Delivery bookkeeping: no version change, stale versions refused.
	version := got.Version
	got.Events[0].Resolved = true
	got.Events[0].Deliveries = []payments.Delivery{{Endpoint: "ep_1", Status: payments.DeliveryDelivered, Attempts: 1,
		FirstAttempt: due, LastAttempt: due, LastResult: "HTTP 204 No Content"}}
	got.EventsDue = time.Time{}
	if err := es.UpdateEvents(ctx, got); err != nil {
		t.Fatal(err)
	}
	again, err := s.Get(ctx, "m1", a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if again.Version != version {
		t.Errorf("UpdateEvents changed the version from %d to %d", version, again.Version)
	}
	if again.EventsRevision != got.EventsRevision || got.EventsRevision == 0 {
		t.Errorf("EventsRevision after UpdateEvents: stored %d, caller's %d; want equal and incremented", again.EventsRevision, got.EventsRevision)
	}
	// Two bookkeepers that read the same state: one wins (the sweeps'
	// claims rely on it), and a status writer that read before either
	// does not overwrite their delivery state.
	first, second, writer := again.Clone(), again.Clone(), again.Clone()
	first.EventsDue = due.Add(2 * time.Minute)
	if err := es.UpdateEvents(ctx, first); err != nil {
		t.Fatal(err)
	}
	second.EventsDue = due.Add(3 * time.Minute)
	if err := es.UpdateEvents(ctx, second); !errors.Is(err, payments.ErrStoreConflict) {
		t.Errorf("a second UpdateEvents from the same read = %v, want ErrStoreConflict", err)
	}
	writer.FailureCode = "x"
	if err := s.Update(ctx, writer); !errors.Is(err, payments.ErrStoreConflict) {
		t.Errorf("Update from a read older than an UpdateEvents = %v, want ErrStoreConflict", err)
	}
	again, err = s.Get(ctx, "m1", a.ID)
	if err != nil {
		t.Fatal(err)
	}
	again.EventsDue = time.Time{}
	if err := es.UpdateEvents(ctx, again); err != nil {
		t.Fatal(err)
	}
	if len(again.Events) != 2 || again.Events[1].State != nil || len(again.Events[0].Deliveries) != 1 || again.Events[0].Deliveries[0].Status != payments.DeliveryDelivered ||
		!again.Events[0].Resolved || !again.EventsDue.IsZero() {
		t.Errorf("after UpdateEvents: %+v due %v", again.Events, again.EventsDue)
	}
	if ids := list(due.Add(time.Hour)); len(ids) != 1 || ids[0] != b.ID {
		t.Errorf("ListEventsDue after a's events were delivered = %v, want [%s]", ids, b.ID)
	}
	stale := again.Clone()
	again.Status = payments.StatusRefunded
	if err := s.Update(ctx, again); err != nil {
		t.Fatal(err)
	}
	if err := es.UpdateEvents(ctx, stale); !errors.Is(err, payments.ErrStoreConflict) {
		t.Errorf("UpdateEvents with a stale version = %v, want ErrStoreConflict", err)
	}
	missing := stale.Clone()
	missing.ID = "pay_ev_missing"
	if err := es.UpdateEvents(ctx, missing); !errors.Is(err, payments.ErrNotFound) {
		t.Errorf("UpdateEvents of a missing payment = %v, want ErrNotFound", err)
	}
	// Dead-lettered deliveries are listed, in id order after a cursor.
	if ps, err := es.ListDeadEvents(ctx, "", 10); err != nil || len(ps) != 0 {
		t.Errorf("ListDeadEvents with none dead = %d, %v", len(ps), err)
	}
	dead, err := s.Get(ctx, "m1", b.ID)
	if err != nil {
		t.Fatal(err)
	}
	dead.Events[0].Resolved = true
	dead.Events[0].Deliveries = []payments.Delivery{{Endpoint: "ep_1", Status: payments.DeliveryDead, Attempts: 13, LastResult: "HTTP 500"}}
	if err := es.UpdateEvents(ctx, dead); err != nil {
		t.Fatal(err)
	}
	if ps, err := es.ListDeadEvents(ctx, "", 10); err != nil || len(ps) != 1 || ps[0].ID != b.ID || !ps[0].HasDeadEvents() {
		t.Errorf("ListDeadEvents = %v, %v; want [%s]", ps, err, b.ID)
	}
	if ps, err := es.ListDeadEvents(ctx, b.ID, 10); err != nil || len(ps) != 0 {
		t.Errorf("ListDeadEvents after the last = %d, %v", len(ps), err)
	}
	dead.Events[0].Deliveries[0].Status = payments.DeliveryPending
	if err := es.UpdateEvents(ctx, dead); err != nil {
		t.Fatal(err)
	}
	if ps, err := es.ListDeadEvents(ctx, "", 10); err != nil || len(ps) != 0 {
		t.Errorf("ListDeadEvents after a redelivery = %d, %v", len(ps), err)
	}
	// A writer's events are the store's once written: replacing them in
	// the writer's copy afterwards changes nothing stored. (Events read
	// may be shared with the store and are read-only: see Payment.Events.)
	b2, _ := s.Get(ctx, "m1", b.ID)
	mine := b2.Clone()
	mine.Events[0].Type = "payment.voided"
	if b3, _ := s.Get(ctx, "m1", b.ID); b3.Events[0].Type != "payment.captured" {
		t.Error("changing a deep copy of a read payment's events changed the store's")
	}
	if h.Reopen != nil {
		s2, err := h.Reopen(ctx, t, s)
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		if other, ok := s2.(payments.EventStore); ok {
			ps, err := other.ListEventsDue(ctx, due.Add(time.Hour), 10)
			if err != nil || len(ps) != 1 || ps[0].ID != b.ID || len(ps[0].Events) != 2 {
				t.Errorf("another client's ListEventsDue = %v, %v", ps, err)
			}
		}
	}
}
