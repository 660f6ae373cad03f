package kafka

import (
	"net/url"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

func TestParseURL(t *testing.T) {
	u, _ := url.Parse("kafka://svc:s3cret@b1:9092,b2:9093/payments?group=workers&dlq=payments-dead" +
		"&version=3.7.0&client_id=pay&sasl=scram-sha-512&initial=newest&session_timeout=20s&heartbeat_interval=2s" +
		"&rebalance_timeout=90s&commit_interval=250ms&prefetch=64&drain_timeout=45s&ordered=false&balance=sticky&dial_timeout=3s")
	cfg, err := parseURL(u, true)
	if err != nil {
		t.Fatal(err)
	}
	sc := cfg.sarama
	checks := []struct {
		name      string
		got, want any
	}{
		{"brokers", len(cfg.brokers), 2},
		{"broker 2", cfg.brokers[1], "b2:9093"},
		{"topic", cfg.topic, "payments"},
		{"group", cfg.group, "workers"},
		{"dlq", cfg.dlqTopic, "payments-dead"},
		{"version", sc.Version, sarama.V3_7_0_0},
		{"client id", sc.ClientID, "pay"},
		{"sasl", sc.Net.SASL.Mechanism, sarama.SASLMechanism(sarama.SASLTypeSCRAMSHA512)},
		{"sasl user", sc.Net.SASL.User, "svc"},
		{"sasl password", sc.Net.SASL.Password, "s3cret"},
		{"initial", sc.Consumer.Offsets.Initial, sarama.OffsetNewest},
		{"session", sc.Consumer.Group.Session.Timeout, 20 * time.Second},
		{"heartbeat", sc.Consumer.Group.Heartbeat.Interval, 2 * time.Second},
		{"rebalance", sc.Consumer.Group.Rebalance.Timeout, 90 * time.Second},
		{"commit", sc.Consumer.Offsets.AutoCommit.Interval, 250 * time.Millisecond},
		{"prefetch", cfg.prefetch, 64},
		{"drain", cfg.drainTimeout, 45 * time.Second},
		{"ordered", cfg.ordered, false},
		{"dial", sc.Net.DialTimeout, 3 * time.Second},
		{"idempotent", sc.Producer.Idempotent, true},
		{"auto-create", sc.Metadata.AllowAutoTopicCreation, false},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if sc.Net.SASL.SCRAMClientGeneratorFunc == nil {
		t.Error("no SCRAM client")
	}

	u, _ = url.Parse("kafka://b:9092/t?idempotent=false&acks=leader&compression=zstd")
	cfg, err = parseURL(u, false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.sarama.Producer.Idempotent || cfg.sarama.Producer.RequiredAcks != sarama.WaitForLocal ||
		cfg.sarama.Producer.Compression != sarama.CompressionZSTD || cfg.sarama.Net.MaxOpenRequests != 5 {
		t.Errorf("producer settings not applied: %+v", cfg.sarama.Producer)
	}
	u, _ = url.Parse("kafka://b:9092/t?group=g")
	if cfg, err = parseURL(u, true); err != nil || cfg.dlqTopic != "t.dlq" || !cfg.ordered || cfg.sarama.Version != DefaultVersion {
		t.Errorf("defaults: %+v, %v", cfg, err)
	}
}
