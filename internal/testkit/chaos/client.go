package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// pool is the set of live instances clients send requests to, like a load
// balancer's target list.
type pool struct {
	mu    sync.Mutex
	ins   []*Instance
	ended bool // no instance will come back: clients give up
}

func (p *pool) pick(r *rand.Rand) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.ins) == 0 {
		return "", !p.ended
	}
	return p.ins[r.IntN(len(p.ins))].URL, true
}

// clients drives orders over HTTP and records every definite answer.
type clients struct {
	pool     *pool
	http     *http.Client
	seed     uint64
	merchant string
	dupProb  float64
	dice     *Dice
	requests atomic.Int64
	gaveUp   atomic.Int64

	mu      sync.Mutex
	answers []Answer
	// gaveUpOn says, for each submission that got no definite answer,
	// the order and the last answer it got.
	gaveUpOn []string
}

func newClients(p *pool, seed uint64, dice *Dice, dup float64) *clients {
	tr := &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}
	return &clients{pool: p, seed: seed, dice: dice, dupProb: dup, merchant: "dev",
		http: &http.Client{Transport: tr, Timeout: 5 * time.Second}}
}

// order is one client order: its key is also its order id.
type order struct {
	key   string
	body  []byte
	async bool
}

func makeOrder(seed uint64, i int, r *rand.Rand) order {
	pm := "pm_card_visa"
	switch x := r.IntN(100); {
	case x < 7:
		pm = "pm_card_chargeDeclined"
	case x < 9:
		pm = "pm_card_processingError"
	}
	capture := "automatic"
	if r.IntN(100) < 15 {
		capture = "manual"
	}
	key := fmt.Sprintf("soak-%s-o%d", strconv.FormatUint(seed, 36), i) // no digit runs that look like a card number
	body, _ := json.Marshal(map[string]any{
		"amount": 100 + r.IntN(10000), "currency": "EUR", "payment_method": pm, "origin": "web",
		"capture_method": capture, "metadata": map[string]string{MetaOrder: key},
	})
	return order{key: key, body: body, async: r.IntN(2) == 0}
}

// run sends orders[from:to) from n goroutines.
func (c *clients) run(ctx context.Context, from, to, n int, pace time.Duration) {
	var next atomic.Int64
	next.Store(int64(from))
	start := time.Now()
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(c.seed, uint64(w)<<32|uint64(from)))
			for {
				i := int(next.Add(1) - 1)
				if i >= to || ctx.Err() != nil {
					return
				}
				if pace > 0 { // order i is not sent before its time
					select {
					case <-ctx.Done():
						return
					case <-time.After(time.Until(start.Add(time.Duration(i-from) * pace))):
					}
				}
				o := makeOrder(c.seed, i, rand.New(rand.NewPCG(c.seed, uint64(i))))
				if !c.submit(ctx, r, o, false) {
					continue
				}
				if c.dice.Roll(c.dupProb, FaultClientDuplicate) {
					c.submit(ctx, r, o, true)
				}
			}
		})
	}
	wg.Wait()
}

// submit sends the order until a definite answer, retrying with the same
// key and body on connection errors, timeouts, 5xx (except a failed
// payment's 503 gateway_unavailable), 409 idempotency_key_in_use and 429,
// honouring Retry-After (capped at 1s). It reports whether an answer came.
func (c *clients) submit(ctx context.Context, r *rand.Rand, o order, dup bool) bool {
	deadline := time.Now().Add(60 * time.Second)
	backoff := 20 * time.Millisecond
	last, attempts := "none", 0
	for ; time.Now().Before(deadline) && ctx.Err() == nil; attempts++ {
		base, ok := c.pool.pick(r)
		if !ok {
			break
		}
		wait := backoff
		if base != "" {
			a, retryAfter, definite := c.send(ctx, base, o)
			last = "connection error"
			if a.HTTPStatus != 0 {
				last = fmt.Sprintf("%d %s (payment %q)", a.HTTPStatus, a.Code, a.PaymentID)
			}
			if definite {
				a.Duplicate = dup
				c.mu.Lock()
				c.answers = append(c.answers, a)
				c.mu.Unlock()
				return true
			}
			if retryAfter > 0 {
				wait = min(retryAfter, time.Second)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
	c.gaveUp.Add(1)
	c.mu.Lock()
	c.gaveUpOn = append(c.gaveUpOn, fmt.Sprintf("order %s: %d attempts, the last answer %s", o.key, attempts, last))
	c.mu.Unlock()
	return false
}

type answerBody struct {
	ID        string `json:"id"`
	Code      string `json:"code"`
	PaymentID string `json:"payment_id"`
}

func (c *clients) send(ctx context.Context, base string, o order) (Answer, time.Duration, bool) {
	c.requests.Add(1)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/payments", bytes.NewReader(o.body))
	if err != nil {
		return Answer{}, 0, false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", o.key)
	if o.async {
		req.Header.Set("Prefer", "respond-async")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return Answer{}, 0, false // connection refused or reset, timeout: retry
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return Answer{}, 0, false
	}
	var b answerBody
	_ = json.Unmarshal(raw, &b)
	a := Answer{Order: o.key, Merchant: c.merchant, HTTPStatus: resp.StatusCode, Code: b.Code, Async: o.async, PaymentID: b.PaymentID}
	if a.Accepted() {
		a.PaymentID = b.ID
	}
	retryAfter := time.Duration(0)
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
		retryAfter = time.Duration(s) * time.Second
	}
	switch {
	case resp.StatusCode == http.StatusServiceUnavailable && b.Code == "gateway_unavailable" && b.PaymentID != "":
		return a, 0, true // the payment failed: a definite answer
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusTooManyRequests,
		resp.StatusCode == http.StatusConflict && b.Code == "idempotency_key_in_use":
		return a, retryAfter, false
	}
	return a, 0, true
}

func (c *clients) snapshot() []Answer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Answer(nil), c.answers...)
}
