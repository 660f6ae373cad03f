package dynamodb_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/payrail/payrail/idempotency"
	"github.com/payrail/payrail/idempotency/driver"
	"github.com/payrail/payrail/idempotency/dynamodb"
	"github.com/payrail/payrail/internal/testkit"
	"github.com/payrail/payrail/internal/testkit/dynamodblocal"
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

// countingTransport counts HTTP requests: one per round trip.
type countingTransport struct {
	n    atomic.Int64
	base http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(r)
}

func client(tb testing.TB, trips *countingTransport) *awsddb.Client {
	tb.Helper()
	testkit.StoreRequirePeer(tb, "DynamoDB Local", ddbErr)
	hc := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	if trips != nil {
		trips.base = hc.Transport
		hc.Transport = trips
	}
	return awsddb.New(awsddb.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(ddb.Endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("local", "local", ""),
		HTTPClient:   hc,
	})
}

// table creates a table unique to this test, deleted at its end.
func table(tb testing.TB) string {
	tb.Helper()
	c := client(tb, nil)
	name := testkit.StoreUniqueName("idem-test-")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := dynamodb.CreateTable(ctx, c, name); err != nil {
		tb.Fatalf("CreateTable: %v", err)
	}
	tb.Cleanup(func() {
		_, _ = c.DeleteTable(context.Background(), &awsddb.DeleteTableInput{TableName: aws.String(name)})
	})
	return name
}

func newHarness(tb testing.TB) testkit.IdempotencyHarness {
	name := table(tb)
	var mu sync.Mutex
	trips := map[driver.Store]*countingTransport{}
	return testkit.IdempotencyHarness{
		Open: func(ctx context.Context, tb testing.TB) (driver.Store, error) {
			ct := &countingTransport{}
			s, err := dynamodb.New(ctx, client(tb, ct), name)
			if err != nil {
				return nil, err
			}
			mu.Lock()
			trips[s] = ct
			mu.Unlock()
			return s, nil
		},
		SharedClients: true,
		RoundTrips: func(s driver.Store) int64 {
			mu.Lock()
			defer mu.Unlock()
			return trips[s].n.Load()
		},
	}
}

func TestConformance(t *testing.T) { testkit.RunIdempotencyConformance(t, newHarness(t)) }

// localEnv points the SDK's standard configuration chain at DynamoDB Local.
func localEnv(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "local")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "local")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
}

// TestConformanceOpenedByURL runs the suite on stores opened by URL
// through the SDK's standard configuration chain.
func TestConformanceOpenedByURL(t *testing.T) {
	name := table(t)
	localEnv(t)
	u := "dynamodb://" + name + "?region=us-east-1&endpoint=" + ddb.Endpoint
	testkit.RunIdempotencyConformance(t, testkit.IdempotencyHarness{
		Open: func(ctx context.Context, tb testing.TB) (driver.Store, error) {
			return idempotencyOpen(ctx, u)
		},
		SharedClients: true,
	})
}

func idempotencyOpen(ctx context.Context, u string) (driver.Store, error) {
	return dynamodb.Open(ctx, u)
}

func TestMissingTableAndBadURLs(t *testing.T) {
	testkit.StoreRequirePeer(t, "DynamoDB Local", ddbErr)
	localEnv(t)
	ctx := context.Background()
	_, err := idempotency.Open(ctx, "dynamodb://no-such-table?endpoint="+ddb.Endpoint)
	if !errors.Is(err, dynamodb.ErrTableMissing) {
		t.Fatalf("Open of a missing table: %v, want ErrTableMissing", err)
	}
	for _, u := range []string{"dynamodb://", "dynamodb://a?bogus=1", "dynamodb://ok-table?endpoint=not-a-url", "dynamodb://x"} {
		if _, err := idempotency.Open(ctx, u); err == nil {
			t.Errorf("Open(%q) succeeded", u)
		}
	}
}

func TestBodyLimits(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	s, err := h.Open(ctx, t)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	begin := func(key string) {
		t.Helper()
		res, err := s.Begin(ctx, &driver.BeginRequest{Merchant: "m", Key: key, Fingerprint: "f", Token: "t",
			Lease: time.Minute, TTL: time.Hour, Now: now})
		if err != nil || res.Outcome != driver.Acquired {
			t.Fatalf("Begin: %v %v", res, err)
		}
	}
	begin("too-big")
	err = s.Complete(ctx, driver.CompleteRequest{Merchant: "m", Key: "too-big", Token: "t", Response: &driver.Response{StatusCode: 200, Body: make([]byte, dynamodb.MaxBodyBytes+1)}, Now: now, TTL: time.Hour})
	if !errors.Is(err, dynamodb.ErrBodyTooLarge) {
		t.Fatalf("Complete with an oversized body: %v, want ErrBodyTooLarge", err)
	}
	// The record is untouched: its owner can still complete it.
	if err := s.Complete(ctx, driver.CompleteRequest{Merchant: "m", Key: "too-big", Token: "t", Response: &driver.Response{StatusCode: 500}, Now: now, TTL: time.Hour}); err != nil {
		t.Fatalf("Complete after refusal: %v", err)
	}
	// The largest body round-trips, in chunks, and costs one more round
	// trip to replay.
	begin("max")
	body := []byte(strings.Repeat("0123456789abcdef", dynamodb.MaxBodyBytes/16))
	if err := s.Complete(ctx, driver.CompleteRequest{Merchant: "m", Key: "max", Token: "t", Response: &driver.Response{StatusCode: 200, Body: body}, Now: now, TTL: time.Hour}); err != nil {
		t.Fatalf("Complete max body: %v", err)
	}
	c0 := h.RoundTrips(s)
	res, err := s.Begin(ctx, &driver.BeginRequest{Merchant: "m", Key: "max", Fingerprint: "f", Token: "t2",
		Lease: time.Minute, TTL: time.Hour, Now: now})
	if err != nil || res.Outcome != driver.Replay || string(res.Record.Response.Body) != string(body) {
		t.Fatalf("replay of the max body: %v %v", res, err)
	}
	if n := h.RoundTrips(s) - c0; n != 2 {
		t.Errorf("replay of a chunked body took %d round trips, want 2", n)
	}
}
