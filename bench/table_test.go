package bench_test

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// row is one line of the table: a payrail path and its baseline (nil when
// the path has none), each a benchmark whose op is unit.
type row struct {
	name     string
	unit     string // what one op is: "req", "msg"
	needs    string // "redis", "postgres" or "" (in-process, or kfake)
	goal     string
	payrail  func(*testing.B)
	baseline func(*testing.B)
	baseName string
}

func rows() []row {
	return []row{
		{"POST /payments sync (in-process handler)", "req", "", "≥ 0.625× (≤ 1.6× the trivial handler's time)",
			benchHTTPPayrail(false), benchHTTPTrivial, "trivial net/http JSON handler"},
		{"POST /payments async 202 (in-process handler, worker running)", "req", "", "—",
			benchHTTPPayrail(true), benchHTTPTrivial, "trivial net/http JSON handler"},
		{"Processor.Authorize (sync, memory stores)", "req", "", "≥ 300k/s, ≤ 15 allocs",
			benchAuthorize, nil, ""},
		{"redis idempotency (opened by URL): Begin+Complete", "req", "redis", "≥ 0.9×",
			benchIdemExecute, benchRedisSetNXSet, "raw go-redis SET NX + SET XX"},
		{"redis idempotency (opened by URL): replay", "req", "redis", "—",
			benchIdemReplay, benchRedisGet, "raw go-redis GET"},
		{"postgres payment store (opened by URL): Create+Update", "req", "postgres", "—",
			benchPgStore, benchPgRaw, "raw pgx INSERT + UPDATE"},
		{"bus/inmemory Publish → Receive → ack", "msg", "", "> 1× (stay ahead)",
			withCPU(benchInmemory(1)), withCPU(benchGoChannel(1)), "Watermill GoChannel Publish → ack"},
		{"bus/inmemory PublishBatch(100) → Receive → ack", "msg", "", "> 1×, and not slower than single",
			withCPU(benchInmemory(100)), withCPU(benchGoChannel(100)), "Watermill GoChannel Publish(100 msgs) → ack"},
		{"bus/kafka Publish, 16 publishers per CPU (kfake)", "msg", "", "≥ 0.9×",
			withCPU(benchKafkaParallel), withCPU(benchSaramaParallel), "raw sarama AsyncProducer, as many goroutines each awaiting its ack"},
		{"bus/kafka PublishBatch(100) (kfake)", "msg", "", "≥ 1.0×",
			withCPU(benchKafkaBatch(100)), withCPU(benchSaramaBatch(100)), "raw sarama AsyncProducer, 100 records then their acks"},
		{"bus/kafka PublishBatch(1000) (kfake)", "msg", "", "≥ 1.0×",
			withCPU(benchKafkaBatch(1000)), withCPU(benchSaramaBatch(1000)), "raw sarama AsyncProducer, 1000 records then their acks"},
	}
}

// BenchmarkCompare runs every row's payrail path and baseline as
// sub-benchmarks, for go test -bench and benchstat.
func BenchmarkCompare(b *testing.B) {
	for _, r := range rows() {
		b.Run(r.name+"/payrail", func(b *testing.B) { requirePeer(b, r.needs); r.payrail(b) })
		if r.baseline != nil {
			b.Run(r.name+"/baseline", func(b *testing.B) { requirePeer(b, r.needs); r.baseline(b) })
		}
	}
}

func requirePeer(tb testing.TB, needs string) {
	switch needs {
	case "redis":
		redisPeer(tb)
	case "postgres":
		pgPeer(tb)
	}
}

// measurement is the median of one side's rounds.
type measurement struct {
	ns, allocs float64
	n          int
}

// measure runs the benchmark f once and fails t if it failed.
func measure(t *testing.T, what string, f func(*testing.B)) testing.BenchmarkResult {
	t.Helper()
	failed := false
	r := testing.Benchmark(func(b *testing.B) {
		defer func() {
			if b.Failed() {
				failed = true
			}
		}()
		f(b)
	})
	if failed || r.N == 0 {
		t.Fatalf("%s: the benchmark failed (run it alone with go test -bench to see why)", what)
	}
	return r
}

