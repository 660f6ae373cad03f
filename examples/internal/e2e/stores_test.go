package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"

	"github.com/payrail/payrail/examples/internal/apptest"
	"github.com/payrail/payrail/examples/internal/config"
	"github.com/payrail/payrail/examples/internal/opsctl"
	"github.com/payrail/payrail/examples/internal/server"
	"github.com/payrail/payrail/internal/testkit"
	"github.com/payrail/payrail/payments"
)

// storesPeers returns a PostgreSQL URL for a payments table and a Redis URL
// with a key prefix, both unique to the test and removed at its end.
func storesPeers(t *testing.T) (paymentsURL, idempotencyURL string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testkit.StorePostgresURL())
	testkit.StoreRequirePeer(t, "PostgreSQL", err)
	o, err := goredis.ParseURL(testkit.StoreRedisURL())
	if err != nil {
		t.Fatal(err)
	}
	rc := goredis.NewClient(o)
	testkit.StoreRequirePeer(t, "Redis", rc.Ping(ctx).Err())

	table := testkit.StoreUniqueName("e2e_payments_")
	prefix := testkit.StoreUniqueName("payrail-e2e:") + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = conn.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{table}.Sanitize()+", "+
			pgx.Identifier{table + "_routing_policy"}.Sanitize())
		_ = conn.Close(ctx)
		iter := rc.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			rc.Del(ctx, iter.Val())
		}
		_ = rc.Close()
	})
	pu, _ := url.Parse(testkit.StorePostgresURL())
	q := pu.Query()
	q.Set("table", table)
	pu.RawQuery = q.Encode()
	ru, _ := url.Parse(testkit.StoreRedisURL())
	q = ru.Query()
	q.Set("prefix", prefix)
	ru.RawQuery = q.Encode()
	return pu.String(), ru.String()
}

func storesOpsctl(t *testing.T, cfg *config.Config, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := opsctl.Run(context.Background(), opsctl.Env{Config: cfg, Stdout: &out, Stderr: &errOut}, args); code != 0 {
		t.Fatalf("opsctl %v: exit %d\n%s%s", args, code, &out, &errOut)
	}
	return out.String()
}

// TestSharedStoresServerAndWorker deploys the reference server and a
// standalone worker as production does: the payment store in PostgreSQL
// (PAYMENTS_STORE_URL, schema applied with opsctl db migrate), idempotency
// keys in Redis (IDEMPOTENCY_URL), async commands over Kafka (kfake, a real
// implementation of the wire protocol), both binaries opening every store
// from its URL. Sync payments replay byte for byte; async payments accepted
// by the server are completed by the worker through the shared store.
func TestSharedStoresServerAndWorker(t *testing.T) {
	paymentsURL, idemURL := storesPeers(t)
	brokers := apptest.Kafka(t, 2, "payments-stores-e2e")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfg := apptest.Config(t, map[string]string{
		"MESSAGE_BUS_ADAPTER": "kafka",
		"KAFKA_BROKERS":       brokers,
		"PAYMENTS_TOPIC":      "payments-stores-e2e",
		"KAFKA_GROUP_ID":      "payments-worker-stores-e2e",
		"PAYMENTS_STORE_URL":  paymentsURL,
		"IDEMPOTENCY_URL":     idemURL,
		"LOG_LEVEL":           "warn",
	})

	// Without the schema the server refuses to start, naming the fix.
	err := server.Run(ctx, cfg, server.Deps{Listener: listen(t), Stdout: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "opsctl db migrate") {
		t.Fatalf("server without the payments schema: %v; want an error naming opsctl db migrate", err)
	}
	storesOpsctl(t, cfg, "db", "migrate", "--apply")

	st := startStack(t, cfg, stackOptions{Ready: "/readyz"})

	// Sync: created, then replayed byte for byte from Redis.
	const syncBody = `{"amount":1999,"currency":"EUR","payment_method":"pm_card_visa","origin":"web"}`
	first := st.Post("stores-sync-1", syncBody, false)
	if first.Status != http.StatusCreated {
		t.Fatalf("sync POST = %d %s", first.Status, first.Body)
	}
	again := st.Post("stores-sync-1", syncBody, false)
	if again.Status != http.StatusCreated || !bytes.Equal(again.Body, first.Body) || again.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay = %d %q (Idempotent-Replayed %q); want the first response byte for byte", again.Status, again.Body, again.Header.Get("Idempotent-Replayed"))
	}
	var syncPay struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(first.Body, &syncPay); err != nil || syncPay.ID == "" {
		t.Fatalf("sync response %s: %v", first.Body, err)
	}

	// Async: accepted by the server, completed by the worker.
	want := map[string]payments.Status{}
	for i := range 10 {
		resp := st.Post(fmt.Sprintf("stores-async-%d", i), fmt.Sprintf(`{"amount":%d,"currency":"GBP","payment_method":"pm_card_visa","origin":"pos"}`, 100+i), true)
		if resp.Status != http.StatusAccepted || resp.Header.Get("Location") == "" {
			t.Fatalf("async POST = %d %s", resp.Status, resp.Body)
		}
		want[resp.Header.Get("Location")] = payments.StatusCaptured
	}
	_, ids := st.waitFinal(ctx, want)
	st.Stop()

	// Everything is in PostgreSQL, versioned by the worker's updates.
	ps, err := payments.OpenStore(ctx, paymentsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	for _, id := range append(ids, syncPay.ID) {
		p, err := ps.Get(ctx, "dev", id)
		if err != nil || p.Status != payments.StatusCaptured {
			t.Fatalf("payment %s in PostgreSQL: %+v %v", id, p, err)
		}
		if p.Version < 2 {
			t.Errorf("payment %s has version %d; want the updates counted", id, p.Version)
		}
	}
	// And the keys in Redis, as the ops CLI sees them.
	out := storesOpsctl(t, cfg, "keys", "ls", "--merchant", "dev", "--state", "completed", "--json")
	if n := strings.Count(out, `"state":"completed"`); n != 11 {
		t.Errorf("opsctl keys ls: %d completed keys, want 11:\n%s", n, out)
	}
	if !strings.Contains(out, `"key":"stores-sync-1"`) || !strings.Contains(out, syncPay.ID) {
		t.Errorf("opsctl keys ls lacks the sync key or its payment:\n%s", out)
	}
}
