package servicebus

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/payrail/payrail/bus/driver"
)

// topic sends to a queue or topic.
type topic struct {
	cfg    *config
	client *sharedClient
	sender *azservicebus.Sender

	mu     sync.Mutex
	closed bool
}

var (
	_ driver.Topic  = (*topic)(nil)
	_ driver.Pinger = (*topic)(nil)
)

func openTopic(ctx context.Context, cfg *config) (*topic, error) {
	c, err := acquireClient(cfg)
	if err != nil {
		return nil, err
	}
	s, err := c.client.NewSender(cfg.entity, nil)
	if err != nil {
		_ = releaseClient(c)
		return nil, fmt.Errorf("servicebus: sender for %s: %w", cfg.entity, err)
	}
	t := &topic{cfg: cfg, client: c, sender: s}
	// Attaching the link checks that the entity exists and that the
	// credentials may send to it.
	if err := t.Ping(ctx); err != nil {
		_ = t.Close()
		return nil, err
	}
	return t, nil
}

// SendBatch sends ms in as few Service Bus batches as the entity's maximum
// batch size allows.
func (t *topic) SendBatch(ctx context.Context, ms []*driver.Message) error {
	sms := make([]*azservicebus.Message, len(ms))
	for i, m := range ms {
		sm, err := outgoing(m, t.cfg.sessions)
		if err != nil {
			return err
		}
		sms[i] = sm
	}
	return sendBatches(ctx, t.sender, t.cfg.entity, sms)
}

// outgoing converts a published message.
func outgoing(m *driver.Message, sessions bool) (*azservicebus.Message, error) {
	if len(m.ID) > maxIDLength {
		return nil, fmt.Errorf("servicebus: message ID %.20q... is %d characters; Service Bus allows %d", m.ID, len(m.ID), maxIDLength)
	}
	props := make(map[string]any, len(m.Attributes)+1)
	for k, v := range m.Attributes {
		if reservedProperty(k) {
			return nil, fmt.Errorf("servicebus: message %s: attribute %q is reserved by the driver", m.ID, k)
		}
		props[k] = v
	}
	if m.Key != "" {
		props[PropKey] = m.Key
	}
	id := m.ID
	sm := &azservicebus.Message{MessageID: &id, Body: m.Body, ApplicationProperties: props}
	if sessions {
		sid := m.Key
		if sid == "" {
			sid = m.ID
		}
		if len(sid) > maxIDLength {
			return nil, fmt.Errorf("servicebus: message %s: key %.20q... is %d characters; a Service Bus session id allows %d", m.ID, sid, len(sid), maxIDLength)
		}
		sm.SessionID = &sid
	}
	return sm, nil
}

// sendBatches sends sms to sender, splitting them into batches.
func sendBatches(ctx context.Context, sender *azservicebus.Sender, entity string, sms []*azservicebus.Message) error {
	if len(sms) == 0 {
		return nil
	}
	batch, err := sender.NewMessageBatch(ctx, nil)
	if err != nil {
		return mapErr("send to", entity, err)
	}
	sent := 0
	flush := func() error {
		n := batch.NumMessages()
		if n == 0 {
			return nil
		}
		if err := sender.SendMessageBatch(ctx, batch, nil); err != nil {
			err = mapErr("send to", entity, err)
			if sent > 0 {
				return fmt.Errorf("%w (%d of %d messages were sent before)", err, sent, len(sms))
			}
			return err
		}
		sent += int(n)
		return nil
	}
	for _, sm := range sms {
		err := batch.AddMessage(sm, nil)
		if errors.Is(err, azservicebus.ErrMessageTooLarge) && batch.NumMessages() > 0 {
			if err := flush(); err != nil {
				return err
			}
			if batch, err = sender.NewMessageBatch(ctx, nil); err != nil {
				return mapErr("send to", entity, err)
			}
			err = batch.AddMessage(sm, nil)
		}
		if errors.Is(err, azservicebus.ErrMessageTooLarge) {
			return fmt.Errorf("servicebus: message %s (%d-byte body) is larger than %s's maximum message size: %w",
				*sm.MessageID, len(sm.Body), entity, err)
		}
		if err != nil {
			return fmt.Errorf("servicebus: message %s: %w", *sm.MessageID, err)
		}
	}
	return flush()
}

// Ping attaches the sender's link (the SDK keeps it), which fails if the
// entity is missing or the credentials may not send to it.
func (t *topic) Ping(ctx context.Context) error {
	if _, err := t.sender.NewMessageBatch(ctx, nil); err != nil {
		return mapErr("open", t.cfg.entity, err)
	}
	return nil
}

// Close closes the sender and releases the client.
func (t *topic) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return driver.ErrClosed
	}
	t.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	err := closeErr(t.sender.Close(ctx))
	return errors.Join(err, releaseClient(t.client))
}

// As converts to **azservicebus.Client or **azservicebus.Sender.
func (t *topic) As(i any) bool {
	switch p := i.(type) {
	case **azservicebus.Client:
		*p = t.client.client
	case **azservicebus.Sender:
		*p = t.sender
	default:
		return false
	}
	return true
}
