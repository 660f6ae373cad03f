package servicebus_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/payrail/payrail/internal/testkit"
)

// BenchmarkBaselineSDK is the baseline of BenchmarkConformance: the
// azservicebus SDK alone, against the same peer and with the same message
// shape (256-byte bodies, an ID and a key property), without package bus
// or this driver:
//
//   - Send/batch=100: SendMessageBatch of 100 messages at a time;
//   - SendReceive/batch=100: batches sent while one receiver takes up to 64
//     messages at a time and completes each, until the last is completed.
//
// Run both in one go for the ratios:
//
//	go test -run XXX -bench 'Conformance|BaselineSDK' ./bus/servicebus/
func BenchmarkBaselineSDK(b *testing.B) {
	requirePeer(b)
	b.Run("Send/batch=100", func(b *testing.B) {
		_, s, _ := sdkBenchQueue(b)
		body := make([]byte, testkit.BenchBodySize)
		b.SetBytes(testkit.BenchBodySize)
		b.ReportAllocs()
		b.ResetTimer()
		for sent := 0; sent < b.N; {
			n := min(100, b.N-sent)
			sdkSendBatch(b, s, body, sent, n)
			sent += n
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("SendReceive/batch=100", func(b *testing.B) {
		_, s, r := sdkBenchQueue(b)
		body := make([]byte, testkit.BenchBodySize)
		total := int64(b.N)
		var completed atomic.Int64
		done := make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			for ctx.Err() == nil {
				ms, err := r.ReceiveMessages(ctx, 64, nil)
				if err != nil {
					return
				}
				var wg sync.WaitGroup
				for _, m := range ms {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if err := r.CompleteMessage(context.Background(), m, nil); err == nil && completed.Add(1) == total {
							close(done)
						}
					}()
				}
				wg.Wait()
			}
		}()
		b.SetBytes(testkit.BenchBodySize)
		b.ReportAllocs()
		b.ResetTimer()
		for sent := 0; sent < b.N; {
			n := min(100, b.N-sent)
			sdkSendBatch(b, s, body, sent, n)
			sent += n
		}
		select {
		case <-done:
		case <-time.After(5 * time.Minute):
			b.Fatalf("only %d of %d messages completed", completed.Load(), total)
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}

func sdkBenchQueue(b *testing.B) (*azservicebus.Client, *azservicebus.Sender, *azservicebus.Receiver) {
	b.Helper()
	name := uniqueName(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := peer.CreateQueue(ctx, name, testkit.ServiceBusEntity{LockDuration: defaultLock}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = peer.Delete(context.Background(), name) })
	c, err := azservicebus.NewClientFromConnectionString(peer.ConnectionString, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close(context.Background()) })
	s, err := c.NewSender(name, nil)
	if err != nil {
		b.Fatal(err)
	}
	r, err := c.NewReceiverForQueue(name, nil)
	if err != nil {
		b.Fatal(err)
	}
	return c, s, r
}

func sdkSendBatch(b *testing.B, s *azservicebus.Sender, body []byte, seq, n int) {
	ctx := context.Background()
	batch, err := s.NewMessageBatch(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		id := "b" + strconv.Itoa(seq+i)
		if err := batch.AddMessage(&azservicebus.Message{MessageID: &id, Body: body,
			ApplicationProperties: map[string]any{"payrail.key": strconv.Itoa(seq + i)}}, nil); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.SendMessageBatch(ctx, batch, nil); err != nil {
		b.Fatal(err)
	}
}
