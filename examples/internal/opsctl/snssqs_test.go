package opsctl_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/examples/internal/opsctl"
	"github.com/payrail/payrail/internal/testkit"
	"github.com/payrail/payrail/internal/testkit/fauxqs"
)

// TestBusProvisionSNSSQS provisions through opsctl against fauxqs (an
// SNS/SQS emulator reached through AWS_ENDPOINT_URL), then configures the
// deployment with what it printed and opens the worker's subscription.
func TestBusProvisionSNSSQS(t *testing.T) {
	srv, err := fauxqs.Start()
	testkit.StoreRequirePeer(t, "fauxqs (the SNS/SQS emulator; .ci/setup.d/bus-snssqs-fauxqs.sh installs it)", err)
	t.Cleanup(srv.Stop)
	for k, v := range srv.Env() {
		t.Setenv(k, v)
	}
	ctx := context.Background()
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sqsc := sqs.NewFromConfig(awsCfg)
	env := map[string]string{"MESSAGE_BUS_ADAPTER": "sns-sqs", "QUEUE_TYPE": "fifo", "PAYMENTS_MAX_ATTEMPTS": "3"}

	// Dry run: the plan, nothing created.
	code, out, errOut := run(t, env, "bus", "provision", "--name", "ops-pay")
	if code != opsctl.ExitOK {
		t.Fatalf("dry run = %d, stderr %s", code, errOut)
	}
	for _, want := range []string{"ops-pay.fifo", "ops-pay-dlq.fifo", "maxReceiveCount 5", "RawMessageDelivery true", "dry run"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	if qs, err := sqsc.ListQueues(ctx, &sqs.ListQueuesInput{QueueNamePrefix: aws.String("ops-pay")}); err != nil || len(qs.QueueUrls) != 0 {
		t.Fatalf("the dry run created queues: %v, %v", qs, err)
	}

	// The portable flags are the sns-sqs ones; the dead-letter queue can be named.
	code, out, errOut = run(t, env, "bus", "provision", "--name", "ops-pay", "--max-attempts", "7", "--ack-deadline", "45s", "--dead-letter-topic", "ops-dead")
	for _, want := range []string{"maxReceiveCount 7", "VisibilityTimeout 45s", "ops-dead.fifo"} {
		if code != opsctl.ExitOK || !strings.Contains(out, want) {
			t.Errorf("dry run with the portable flags = %d, output lacks %q:\n%s%s", code, want, out, errOut)
		}
	}
	if code, _, errOut := run(t, env, "bus", "provision", "--partitions", "3"); code != opsctl.ExitUsage || !strings.Contains(errOut, "--partitions does not apply to the sns-sqs bus") {
		t.Errorf("--partitions on sns-sqs = %d, %s", code, errOut)
	}
	if code, _, errOut := run(t, env, "bus", "provision", "--max-attempts", "7", "--max-receive-count", "8"); code != opsctl.ExitUsage || !strings.Contains(errOut, "disagree") {
		t.Errorf("--max-attempts 7 --max-receive-count 8 = %d, %s", code, errOut)
	}

	// Refused: SQS would dead-letter before the worker's last attempt.
	if code, _, errOut := run(t, env, "bus", "provision", "--name", "ops-pay", "--max-receive-count", "2"); code != opsctl.ExitUsage || !strings.Contains(errOut, "PAYMENTS_MAX_ATTEMPTS") {
		t.Errorf("--max-receive-count 2 = %d, %s", code, errOut)
	}
	if code, _, errOut := run(t, env, "bus", "provision", "--name", "bad name"); code != opsctl.ExitUsage {
		t.Errorf("--name 'bad name' = %d, %s", code, errOut)
	}

	// Apply, then configure the deployment from the printed variables.
	code, out, errOut = run(t, env, "bus", "provision", "--name", "ops-pay", "--apply")
	if code != opsctl.ExitOK {
		t.Fatalf("apply = %d, stderr %s", code, errOut)
	}
	printed := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.Contains(k, " ") {
			printed[k] = v
		}
	}
	if printed["MESSAGE_BUS_ADAPTER"] != "sns-sqs" || printed["QUEUE_TYPE"] != "fifo" ||
		!strings.HasSuffix(printed["PAYMENTS_TOPIC_ARN"], ":ops-pay.fifo") || !strings.HasSuffix(printed["PAYMENTS_QUEUE_URL"], "/ops-pay.fifo") {
		t.Fatalf("apply printed %v:\n%s", printed, out)
	}
	printed["PAYMENTS_MAX_ATTEMPTS"] = "3"
	cfg, err := parseEnv(printed)
	if err != nil {
		t.Fatalf("the printed configuration does not load: %v", err)
	}
	topicURL, subURL, err := cfg.BusURLs()
	if err != nil {
		t.Fatal(err)
	}
	topic, err := bus.OpenTopic(ctx, topicURL)
	if err != nil {
		t.Fatalf("OpenTopic(%s): %v", topicURL, err)
	}
	defer topic.Close()
	sub, err := bus.OpenSubscription(ctx, subURL)
	if err != nil {
		t.Fatalf("OpenSubscription(%s): %v", subURL, err)
	}
	defer sub.Close()
	if c := sub.Capabilities(); !c.Ordering || c.MaxAttempts != 5 || c.AckDeadline.Seconds() != 30 {
		t.Errorf("worker subscription capabilities %+v", c)
	}
	if err := topic.Publish(ctx, &bus.Message{Key: "p1", Body: []byte("cmd")}); err != nil {
		t.Fatal(err)
	}
	// bus stats (dlq.go) reads the provisioned queue.
	code, out, errOut = run(t, printed, "bus", "stats")
	if code != opsctl.ExitOK || !strings.Contains(out, "BACKLOG") {
		t.Fatalf("bus stats = %d, %s %s", code, out, errOut)
	}
	if fields := strings.Fields(strings.Split(strings.TrimSpace(out), "\n")[1]); len(fields) != 4 || fields[0] != "1" || fields[3] != "unknown" {
		t.Errorf("bus stats after one publish:\n%s", out)
	}

	// The runbook "messages stuck": dead-letter the command, list the
	// dead-letter queue and redrive it (dlq.go) on the provisioned queues.
	rctx, stop := context.WithCancel(ctx)
	received := make(chan struct{})
	go func() {
		_ = sub.Receive(rctx, func(context.Context, *bus.Message) error {
			close(received)
			return bus.Permanent(errors.New("gateway says no"))
		})
	}()
	<-received
	stop()
	var ls string
	for range 50 { // the dead-lettering settles just after the handler returns
		if code, ls, errOut = run(t, printed, "bus", "dlq", "ls"); code == opsctl.ExitOK && strings.Contains(ls, "gateway says no") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(ls, "gateway says no") || !strings.Contains(ls, "1 dead letter") {
		t.Fatalf("bus dlq ls = %d:\n%s%s", code, ls, errOut)
	}
	if code, out, errOut := run(t, printed, "bus", "dlq", "redrive", "--apply"); code != opsctl.ExitOK || !strings.Contains(out, "redrove 1") {
		t.Fatalf("bus dlq redrive --apply = %d: %s%s", code, out, errOut)
	}

	// Again: idempotent.
	if code, _, errOut := run(t, env, "bus", "provision", "--name", "ops-pay", "--apply"); code != opsctl.ExitOK {
		t.Errorf("second apply = %d, %s", code, errOut)
	}
}