func median(rs []testing.BenchmarkResult) measurement {
	ns := make([]float64, len(rs))
	al := make([]float64, len(rs))
	n := 0
	for i, r := range rs {
		ns[i] = float64(r.T.Nanoseconds()) / float64(r.N)
		al[i] = float64(r.MemAllocs) / float64(r.N)
		n += r.N
	}
	slices.Sort(ns)
	slices.Sort(al)
	return measurement{ns: ns[len(ns)/2], allocs: al[len(al)/2], n: n}
}

func (m measurement) String(unit string) string {
	return fmt.Sprintf("%s/%s · %s %s/s · %.0f allocs", fmtDur(m.ns), unit, fmtRate(1e9/m.ns), unit, m.allocs)
}

func fmtDur(ns float64) string {
	switch {
	case ns >= 1e6:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.1f µs", ns/1e3)
	}
	return fmt.Sprintf("%.0f ns", ns)
}

func fmtRate(r float64) string {
	switch {
	case r >= 1e6:
		return fmt.Sprintf("%.2fM", r/1e6)
	case r >= 1e3:
		return fmt.Sprintf("%.1fk", r/1e3)
	}
	return fmt.Sprintf("%.0f", r)
}

// TestTable measures every row, payrail and baseline alternated round by
// round in this one process, and prints the table of medians and ratios.
// PAYRAIL_BENCH=full runs 3 rounds of PAYRAIL_BENCHTIME (default 1s) per
// side; PAYRAIL_BENCH=tiny one round of 30 ops, to check in seconds that
// every row still runs. Without PAYRAIL_BENCH the test is skipped.
func TestTable(t *testing.T) {
	rounds, benchtime := 0, ""
	switch mode := os.Getenv("PAYRAIL_BENCH"); mode {
	case "full":
		rounds, benchtime = 3, "1s"
		if bt := os.Getenv("PAYRAIL_BENCHTIME"); bt != "" {
			rounds, benchtime = 3, bt
		}
	case "tiny":
		rounds, benchtime = 1, "30x"
	case "":
		t.Skip("set PAYRAIL_BENCH=tiny or PAYRAIL_BENCH=full to print the comparison table")
	default:
		t.Fatalf("PAYRAIL_BENCH=%q: want tiny or full", mode)
	}
	if err := flag.Set("test.benchtime", benchtime); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var out strings.Builder
	fmt.Fprintf(&out, "| path | payrail | baseline (same run) | ratio (payrail ÷ baseline throughput) | goal |\n|---|---|---|---|---|\n")
	for _, r := range rows() {
		t.Run(r.name, func(t *testing.T) {
			requirePeer(t, r.needs)
			var pr, br []testing.BenchmarkResult
			for i := range rounds {
				// ABBA: each side goes first in every other round, so that
				// what one side leaves behind (a table dropped, garbage, a
				// server flushing) does not always fall on the other.
				if i%2 == 1 && r.baseline != nil {
					br = append(br, measure(t, r.name+" (baseline)", r.baseline))
				}
				pr = append(pr, measure(t, r.name+" (payrail)", r.payrail))
				if i%2 == 0 && r.baseline != nil {
					br = append(br, measure(t, r.name+" (baseline)", r.baseline))
				}
			}
			p := median(pr)
			if r.baseline == nil {
				fmt.Fprintf(&out, "| %s | %s | — | — | %s |\n", r.name, p.String(r.unit), r.goal)
				return
			}
			bm := median(br)
			fmt.Fprintf(&out, "| %s | %s | %s: %s | %.2f× | %s |\n", r.name, p.String(r.unit), r.baseName, bm.String(r.unit), bm.ns/p.ns, r.goal)
		})
	}
	fmt.Printf("\n%s\n(%s, %d round(s) of %s per side, medians; %s)\n", out.String(), runtimeNote(), rounds, benchtime, time.Since(start).Round(time.Second))
}

func runtimeNote() string {
	return fmt.Sprintf("%s, GOMAXPROCS=%d", runtime.Version(), runtime.GOMAXPROCS(0))
}
