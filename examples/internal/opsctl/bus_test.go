package opsctl_test

import (
	"context"
	"strings"
	"testing"
	"time"

	gpubsub "cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/payrail/payrail/bus"
	_ "github.com/payrail/payrail/bus/kafka"
	"github.com/payrail/payrail/examples/internal/opsctl"
)

// TestBusProvisionPubSub runs opsctl against a pstest server (Google's
// in-process Pub/Sub) reached through PUBSUB_EMULATOR_HOST.
func TestBusProvisionPubSub(t *testing.T) {
	srv := pstest.NewServer()
	t.Cleanup(func() { _ = srv.Close() })
	t.Setenv("PUBSUB_EMULATOR_HOST", srv.Addr)
	env := map[string]string{
		"MESSAGE_BUS_ADAPTER":   "pubsub",
		"PUBSUB_PROJECT_ID":     "ops-test",
		"PAYMENTS_TOPIC":        "payments",
		"PAYMENTS_SUBSCRIPTION": "payments-worker",
	}

	// Dry run: reports, creates nothing.
	code, out, errOut := run(t, env, "bus", "provision")
	if code != opsctl.ExitOK {
		t.Fatalf("dry run = %d, stderr %s", code, errOut)
	}
	for _, want := range []string{
		"projects/ops-test/topics/payments", "projects/ops-test/topics/payments-worker.dlq",
		"projects/ops-test/subscriptions/payments-worker.dlq", "projects/ops-test/subscriptions/payments-worker",
		"would create", "dry run",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	client, err := gpubsub.NewClient(context.Background(), "ops-test")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.TopicAdminClient.GetTopic(context.Background(), &pubsubpb.GetTopicRequest{Topic: "projects/ops-test/topics/payments"}); err == nil {
		t.Fatal("the dry run created the topic")
	}

	// The dead-letter topic named: the subscription records it.
	code, out, errOut = run(t, env, "bus", "provision", "--dead-letter-topic", "payments-dead")
	if code != opsctl.ExitOK || !strings.Contains(out, "projects/ops-test/topics/payments-dead") {
		t.Errorf("--dead-letter-topic dry run = %d:\n%s%s", code, out, errOut)
	}

	// Apply, with a policy of 7 attempts.
	code, out, errOut = run(t, env, "bus", "provision", "--apply", "--max-attempts", "7")
	if code != opsctl.ExitOK {
		t.Fatalf("apply = %d, stderr %s", code, errOut)
	}
	if strings.Count(out, "created") != 4 {
		t.Errorf("apply should create 4 resources:\n%s", out)
	}
	sub, err := client.SubscriptionAdminClient.GetSubscription(context.Background(), &pubsubpb.GetSubscriptionRequest{Subscription: "projects/ops-test/subscriptions/payments-worker"})
	if err != nil {
		t.Fatalf("subscription not created: %v", err)
	}
	if p := sub.GetDeadLetterPolicy(); p.GetDeadLetterTopic() != "projects/ops-test/topics/payments-worker.dlq" || p.GetMaxDeliveryAttempts() != 7 || !sub.EnableMessageOrdering {
		t.Errorf("subscription = %v; want ordered, dead-lettering to payments-worker.dlq after 7 attempts", sub)
	}

	// Again: everything exists.
	code, out, _ = run(t, env, "bus", "provision", "--apply", "--max-attempts", "7")
	if code != opsctl.ExitOK || strings.Count(out, "exists") != 4 {
		t.Errorf("second apply = %d:\n%s; want 4 existing resources", code, out)
	}

	// Below the service's minimum of 5 attempts: a usage error, nothing sent.
	if code, _, errOut := run(t, env, "bus", "provision", "--apply", "--max-attempts", "3"); code != opsctl.ExitUsage || !strings.Contains(errOut, "5 to 100") {
		t.Errorf("--max-attempts 3 = %d %s; want a usage error", code, errOut)
	}
	// The in-memory bus lives in the server process: refused.
	if code, _, errOut := run(t, map[string]string{"MESSAGE_BUS_ADAPTER": "inmemory"}, "bus", "provision"); code != opsctl.ExitUsage || !strings.Contains(errOut, "in-memory") {
		t.Errorf("inmemory adapter = %d %s; want a usage error", code, errOut)
	}
}

// TestBusProvisionKafka runs bus provision and bus stats against kfake:
// the topic and its dead-letter topic are created with the partitions
// asked, found the second time, and bus stats reads the backlog.
func TestBusProvisionKafka(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	brokers := strings.Join(cluster.ListenAddrs(), ",")
	env := map[string]string{"MESSAGE_BUS_ADAPTER": "kafka", "KAFKA_BROKERS": brokers, "PAYMENTS_TOPIC": "payments", "KAFKA_GROUP_ID": "payments-worker"}

	code, out, errOut := run(t, env, "bus", "provision", "--partitions", "3")
	if code != opsctl.ExitOK || strings.Count(out, "would create") != 2 || !strings.Contains(out, "dry run") {
		t.Fatalf("dry run = %d:\n%s%s", code, out, errOut)
	}
	code, out, errOut = run(t, env, "bus", "provision", "--partitions", "3", "--apply")
	if code != opsctl.ExitOK || strings.Count(out, "created") != 2 || !strings.Contains(out, "payments.dlq") {
		t.Fatalf("apply = %d:\n%s%s", code, out, errOut)
	}
	code, out, errOut = run(t, env, "bus", "provision", "--partitions", "3", "--apply")
	if code != opsctl.ExitOK || strings.Count(out, "exists") != 2 {
		t.Fatalf("second apply = %d:\n%s%s; want both topics existing", code, out, errOut)
	}
	// The kafka worker reads its dead-letter topic from its own URL: naming it here is refused.
	if code, _, errOut := run(t, env, "bus", "provision", "--dead-letter-topic", "dead"); code != opsctl.ExitUsage || !strings.Contains(errOut, "dlq=dead") {
		t.Errorf("kafka --dead-letter-topic = %d %s; want a usage error naming dlq=", code, errOut)
	}
	// Another partition count: a conflict, reported, not applied.
	if code, _, errOut := run(t, env, "bus", "provision", "--partitions", "5", "--apply"); code == opsctl.ExitOK || !strings.Contains(errOut, "partitions") {
		t.Errorf("--partitions 5 on a 3-partition topic = %d %s; want an error", code, errOut)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topic, err := bus.OpenTopic(ctx, "kafka://"+brokers+"/payments")
	if err != nil {
		t.Fatal(err)
	}
	defer topic.Close()
	if err := topic.PublishBatch(ctx, []*bus.Message{{Key: "a"}, {Key: "b"}}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = run(t, env, "bus", "stats")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != opsctl.ExitOK || len(lines) != 2 {
		t.Fatalf("bus stats = %d:\n%s%s", code, out, errOut)
	}
	f := strings.Fields(lines[1])
	if len(f) != 4 || f[0] != "2" || f[2] != "0" {
		t.Fatalf("bus stats after 2 publishes:\n%s; want backlog 2, no dead letters", out)
	}
	if age, err := time.ParseDuration(f[3]); err != nil || age <= 0 || age > time.Minute {
		t.Errorf("bus stats oldest age %q; want the age of the first record", f[3])
	}
}
