package opsctl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"

	"github.com/payrail/payrail/examples/internal/config"
	"github.com/payrail/payrail/examples/internal/opsctl"
	"github.com/payrail/payrail/idempotency"
	"github.com/payrail/payrail/idempotency/dynamodb"
	idempostgres "github.com/payrail/payrail/idempotency/postgres"
	"github.com/payrail/payrail/internal/testkit"
	"github.com/payrail/payrail/internal/testkit/dynamodblocal"
	"github.com/payrail/payrail/payments"
	paypostgres "github.com/payrail/payrail/payments/postgres"
)

var (
	ddb    *dynamodblocal.Server
	ddbErr error
)

func TestMain(m *testing.M) {
	ddb, ddbErr = dynamodblocal.Start()
	code := m.Run()
	ddb.Stop()
	os.Exit(code)
}

// parseEnv parses the configuration from the variables of env alone.
func parseEnv(env map[string]string) (*config.Config, error) {
	return config.Parse(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
}

// run executes opsctl with env vars and returns its status and output.
func run(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	return runContext(t, context.Background(), env, args...)
}

// runContext is run with the context ctx.
func runContext(t *testing.T, ctx context.Context, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	cfg, err := parseEnv(env)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	var out, errOut bytes.Buffer
	code := opsctl.Run(ctx, opsctl.Env{Config: cfg, Stdout: &out, Stderr: &errOut}, args)
	return code, out.String(), errOut.String()
}

func withParam(t *testing.T, raw, k, v string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set(k, v)
	u.RawQuery = q.Encode()
	return u.String()
}

// pgURL returns a postgres URL with a fresh idempotency or payments table
// (migrated unless bare), dropped at the end of the test.
func pgURL(t *testing.T, prefix string, migrate func(context.Context, string) error) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testkit.StorePostgresURL())
	testkit.StoreRequirePeer(t, "PostgreSQL", err)
	table := testkit.StoreUniqueName(prefix)
	t.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+pgx.Identifier{table}.Sanitize())
		_ = conn.Close(context.Background())
	})
	u := withParam(t, testkit.StorePostgresURL(), "table", table)
	if migrate != nil {
		if err := migrate(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	return u
}

func redisURL(t *testing.T) string {
	t.Helper()
	o, err := goredis.ParseURL(testkit.StoreRedisURL())
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(o)
	testkit.StoreRequirePeer(t, "Redis", c.Ping(context.Background()).Err())
	prefix := testkit.StoreUniqueName("payrail-opsctl-test:") + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		_ = c.Close()
	})
	return withParam(t, testkit.StoreRedisURL(), "prefix", prefix)
}

func dynamoURL(t *testing.T) string {
	t.Helper()
	testkit.StoreRequirePeer(t, "DynamoDB Local", ddbErr)
	t.Setenv("AWS_ACCESS_KEY_ID", "local")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "local")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	c := awsddb.New(awsddb.Options{Region: "us-east-1", BaseEndpoint: aws.String(ddb.Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")})
	table := testkit.StoreUniqueName("opsctl-test-")
	if err := dynamodb.CreateTable(context.Background(), c, table); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = c.DeleteTable(context.Background(), &awsddb.DeleteTableInput{TableName: aws.String(table)})
	})
	return "dynamodb://" + table + "?region=us-east-1&endpoint=" + url.QueryEscape(ddb.Endpoint)
}

