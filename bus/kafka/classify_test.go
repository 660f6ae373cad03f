package kafka

import (
	"errors"
	"fmt"
	"testing"

	"github.com/IBM/sarama"

	"github.com/payrail/payrail/bus/driver"
)

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		err  error
		want error
	}{
		{sarama.ErrUnknownTopicOrPartition, driver.ErrNotFound},
		{fmt.Errorf("wrapped: %w", sarama.ErrUnknownTopicOrPartition), driver.ErrNotFound},
		{sarama.ErrSASLAuthenticationFailed, driver.ErrPermission},
		{sarama.ErrTopicAuthorizationFailed, driver.ErrPermission},
		{sarama.ErrGroupAuthorizationFailed, driver.ErrPermission},
		{sarama.ErrClusterAuthorizationFailed, driver.ErrPermission},
		{sarama.ErrInvalidSessionTimeout, driver.ErrInvalidURL},
		{sarama.ErrClosedClient, driver.ErrClosed},
		{sarama.ErrClosedConsumerGroup, driver.ErrClosed},
	} {
		got := classify("op", c.err)
		if !errors.Is(got, c.want) || !errors.Is(got, c.err) {
			t.Errorf("classify(%v) = %v; want it to wrap %v and the original", c.err, got, c.want)
		}
	}
	if classify("op", nil) != nil {
		t.Error("classify(nil) != nil")
	}
	other := classify("op", sarama.ErrNotLeaderForPartition)
	for _, s := range []error{driver.ErrNotFound, driver.ErrPermission, driver.ErrClosed, driver.ErrInvalidURL} {
		if errors.Is(other, s) {
			t.Errorf("a transient error was classified as %v", s)
		}
	}
}
