package chaos

import (
	"context"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/pstest"
	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"

	busdriver "github.com/payrail/payrail/bus/driver"
	"github.com/payrail/payrail/bus/inmemory"
	"github.com/payrail/payrail/bus/kafka"
	"github.com/payrail/payrail/bus/pubsub"
	idemdriver "github.com/payrail/payrail/idempotency/driver"
	"github.com/payrail/payrail/idempotency/memory"
	idemredis "github.com/payrail/payrail/idempotency/redis"
	"github.com/payrail/payrail/internal/testkit"
	"github.com/payrail/payrail/payments"
	"github.com/payrail/payrail/payments/postgres"
)

// soakSize returns the number of payments: PAYRAIL_SOAK_PAYMENTS, or the
// CI scale ci; and the seed: PAYRAIL_SOAK_SEED, or the time.
func soakSize(t *testing.T, ci int) (int, uint64) {
	t.Helper()
	n := ci
	if v := os.Getenv("PAYRAIL_SOAK_PAYMENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			t.Fatalf("PAYRAIL_SOAK_PAYMENTS=%q: want a positive integer", v)
		}
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("PAYRAIL_SOAK_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("PAYRAIL_SOAK_SEED=%q: want an unsigned integer", v)
		}
		seed = s
	}
	t.Logf("soak: %d payments, seed %d (rerun with PAYRAIL_SOAK_SEED=%d)", n, seed, seed)
	return n, seed
}

func soakConfig(t *testing.T, n int, seed uint64) Config {
	return Config{Seed: seed, Payments: n, Clients: 16, Instances: 1, Faults: DefaultFaults(),
		Timings: DefaultTimings(), SettleTimeout: 30*time.Second + time.Duration(n)*3*time.Millisecond, // a 100k durable run drains its worker backlog on 2 cores
		Logf: t.Logf}
}

