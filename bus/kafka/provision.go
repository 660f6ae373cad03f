package kafka

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/IBM/sarama"

	"github.com/payrail/payrail/bus/driver"
)

var _ driver.Provisioner = Driver{}

// Provision creates the topic a kafka:// URL names and its dead-letter
// topic (the URL's dlq parameter, default <topic>.dlq), with
// spec.Partitions partitions (zero: the brokers' num.partitions), unless
// they exist. An existing topic whose partition count differs from a
// non-zero spec.Partitions is an error wrapping bus.ErrConflict: adding
// partitions would move keys to other partitions and break their order, so
// Provision never does it.
//
// Kafka has no broker-side dead-lettering, ack deadline or per-entity
// ordering: redelivery is unlimited on the broker whatever
// spec.MaxAttempts says (package bus dead-letters after
// bus.WithMaxAttempts), records of a key are always ordered within their
// partition, and spec.AckDeadline and spec.Ordered are not used.
func (Driver) Provision(ctx context.Context, u *url.URL, spec driver.ProvisionSpec) ([]driver.ProvisionStep, error) {
	// Parse as a subscription if it names a group, for its dlq parameter.
	cfg, err := parseURL(u, u != nil && u.Query().Has("group"))
	if err != nil {
		return nil, err
	}
	if spec.Partitions > 1<<31-1 {
		return nil, invalidURL("%d partitions is too many", spec.Partitions)
	}
	o := topicOptions{partitions: -1, replication: -1, dlq: true, strict: true}
	if spec.Partitions > 0 {
		o.partitions = int32(spec.Partitions)
	}
	return ensureTopics(ctx, cfg, o, spec.DryRun)
}

// ensureTopics creates cfg's topic and, with o.dlq, its dead-letter topic,
// if they do not exist, and waits until the metadata shows them.
func ensureTopics(ctx context.Context, cfg *config, o topicOptions, dry bool) ([]driver.ProvisionStep, error) {
	dlq := cfg.dlqTopic
	if dlq == "" {
		dlq = cfg.topic + ".dlq"
	}
	topics := []struct{ kind, name string }{{"topic", cfg.topic}}
	if o.dlq {
		topics = append(topics, struct{ kind, name string }{"dead-letter topic", dlq})
	}
	client, err := newClient(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		return nil, classify("admin", err)
	}
	var steps []driver.ProvisionStep
	var created []string
	for _, t := range topics {
		st := driver.ProvisionStep{Kind: t.kind, Name: t.name, Action: driver.ActionExists}
		n, err := partitionCount(admin, t.name)
		switch {
		case err != nil:
			return steps, err
		case n > 0 && o.strict && o.partitions > 0 && n != int(o.partitions):
			return steps, fmt.Errorf("kafka: %s %s exists with %d partitions, not %d (Provision does not add partitions: keys would move): %w",
				t.kind, t.name, n, o.partitions, driver.ErrConflict)
		case n > 0:
		case dry:
			st.Action = driver.ActionWouldCreate
		default:
			err := admin.CreateTopic(t.name, &sarama.TopicDetail{NumPartitions: o.partitions, ReplicationFactor: o.replication, ConfigEntries: o.configs}, false)
			if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
				return steps, classify("create topic "+t.name, err)
			}
			st.Action = driver.ActionCreated
			if o.partitions > 0 {
				st.Detail = fmt.Sprintf("%d partitions", o.partitions)
			}
			created = append(created, t.name)
		}
		steps = append(steps, st)
	}
	if len(created) == 0 {
		return steps, nil
	}
	// Wait until the metadata shows them, so that an open right after
	// succeeds.
	for {
		missing := ""
		if err := client.RefreshMetadata(created...); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
			return steps, classify("metadata", err)
		}
		for _, t := range created {
			if ps, err := client.Partitions(t); err != nil || len(ps) == 0 {
				missing = t
			}
		}
		if missing == "" {
			return steps, nil
		}
		select {
		case <-ctx.Done():
			return steps, fmt.Errorf("kafka: topic %q not visible after creation: %w", missing, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// partitionCount returns the topic's partition count, 0 if it does not exist.
func partitionCount(admin sarama.ClusterAdmin, topic string) (int, error) {
	md, err := admin.DescribeTopics([]string{topic})
	if err != nil {
		return 0, classify("describe topic "+topic, err)
	}
	for _, m := range md {
		if m.Name != topic {
			continue
		}
		switch {
		case errors.Is(m.Err, sarama.ErrUnknownTopicOrPartition):
			return 0, nil
		case m.Err != sarama.ErrNoError:
			return 0, classify("describe topic "+topic, m.Err)
		}
		return len(m.Partitions), nil
	}
	return 0, nil
}
