package dynamodb_test

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/payrail/payrail/internal/testkit"
)

// BenchmarkStore measures the store: Begin+Complete (a request that
// executes) and Replay. Compare with BenchmarkBaseline in the same run.
func BenchmarkStore(b *testing.B) { testkit.BenchmarkIdempotencyStore(b, newHarness(b)) }

// BenchmarkBaseline is the raw cost of the same two writes without the
// store's logic: an unconditional PutItem then an unconditional UpdateItem,
// on a table of the same schema, on the same server.
func BenchmarkBaseline(b *testing.B) {
	name := table(b)
	c := client(b, nil)
	body := []byte(`{"id":"pay_bench","status":"captured","amount":1999,"currency":"EUR"}`)
	s := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	n := func(v int64) types.AttributeValue {
		return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
	}
	var seq atomic.Int64
	b.Run("PutItem+UpdateItem", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			for pb.Next() {
				k := fmt.Sprintf("bench:base-%d", seq.Add(1))
				now := time.Now().UnixMilli()
				_, err := c.PutItem(ctx, &awsddb.PutItemInput{TableName: aws.String(name), Item: map[string]types.AttributeValue{
					"pk": s(k), "m": s("bench"), "k": s(k), "fp": s("fp"), "st": s("in_progress"), "tok": s("t"),
					"rid": s("pay"), "lease": n(now + 60_000), "ct": n(now), "exp": n(now + 3_600_000),
				}})
				if err != nil {
					b.Errorf("PutItem: %v", err)
					return
				}
				_, err = c.UpdateItem(ctx, &awsddb.UpdateItemInput{TableName: aws.String(name),
					Key:                      map[string]types.AttributeValue{"pk": s(k)},
					UpdateExpression:         aws.String("SET st = :c, tok = :e, sc = :sc, body = :b, #exp = :exp"),
					ExpressionAttributeNames: map[string]string{"#exp": "exp"},
					ExpressionAttributeValues: map[string]types.AttributeValue{":c": s("completed"), ":e": s(""),
						":sc": n(201), ":b": &types.AttributeValueMemberB{Value: body}, ":exp": n(now + 3_600_000)}})
				if err != nil {
					b.Errorf("UpdateItem: %v", err)
					return
				}
			}
		})
	})
}
