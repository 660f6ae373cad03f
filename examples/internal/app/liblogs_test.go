package app

import (
	"encoding/json"
	"errors"
	"log"
	"log/slog"
	"strings"
	"testing"

	"github.com/IBM/sarama"
	"go.opentelemetry.io/otel"
	"google.golang.org/grpc/grpclog"

	"github.com/payrail/payrail/examples/internal/apptest"
	"github.com/payrail/payrail/observability"
)

// What the libraries print on their own comes out as JSON lines through
// the process's logger, never as free text on stderr.
func TestRouteLibraryLogs(t *testing.T) {
	prevDefault, prevSarama := slog.Default(), sarama.Logger
	t.Cleanup(func() {
		slog.SetDefault(prevDefault)
		sarama.Logger = prevSarama
		grpclog.SetLoggerV2(grpclog.NewLoggerV2(nilWriter{}, nilWriter{}, nilWriter{}))
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(error) {}))
	})
	var buf apptest.SyncBuffer
	RouteLibraryLogs(observability.NewLogger(&buf, slog.LevelDebug))

	log.Printf("from the log package")
	otel.Handle(errors.New("exporter unreachable"))
	sarama.Logger.Printf("client/metadata fetching metadata for %d topics", 1)
	grpclog.Warningf("grpc: addrConn.createTransport failed")
	grpclog.Errorf("grpc: server failed")

	want := map[string]string{
		"from the log package":     "INFO",
		"opentelemetry: export or": "WARN",
		"client/metadata fetching": "INFO",
		"addrConn.createTransport": "WARN",
		"grpc: server failed":      "ERROR",
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	for _, line := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("not a JSON line: %q", line)
			continue
		}
		for frag, level := range want {
			if strings.Contains(line, frag) {
				if rec["level"] != level {
					t.Errorf("%q logged at %v, want %s", frag, rec["level"], level)
				}
				delete(want, frag)
			}
		}
	}
	for frag := range want {
		t.Errorf("nothing logged for %q; got:\n%s", frag, buf.String())
	}
}

type nilWriter struct{}

func (nilWriter) Write(b []byte) (int, error) { return len(b), nil }
