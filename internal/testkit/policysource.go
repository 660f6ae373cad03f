package testkit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/payrail/payrail/gateway/routing"
)

// PolicySourceTests is the conformance suite of routing.Source
// implementations. open returns a new, empty source (its own table or key
// space) for each case.
func PolicySourceTests(t *testing.T, open func(t *testing.T) routing.Source) {
	t.Run("EmptyLoad", func(t *testing.T) {
		data, v, err := open(t).Load(context.Background())
		if err != nil || v != 0 || data != nil {
			t.Fatalf("Load of an empty source = %q, %d, %v; want nil, 0, nil", data, v, err)
		}
	})
	t.Run("CompareAndSwap", func(t *testing.T) {
		ctx := context.Background()
		s := open(t)
		p1, p2 := policyJSON("a"), policyJSON("b")
		v1, err := s.CompareAndSwap(ctx, 0, p1)
		if err != nil || v1 != 1 {
			t.Fatalf("first CompareAndSwap = %d, %v; want 1", v1, err)
		}
		if _, err := s.CompareAndSwap(ctx, 0, p2); !errors.Is(err, routing.ErrVersionMismatch) {
			t.Fatalf("CompareAndSwap from 0 over version 1: %v; want ErrVersionMismatch", err)
		}
		v2, err := s.CompareAndSwap(ctx, v1, p2)
		if err != nil || v2 != 2 {
			t.Fatalf("second CompareAndSwap = %d, %v; want 2", v2, err)
		}
		if _, err := s.CompareAndSwap(ctx, v1, p1); !errors.Is(err, routing.ErrVersionMismatch) {
			t.Fatalf("CompareAndSwap from a stale version: %v; want ErrVersionMismatch", err)
		}
		data, v, err := s.Load(ctx)
		if err != nil || v != 2 || !sameJSON(data, p2) {
			t.Fatalf("Load = %s, %d, %v; want %s, 2", data, v, err, p2)
		}
	})
	t.Run("ConcurrentWritersOneWins", func(t *testing.T) {
		ctx := context.Background()
		s := open(t)
		if _, err := s.CompareAndSwap(ctx, 0, policyJSON("a")); err != nil {
			t.Fatal(err)
		}
		const n = 8
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins, mismatches := 0, 0
		for i := range n {
			wg.Go(func() {
				_, err := s.CompareAndSwap(ctx, 1, policyJSON(fmt.Sprintf("g%d", i)))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case errors.Is(err, routing.ErrVersionMismatch):
					mismatches++
				default:
					t.Errorf("CompareAndSwap: %v", err)
				}
			})
		}
		wg.Wait()
		if wins != 1 || mismatches != n-1 {
			t.Fatalf("%d concurrent writers from version 1: %d won, %d mismatched; want exactly 1 winner", n, wins, mismatches)
		}
		if _, v, err := s.Load(ctx); err != nil || v != 2 {
			t.Fatalf("version after the race = %d, %v; want 2", v, err)
		}
	})
}

func policyJSON(gw string) []byte {
	b, err := json.Marshal(routing.DefaultPolicy(gw))
	if err != nil {
		panic(err)
	}
	return b
}

// sameJSON compares JSON documents by value (a store may re-encode them).
func sameJSON(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}
