package bench_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// brokers is the in-process kfake cluster (the Kafka rows' peer), started
// once for the package as bus/kafka's tests start theirs.
var brokers string

func TestMain(m *testing.M) {
	c, err := kfake.NewCluster(
		kfake.NumBrokers(3),
		kfake.DefaultNumPartitions(4),
		kfake.GroupMinSessionTimeout(100*time.Millisecond),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kfake:", err)
		os.Exit(1)
	}
	brokers = strings.Join(c.ListenAddrs(), ",")
	code := m.Run()
	c.Close()
	os.Exit(code)
}