// fixture writes, for merchant m: "live" completed, "old" completed and
// expired a minute ago, "crashed" in progress with a lapsed lease (resource
// pay_crashed), "running" in progress with a live lease.
func fixture(t *testing.T, s *idempotency.Store, m string) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	begin := func(key, rid string, at time.Time, lease time.Duration) string {
		t.Helper()
		res, err := s.Begin(ctx, &idempotency.BeginRequest{Merchant: m, Key: key, Fingerprint: "fp", ResourceID: rid,
			Now: at, Lease: lease, TTL: time.Hour})
		if err != nil || res.Outcome != idempotency.Acquired {
			t.Fatalf("Begin %s: %v %v", key, res, err)
		}
		return res.Record.Token
	}
	resp := &idempotency.Response{StatusCode: 201, Header: map[string]string{"Content-Type": "application/json"}, Body: []byte(`{"id":"pay_live"}`)}
	tok := begin("live", "pay_live", now, time.Minute)
	if err := s.Complete(ctx, idempotency.CompleteRequest{Merchant: m, Key: "live", Token: tok, Response: resp, Now: now, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	// Expired a minute ago (DynamoDB's TTL would delete an item long expired).
	tok = begin("old", "pay_old", now.Add(-61*time.Minute), time.Minute)
	if err := s.Complete(ctx, idempotency.CompleteRequest{Merchant: m, Key: "old", Token: tok, Response: resp, Now: now.Add(-61 * time.Minute), TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	begin("crashed", "pay_crashed", now.Add(-time.Minute), 10*time.Second)
	begin("running", "pay_running", now, 5*time.Minute)
}

func exists(t *testing.T, s *idempotency.Store, m, key string) bool {
	t.Helper()
	_, err := s.Get(context.Background(), m, key)
	if errors.Is(err, idempotency.ErrNotFound) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

// wantRow fails unless a line of out has all of fields (whole
// whitespace-separated fields, in order).
func wantRow(t *testing.T, what, out string, fields ...string) {
	t.Helper()
	for line := range strings.Lines(out) {
		f, i := strings.Fields(line), 0
		for _, x := range f {
			if i < len(fields) && x == fields[i] {
				i++
			}
		}
		if i == len(fields) {
			return
		}
	}
	t.Errorf("%s: no line with %q in:\n%s", what, fields, out)
}

func want(t *testing.T, what string, code, wantCode int, out string, subs ...string) {
	t.Helper()
	if code != wantCode {
		t.Errorf("%s: exit %d, want %d; output:\n%s", what, code, wantCode, out)
	}
	for _, s := range subs {
		if !strings.Contains(out, s) {
			t.Errorf("%s: output lacks %q:\n%s", what, s, out)
		}
	}
}

// TestKeys runs the keys commands against every shared store.
func TestKeys(t *testing.T) {
	stores := map[string]func(t *testing.T) string{
		"postgres": func(t *testing.T) string { return pgURL(t, "opsctl_idem_", idempostgres.Migrate) },
		"redis":    redisURL,
		"dynamodb": dynamoURL,
	}
	for name, mk := range stores {
		t.Run(name, func(t *testing.T) {
			u := mk(t)
			env := map[string]string{"IDEMPOTENCY_URL": u}
			s, err := idempotency.Open(context.Background(), u)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			m := testkit.StoreUniqueName("ops-")
			fixture(t, s, m)

			code, out, _ := run(t, env, "keys", "ls", "--merchant", m)
			want(t, "ls", code, 0, out, "live", "old", "crashed", "running", "expired", "stuck", "pay_crashed")
			if n := strings.Count(out, m); n != 4 {
				t.Errorf("ls listed %d records, want 4:\n%s", n, out)
			}
			code, out, _ = run(t, env, "keys", "ls", "--merchant", m, "--stuck", "--json")
			want(t, "ls --stuck", code, 0, out)
			var v struct {
				Key        string   `json:"key"`
				Flags      []string `json:"flags"`
				ResourceID string   `json:"resource_id"`
			}
			if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &v) != nil ||
				v.Key != "crashed" || v.ResourceID != "pay_crashed" || len(v.Flags) != 1 || v.Flags[0] != "stuck" {
				t.Errorf("ls --stuck --json = %q", out)
			}
			code, out, _ = run(t, env, "keys", "ls", "--merchant", m, "--expired")
			want(t, "ls --expired", code, 0, out, "old")
			if strings.Contains(out, "live") || strings.Contains(out, "crashed") {
				t.Errorf("ls --expired lists unexpired records:\n%s", out)
			}
			code, out, _ = run(t, env, "keys", "ls", "--merchant", m, "--state", "in_progress", "--limit", "1")
			want(t, "ls --state --limit", code, 0, out, "crashed")
			if strings.Contains(out, "running") {
				t.Errorf("--limit 1 listed two records:\n%s", out)
			}

			code, out, _ = run(t, env, "keys", "show", "--merchant", m, "live")
			want(t, "show", code, 0, out, "completed", "pay_live", "201", "Content-Type", "body bytes:")
			if strings.Contains(out, `{"id":"pay_live"}`) {
				t.Errorf("show prints the body without --body:\n%s", out)
			}
			code, out, _ = run(t, env, "keys", "show", "--merchant", m, "--body", "live")
			want(t, "show --body", code, 0, out, `{"id":"pay_live"}`)
			code, out, _ = run(t, env, "keys", "show", "--merchant", m, "crashed")
			want(t, "show stuck", code, 0, out, "in_progress", "lapsed", "stuck")
			code, _, errOut := run(t, env, "keys", "show", "--merchant", m, "nope")
			want(t, "show missing", code, 1, errOut, "no record")

			// purge: a dry run deletes nothing; --apply deletes only the expired record.
			code, out, _ = run(t, env, "keys", "purge", "--merchant", m)
			want(t, "purge dry run", code, 0, out, "dry run: 1 expired")
			wantRow(t, "purge dry run", out, m, "old", "would", "delete")
			if !exists(t, s, m, "old") {
				t.Fatal("the dry run deleted the record")
			}
			code, out, _ = run(t, env, "keys", "purge", "--merchant", m, "--apply")
			want(t, "purge", code, 0, out, "1 expired record(s) deleted")
			wantRow(t, "purge", out, m, "old", "deleted")
			if exists(t, s, m, "old") || !exists(t, s, m, "live") || !exists(t, s, m, "crashed") || !exists(t, s, m, "running") {
				t.Fatal("purge deleted the wrong records")
			}

			// release: refused on a live lease and on a completed record.
			code, _, errOut = run(t, env, "keys", "release", "--merchant", m, "running", "--apply")
			want(t, "release live", code, 1, errOut, "refused", "lease is live")
			code, _, errOut = run(t, env, "keys", "release", "--merchant", m, "live", "--apply")
			want(t, "release completed", code, 1, errOut, "refused", "completed")
			if !exists(t, s, m, "running") || !exists(t, s, m, "live") {
				t.Fatal("a refused release deleted a record")
			}
			// --force without --apply is still a dry run.
			code, out, errOut = run(t, env, "keys", "release", "--merchant", m, "--force", "running")
			want(t, "release --force dry run", code, 0, out+errOut, "would release", "warning")
			if !exists(t, s, m, "running") {
				t.Fatal("a dry run released the record")
			}
			code, out, _ = run(t, env, "keys", "release", "--merchant", m, "crashed")
			want(t, "release stuck dry run", code, 0, out, "would release", "pay_crashed")
			code, out, _ = run(t, env, "keys", "release", "--merchant", m, "crashed", "--apply")
			want(t, "release stuck", code, 0, out, "released "+m+" crashed")
			if exists(t, s, m, "crashed") {
				t.Fatal("the stuck record is still there")
			}
			code, _, errOut = run(t, env, "keys", "release", "--merchant", m, "crashed", "--apply")
			want(t, "release missing", code, 1, errOut, "nothing to release")
		})
	}
}

// TestReleaseChecksThePayment refuses to release a stuck key whose payment
// exists in the shared payment store.
func TestReleaseChecksThePayment(t *testing.T) {
	idemURL := pgURL(t, "opsctl_idem_", idempostgres.Migrate)
	payURL := pgURL(t, "opsctl_pay_", paypostgres.Migrate)
	env := map[string]string{"IDEMPOTENCY_URL": idemURL, "PAYMENTS_STORE_URL": payURL}
	ctx := context.Background()
	s, err := idempotency.Open(ctx, idemURL)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := testkit.StoreUniqueName("ops-")
	fixture(t, s, m)
	ps, err := payments.OpenStore(ctx, payURL)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	now := time.Now()
	if err := ps.Create(ctx, &payments.Payment{ID: "pay_crashed", Merchant: m, Amount: 100, Currency: "EUR",
		Status: payments.StatusProcessing, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := run(t, env, "keys", "release", "--merchant", m, "crashed", "--apply")
	want(t, "release with a payment", code, 1, errOut, "refused", "pay_crashed exists (status processing)", "resumes")
	if !exists(t, s, m, "crashed") {
		t.Fatal("a refused release deleted the record")
	}
	code, out, errOut := run(t, env, "keys", "release", "--merchant", m, "crashed", "--apply", "--force")
	want(t, "forced release", code, 0, out+errOut, "released", "warning")
	if exists(t, s, m, "crashed") {
		t.Fatal("the forced release kept the record")
	}
}

func TestDBMigrate(t *testing.T) {
	idemURL := pgURL(t, "opsctl_idem_", nil)
	payURL := pgURL(t, "opsctl_pay_", nil)
	env := map[string]string{"IDEMPOTENCY_URL": idemURL, "PAYMENTS_STORE_URL": payURL}
	ctx := context.Background()
	// Before: the stores refuse to open, naming the fix.
	if _, err := idempotency.Open(ctx, idemURL); !errors.Is(err, idempostgres.ErrSchemaMissing) || !strings.Contains(err.Error(), "opsctl db migrate") {
		t.Fatalf("idempotency store without schema: %v", err)
	}
	code, out, _ := run(t, env, "db", "migrate")
	want(t, "migrate dry run", code, 0, out, "IDEMPOTENCY_URL", "PAYMENTS_STORE_URL", "CREATE TABLE IF NOT EXISTS", "dry run")
	if _, err := payments.OpenStore(ctx, payURL); !errors.Is(err, paypostgres.ErrSchemaMissing) {
		t.Fatalf("the dry run created the payments table: %v", err)
	}
	for range 2 { // idempotent
		code, out, _ = run(t, env, "db", "migrate", "--apply")
		want(t, "migrate", code, 0, out, "IDEMPOTENCY_URL", "PAYMENTS_STORE_URL", "schema applied")
	}
	s, err := idempotency.Open(ctx, idemURL)
	if err != nil {
		t.Fatalf("idempotency store after migrate: %v", err)
	}
	_ = s.Close()
	ps, err := payments.OpenStore(ctx, payURL)
	if err != nil {
		t.Fatalf("payment store after migrate: %v", err)
	}
	_ = ps.Close()
	code, out, _ = run(t, map[string]string{}, "db", "migrate", "--apply")
	want(t, "migrate without postgres", code, 0, out, "nothing to migrate")
}

func TestUsage(t *testing.T) {
	mem := map[string]string{}
	bogus := map[string]string{"IDEMPOTENCY_URL": "cassandra://x"}
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		sub  string
	}{
		{"no command", mem, nil, 2, "opsctl needs a command"},
		{"unknown", mem, []string{"keys", "frob"}, 2, "unknown command"},
		{"memory store", mem, []string{"keys", "ls"}, 2, "memory://"},
		{"unregistered store", bogus, []string{"keys", "ls"}, 2, "not registered"},
		{"show without merchant", bogus, []string{"keys", "show", "k"}, 2, "--merchant"},
		{"release without key", bogus, []string{"keys", "release", "--merchant", "m"}, 2, "KEY"},
		{"bad state", bogus, []string{"keys", "ls", "--state", "done"}, 2, "in_progress or completed"},
		{"bad flag", bogus, []string{"keys", "purge", "--nope"}, 2, "nope"},
		{"help", mem, []string{"help"}, 0, "Usage:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := run(t, c.env, c.args...)
			want(t, c.name, code, c.code, out+errOut, c.sub)
		})
	}
}