func report(t *testing.T, r *Report, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("soak harness: %v", err)
	}
	t.Logf("soak report: %s", r)
	if r.Orders == 0 || r.Charges == 0 || len(r.Faults) == 0 {
		t.Fatalf("the soak did nothing worth checking: %s", r)
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestSoakMemory soaks memory stores and the in-memory bus: gateway faults
// (5xx before and after charging, slow calls, Lookup failures), duplicate
// publishes and client re-submissions, then SIGTERM under load.
func TestSoakMemory(t *testing.T) {
	n, seed := soakSize(t, 1500)
	ctx := context.Background()
	store := payments.NewMemoryStore()
	idem := memory.New()
	broker := inmemory.NewBroker()
	u := &url.URL{Scheme: "inmemory", Host: "payments"}
	env := &Env{
		Name: "memory", Store: store,
		OpenStore: func(context.Context) (payments.Store, error) { return store, nil },
		OpenIdem:  func(context.Context) (idemdriver.Store, error) { return idem, nil },
		OpenTopic: func(ctx context.Context) (busdriver.Topic, error) { return broker.OpenTopic(ctx, u) },
		OpenSub:   func(ctx context.Context) (busdriver.Subscription, error) { return broker.OpenSubscription(ctx, u) },
	}
	cfg := soakConfig(t, n, seed)
	r, err := Run(ctx, env, cfg)
	report(t, r, err)
}

// TestSoakPeers soaks the production peers: payments in PostgreSQL,
// idempotency keys in Redis, commands over Kafka (kfake), two instances at
// a time killed -9 (or SIGTERMed) and restarted, store connections dropped.
func TestSoakPeers(t *testing.T) {
	n, seed := soakSize(t, 600)
	env := durablePeers(t, "postgres-redis-kafka")

	// Kafka: an in-process cluster (kfake) with the topic and its DLQ.
	ctx := context.Background()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(8),
		kfake.GroupMinSessionTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	brokers := strings.Join(cluster.ListenAddrs(), ",")
	if err := kafka.EnsureTopic(ctx, "kafka://"+brokers+"/payments-soak"); err != nil {
		t.Fatal(err)
	}
	topicURL, _ := url.Parse("kafka://" + brokers + "/payments-soak")
	subURL, _ := url.Parse("kafka://" + brokers + "/payments-soak?group=soak&session_timeout=1s&heartbeat_interval=200ms" +
		"&rebalance_timeout=6s&drain_timeout=3s&commit_interval=200ms")
	env.OpenTopic = func(ctx context.Context) (busdriver.Topic, error) { return kafka.Driver{}.OpenTopic(ctx, topicURL) }
	env.OpenSub = func(ctx context.Context) (busdriver.Subscription, error) {
		return kafka.Driver{}.OpenSubscription(ctx, subURL)
	}
	soakDurable(t, env, n, seed)
}

// TestSoakPeersPubSub is TestSoakPeers with the commands over Pub/Sub
// (pstest, in-process): a killed instance's deliveries come back when
// their ack deadline lapses, and a SIGTERMed one hands back what it
// fetched.
func TestSoakPeersPubSub(t *testing.T) {
	n, seed := soakSize(t, 600)
	env := durablePeers(t, "postgres-redis-pubsub")
	ctx := context.Background()
	pstest.SetMinAckDeadline(time.Second)
	srv := pstest.NewServer()
	t.Cleanup(func() { _ = srv.Close() })
	t.Setenv("PUBSUB_EMULATOR_HOST", srv.Addr)
	const project = "payrail-soak"
	sub := "pubsub://" + project + "/payments-soak?subscription=payments-worker&ack_deadline=2s&streams=2"
	if _, err := pubsub.Provision(ctx, sub); err != nil {
		t.Fatal(err)
	}
	topicURL, _ := url.Parse("pubsub://" + project + "/payments-soak")
	subURL, _ := url.Parse(sub)
	env.OpenTopic = func(ctx context.Context) (busdriver.Topic, error) { return pubsub.Driver{}.OpenTopic(ctx, topicURL) }
	env.OpenSub = func(ctx context.Context) (busdriver.Subscription, error) {
		return pubsub.Driver{}.OpenSubscription(ctx, subURL)
	}
	soakDurable(t, env, n, seed)
}

// soakDurable runs the soak of durable peers: two instances, kill -9 at
// 2.5 s and 5 s and SIGTERM at 7.5 s under load, store connections
// dropped every 2 s; every one of those faults must have fired.
func soakDurable(t *testing.T, env *Env, n int, seed uint64) {
	t.Helper()
	cfg := soakConfig(t, n, seed)
	cfg.Instances = 2
	cfg.KillEvery = 2500 * time.Millisecond // kill -9 at 2.5 s and 5 s, SIGTERM at 7.5 s
	cfg.DisconnectEvery = 2 * time.Second
	cfg.LoadDuration = 8 * time.Second // however few the orders, every fault fires under load
	r, err := Run(context.Background(), env, cfg)
	report(t, r, err)
	for _, kind := range []string{FaultKill, FaultSIGTERM, FaultPostgresDrop, FaultRedisDrop} {
		if r.Faults[kind] == 0 {
			t.Errorf("no %s fault was injected: the soak did not test what it claims", kind)
		}
	}
}

// durablePeers returns an Env (without its bus) on PostgreSQL and Redis
// on 127.0.0.1: a payments table and a key prefix of the test's own, and
// connections named so that the drop faults end only this test's.
func durablePeers(t *testing.T, name string) *Env {
	t.Helper()
	ctx := context.Background()
	app := testkit.StoreUniqueName("payrail-soak-")

	// PostgreSQL: a table of our own; connections named so that the drop
	// fault terminates only this test's sessions.
	admin, err := pgx.Connect(ctx, testkit.StorePostgresURL())
	testkit.StoreRequirePeer(t, "PostgreSQL", err)
	table := strings.ReplaceAll(testkit.StoreUniqueName("soak_payments_"), "-", "_")
	pu, _ := url.Parse(testkit.StorePostgresURL())
	q := pu.Query()
	q.Set("table", table)
	q.Set("application_name", app)
	pu.RawQuery = q.Encode()
	pgURL := pu.String()
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "DROP TABLE IF EXISTS "+pgx.Identifier{table}.Sanitize()+", "+
			pgx.Identifier{table + "_routing_policy"}.Sanitize())
		_ = admin.Close(context.Background())
	})
	if err := postgres.Migrate(ctx, pgURL); err != nil {
		t.Fatal(err)
	}
	checkStore, err := postgres.Open(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = checkStore.Close() })

	// Redis: a key prefix of our own; clients named likewise.
	ro, err := goredis.ParseURL(testkit.StoreRedisURL())
	if err != nil {
		t.Fatal(err)
	}
	rc := goredis.NewClient(ro)
	testkit.StoreRequirePeer(t, "Redis", rc.Ping(ctx).Err())
	prefix := app + ":"
	t.Cleanup(func() {
		iter := rc.Scan(context.Background(), 0, prefix+"*", 1000).Iterator()
		for iter.Next(context.Background()) {
			rc.Del(context.Background(), iter.Val())
		}
		_ = rc.Close()
	})
	ru, _ := url.Parse(testkit.StoreRedisURL())
	q = ru.Query()
	q.Set("prefix", prefix)
	q.Set("client_name", app)
	ru.RawQuery = q.Encode()
	redisURL := ru.String()

	return &Env{
		Name: name, Durable: true, Store: checkStore, CloseStores: true,
		OpenStore: func(ctx context.Context) (payments.Store, error) { return postgres.Open(ctx, pgURL) },
		OpenIdem:  func(ctx context.Context) (idemdriver.Store, error) { return idemredis.Open(ctx, redisURL) },
		Disconnects: []Disconnect{
			{Kind: FaultPostgresDrop, Drop: func(ctx context.Context) error {
				_, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
					WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = $1`, app)
				return err
			}},
			{Kind: FaultRedisDrop, Drop: func(ctx context.Context) error { return killRedisClients(ctx, rc, app) }},
		},
	}
}

// killRedisClients is CLIENT KILL TYPE normal restricted to the clients
// named name (CLIENT KILL has no name filter: they are killed by id), so
// that other tests sharing the server are left alone.
func killRedisClients(ctx context.Context, rc *goredis.Client, name string) error {
	list, err := rc.ClientList(ctx).Result()
	if err != nil {
		return err
	}
	for line := range strings.SplitSeq(list, "\n") {
		var id string
		match := false
		for f := range strings.FieldsSeq(line) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "id":
				id = v
			case "name":
				match = v == name
			}
		}
		if match && id != "" {
			if err := rc.Do(ctx, "CLIENT", "KILL", "ID", id, "TYPE", "normal").Err(); err != nil && !strings.Contains(err.Error(), "No such client") {
				return err
			}
		}
	}
	return nil
}
