package opsctl_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/examples/internal/apptest"
	"github.com/payrail/payrail/examples/internal/opsctl"
)

// dlqRun executes opsctl with the environment env, for up to a minute.
func dlqRun(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return runContext(t, ctx, env, args...)
}

// TestBusDLQ dead-letters payment commands on a Kafka cluster (kfake, an
// in-process implementation of the Kafka protocol), then inspects and
// redrives them with opsctl bus stats / dlq ls / dlq redrive, as the
// runbook "messages stuck in the queue" does.
func TestBusDLQ(t *testing.T) {
	const topicName, group = "payments-dlq-cli", "payments-worker-dlq-cli"
	env, topicURL, subURL := kafkaBus(t, 2, topicName, group)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// A worker that cannot process two commands dead-letters them.
	var cmds []*bus.Message
	for i := 1; i <= 2; i++ {
		id := fmt.Sprintf("pay_DLQ%d", i)
		cmds = append(cmds, &bus.Message{ID: id + ":authorize", Key: id, Body: []byte(`{"v":1,"op":"authorize","payment_id":"` + id + `","merchant":"acme"}`),
			Attributes: map[string]string{"payrail.command": "authorize", "payrail.payment_id": id, "payrail.merchant": "acme",
				"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}})
	}
	deadLetterAll(t, ctx, topicURL, subURL, cmds, "gateway rejected the merchant's credentials")

	code, out, errOut := dlqRun(t, env, "bus", "stats")
	if f := strings.Fields(strings.TrimSpace(out)); code != opsctl.ExitOK || !strings.Contains(out, "DEAD_LETTERS") || len(f) < 2 || f[len(f)-2] != "2" {
		t.Fatalf("bus stats: %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = dlqRun(t, env, "bus", "dlq", "ls")
	if code != opsctl.ExitOK || !strings.Contains(out, "pay_DLQ1") || !strings.Contains(out, "pay_DLQ2") ||
		!strings.Contains(out, "gateway rejected the merchant's credentials") || !strings.Contains(out, "4bf92f3577b34da6a3ce929d0e0e4736") ||
		!strings.Contains(out, "-- 2 dead letter(s)") || strings.Contains(out, `"op":"authorize"`) {
		t.Fatalf("bus dlq ls: %d\n%s%s", code, out, errOut)
	}
	code, out, _ = dlqRun(t, env, "bus", "dlq", "ls", "--json", "--body", "--limit", "1")
	var v map[string]any
	if code != opsctl.ExitOK || json.Unmarshal([]byte(strings.TrimSpace(out)), &v) != nil ||
		v["merchant"] != "acme" || !strings.Contains(fmt.Sprint(v["body"]), `"op":"authorize"`) {
		t.Fatalf("bus dlq ls --json --body --limit 1: %d %q", code, out)
	}

	code, out, _ = dlqRun(t, env, "bus", "dlq", "redrive")
	if code != opsctl.ExitOK || strings.Count(out, "redrive (status unknown: PAYMENTS_STORE_URL is not a shared store)") != 2 || !strings.Contains(out, "dry run") {
		t.Fatalf("bus dlq redrive (dry run): %d %q", code, out)
	}
	code, out, _ = dlqRun(t, env, "bus", "dlq", "ls")
	if !strings.Contains(out, "-- 2 dead letter(s)") {
		t.Fatalf("the dry run moved something: %q", out)
	}
	code, out, errOut = dlqRun(t, env, "bus", "dlq", "redrive", "--limit", "1", "--apply")
	if code != opsctl.ExitOK || !strings.Contains(out, "redrove 1 dead letter(s)") {
		t.Fatalf("bus dlq redrive --apply: %d %q %q", code, out, errOut)
	}
	code, out, _ = dlqRun(t, env, "bus", "dlq", "ls")
	if code != opsctl.ExitOK || !strings.Contains(out, "-- 1 dead letter(s)") {
		t.Fatalf("after redriving one: %d %q", code, out)
	}

	// The redriven command is delivered to the worker again.
	sub, err := bus.OpenSubscription(ctx, subURL)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	got := make(chan string, 4)
	errc := make(chan error, 1)
	rctx, stop := context.WithCancel(ctx)
	go func() {
		errc <- sub.Receive(rctx, func(ctx context.Context, m *bus.Message) error {
			got <- m.Attributes["payrail.payment_id"]
			return nil
		})
	}()
	select {
	case id := <-got:
		if !strings.HasPrefix(id, "pay_DLQ") {
			t.Errorf("redelivered %q", id)
		}
	case <-time.After(30 * time.Second):
		t.Error("the redriven command was not delivered again")
	}
	stop()
	<-errc
}

func TestBusDLQRefusals(t *testing.T) {
	for name, tc := range map[string]struct {
		env  map[string]string
		args []string
		want string
	}{
		"in-memory bus": {map[string]string{"MESSAGE_BUS_ADAPTER": "inmemory"}, []string{"bus", "dlq", "ls"}, "lives inside the server process"},
		"no subcommand": {map[string]string{"MESSAGE_BUS_ADAPTER": "inmemory"}, []string{"bus", "dlq"}, "needs a command: ls, redrive"},
		"bad limit":     {map[string]string{"MESSAGE_BUS_ADAPTER": "inmemory"}, []string{"bus", "dlq", "ls", "--limit", "0"}, "--limit must be positive"},
		"argument":      {map[string]string{"MESSAGE_BUS_ADAPTER": "inmemory"}, []string{"bus", "stats", "extra"}, "takes no arguments"},
		"missing vars":  {map[string]string{"MESSAGE_BUS_ADAPTER": "kafka"}, []string{"bus", "stats"}, "KAFKA_BROKERS"},
	} {
		code, out, errOut := dlqRun(t, tc.env, tc.args...)
		if code != opsctl.ExitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, want %d with %q\n%s%s", name, code, opsctl.ExitUsage, tc.want, out, errOut)
		}
	}
}

// kafkaBus starts a Kafka cluster (kfake) with the topic (partitions) and returns the
// opsctl environment for it and the worker's topic and subscription URLs.
func kafkaBus(t *testing.T, partitions int, topicName, group string) (env map[string]string, topicURL, subURL string) {
	t.Helper()
	brokers := apptest.Kafka(t, partitions, topicName)
	env = map[string]string{"MESSAGE_BUS_ADAPTER": "kafka", "KAFKA_BROKERS": brokers,
		"PAYMENTS_TOPIC": topicName, "KAFKA_GROUP_ID": group}
	cfg, err := parseEnv(env)
	if err != nil {
		t.Fatal(err)
	}
	topicURL, subURL, err = cfg.BusURLs()
	if err != nil {
		t.Fatal(err)
	}
	return env, topicURL, subURL
}

// deadLetterAll publishes msgs and dead-letters them with reason, as a
// worker that cannot process them does.
func deadLetterAll(t *testing.T, ctx context.Context, topicURL, subURL string, msgs []*bus.Message, reason string) {
	t.Helper()
	topic, err := bus.OpenTopic(ctx, topicURL)
	if err != nil {
		t.Fatal(err)
	}
	defer topic.Close()
	for _, m := range msgs {
		if err := topic.Publish(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := bus.OpenSubscription(ctx, subURL)
	if err != nil {
		t.Fatal(err)
	}
	var dead atomic.Int32
	rctx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		errc <- sub.Receive(rctx, func(context.Context, *bus.Message) error {
			defer dead.Add(1)
			return bus.Permanent(errors.New(reason))
		})
	}()
	for int(dead.Load()) < len(msgs) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if err := <-errc; err != nil {
		t.Fatalf("Receive: %v", err)
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
}
