// Command loadgen sends POST /payments at a fixed rate (open loop, as wrk2
// does) and reports latency percentiles measured from each request's
// scheduled start, so that a stalled server is not hidden by a load
// generator that waits for it (coordinated omission). With -pid it also
// samples that process's resident set size every -rss-every, to show
// whether memory stays flat under steady load.
//
//	go run ./bench/cmd/loadgen -url http://127.0.0.1:8080 -rate 2000 -d 30s
//	go run ./bench/cmd/loadgen -url http://127.0.0.1:8080 -rate 10000 -d 120s -pid $(pgrep -n server)
//
// Each request has a new Idempotency-Key; -async adds Prefer: respond-async.
// It exits with status 1 if any response was not 201/202 or failed.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/payrail/payrail/bench"
)

func main() {
	var (
		url      = flag.String("url", "http://127.0.0.1:8080", "server base URL")
		rate     = flag.Int("rate", 2000, "requests per second")
		dur      = flag.Duration("d", 30*time.Second, "duration")
		warmup   = flag.Duration("warmup", 3*time.Second, "load at the same rate before measuring")
		conns    = flag.Int("c", 256, "maximum concurrent requests (connections)")
		key      = flag.String("key", "sk_a", "API key")
		async    = flag.Bool("async", false, "send Prefer: respond-async")
		pid      = flag.Int("pid", 0, "process whose RSS to sample (0: none)")
		rssEvery = flag.Duration("rss-every", 5*time.Second, "RSS sampling interval")
	)
	flag.Parse()
	if *rate <= 0 || *conns <= 0 {
		fmt.Fprintln(os.Stderr, "loadgen: -rate and -c must be positive")
		os.Exit(2)
	}
	r := &runner{
		url: strings.TrimSuffix(*url, "/") + "/payments", key: *key, async: *async,
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns}},
		// Letters between digit runs: the API refuses keys holding something
		// shaped like a card number (13-19 digits passing Luhn).
		prefix: "lg" + strconv.FormatInt(time.Now().Unix(), 10) + "n",
	}
	if *warmup > 0 {
		r.run(*rate, *warmup, *conns, false)
	}
	stopRSS := sampleRSS(*pid, *rssEvery)
	res := r.run(*rate, *dur, *conns, true)
	stopRSS()
	res.print(*rate, *dur)
	if res.failed > 0 {
		os.Exit(1)
	}
}

type runner struct {
	url, key, prefix string
	async            bool
	client           *http.Client
	seq              atomic.Int64
}

type result struct {
	latencies []time.Duration // from each request's scheduled start
	statuses  map[int]int
	failed    int // transport errors and statuses other than 201/202
	sent      int
	elapsed   time.Duration
	firstErr  string
}

// run sends rate requests a second for d: request i is due at start +
// i/rate, taken by the first free worker of conns; its latency counts from
// when it was due.
func (r *runner) run(rate int, d time.Duration, conns int, record bool) *result {
	total := int(int64(rate) * int64(d) / int64(time.Second))
	due := make(chan time.Time, total)
	res := &result{statuses: map[int]int{}, latencies: make([]time.Duration, 0, total)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for at := range due {
				status, err := r.post()
				lat := time.Since(at)
				if !record {
					continue
				}
				mu.Lock()
				res.latencies = append(res.latencies, lat)
				switch {
				case err != nil:
					res.failed++
					if res.firstErr == "" {
						res.firstErr = err.Error()
					}
				case status != http.StatusCreated && status != http.StatusAccepted:
					res.failed++
					res.statuses[status]++
				default:
					res.statuses[status]++
				}
				mu.Unlock()
			}
		}()
	}
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	for i := range total {
		at := start.Add(time.Duration(i) * interval)
		if w := time.Until(at); w > 0 {
			time.Sleep(w)
		}
		due <- at
	}
	close(due)
	wg.Wait()
	res.sent = total
	res.elapsed = time.Since(start)
	return res
}

func (r *runner) post() (int, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, r.url, bytes.NewReader([]byte(bench.PayBody)))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+r.key)
	req.Header.Set("Idempotency-Key", r.prefix+strconv.FormatInt(r.seq.Add(1), 10))
	if r.async {
		req.Header.Set("Prefer", "respond-async")
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

func (res *result) print(rate int, d time.Duration) {
	slices.Sort(res.latencies)
	pct := func(p float64) time.Duration {
		if len(res.latencies) == 0 {
			return 0
		}
		return res.latencies[min(len(res.latencies)-1, int(p/100*float64(len(res.latencies))))]
	}
	fmt.Printf("target %d req/s for %v: sent %d in %v (%.0f req/s achieved)\n",
		rate, d, res.sent, res.elapsed.Round(time.Millisecond), float64(res.sent)/res.elapsed.Seconds())
	fmt.Printf("latency from scheduled start: p50 %v  p90 %v  p99 %v  p99.9 %v  max %v\n",
		pct(50).Round(10*time.Microsecond), pct(90).Round(10*time.Microsecond), pct(99).Round(10*time.Microsecond),
		pct(99.9).Round(10*time.Microsecond), pct(100).Round(10*time.Microsecond))
	fmt.Printf("statuses: %v  failed: %d\n", res.statuses, res.failed)
	if res.firstErr != "" {
		fmt.Printf("first error: %s\n", res.firstErr)
	}
}

// sampleRSS prints pid's VmRSS every interval until the returned function
// is called.
func sampleRSS(pid int, every time.Duration) (stop func()) {
	if pid <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			fmt.Printf("rss t=%3.0fs %s\n", time.Since(start).Seconds(), rss(pid))
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		fmt.Printf("rss t=%3.0fs %s (end)\n", time.Since(start).Seconds(), rss(pid))
	}
}

func rss(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return "unavailable: " + err.Error()
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unavailable"
}
