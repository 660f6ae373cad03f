package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/IBM/sarama"
	"github.com/go-logr/logr"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"google.golang.org/grpc/grpclog"
)

// RouteLibraryLogs sends what the libraries under the binaries print on
// their own through l, so that every line a process writes is one JSON
// object: the standard library's log package (slog.SetDefault), the
// OpenTelemetry SDK's internal logger and error handler, go-redis, sarama
// and gRPC (the Pub/Sub client). It sets process-wide loggers: call it
// once, from main, never from a library or a test.
func RouteLibraryLogs(l *slog.Logger) {
	slog.SetDefault(l) // the log package's output goes through l too
	otel.SetLogger(logr.FromSlogHandler(l.Handler()))
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		l.Warn("opentelemetry: export or instrumentation error", "error", err)
	}))
	redis.SetLogger(redisLogger{l.With("library", "go-redis")})
	sarama.Logger = printLogger{l.With("library", "sarama"), slog.LevelInfo}
	grpclog.SetLoggerV2(grpcLogger{l.With("library", "grpc")})
}

// grpcLogger is grpclog.LoggerV2 over slog; gRPC's info lines (chatty
// connection state changes) are logged at debug.
type grpcLogger struct{ l *slog.Logger }

func (g grpcLogger) log(level slog.Level, msg string) {
	g.l.Log(context.Background(), level, strings.TrimSpace(msg))
}
func (g grpcLogger) Info(args ...any)   { g.log(slog.LevelDebug, fmt.Sprint(args...)) }
func (g grpcLogger) Infoln(args ...any) { g.log(slog.LevelDebug, fmt.Sprintln(args...)) }
func (g grpcLogger) Infof(format string, args ...any) {
	g.log(slog.LevelDebug, fmt.Sprintf(format, args...))
}
func (g grpcLogger) Warning(args ...any)   { g.log(slog.LevelWarn, fmt.Sprint(args...)) }
func (g grpcLogger) Warningln(args ...any) { g.log(slog.LevelWarn, fmt.Sprintln(args...)) }
func (g grpcLogger) Warningf(format string, args ...any) {
	g.log(slog.LevelWarn, fmt.Sprintf(format, args...))
}
func (g grpcLogger) Error(args ...any)   { g.log(slog.LevelError, fmt.Sprint(args...)) }
func (g grpcLogger) Errorln(args ...any) { g.log(slog.LevelError, fmt.Sprintln(args...)) }
func (g grpcLogger) Errorf(format string, args ...any) {
	g.log(slog.LevelError, fmt.Sprintf(format, args...))
}

// Fatal logs at error and exits, as gRPC's contract requires.
func (g grpcLogger) Fatal(args ...any) { g.log(slog.LevelError, fmt.Sprint(args...)); os.Exit(1) }

// Fatalln is Fatal with Sprintln.
func (g grpcLogger) Fatalln(args ...any) { g.log(slog.LevelError, fmt.Sprintln(args...)); os.Exit(1) }

// Fatalf is Fatal with Sprintf.
func (g grpcLogger) Fatalf(format string, args ...any) {
	g.log(slog.LevelError, fmt.Sprintf(format, args...))
	os.Exit(1)
}

// V reports whether verbosity level l is on: gRPC's verbose logs stay off.
func (g grpcLogger) V(l int) bool { return l <= 0 }

// redisLogger is go-redis's internal.Logging.
type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.WarnContext(ctx, strings.TrimSpace(fmt.Sprintf(format, v...)))
}

// printLogger is the Print/Printf/Println shape (sarama.StdLogger).
type printLogger struct {
	l     *slog.Logger
	level slog.Level
}

func (p printLogger) Print(v ...any) {
	p.l.Log(context.Background(), p.level, strings.TrimSpace(fmt.Sprint(v...)))
}
func (p printLogger) Printf(format string, v ...any) {
	p.l.Log(context.Background(), p.level, strings.TrimSpace(fmt.Sprintf(format, v...)))
}
func (p printLogger) Println(v ...any) {
	p.l.Log(context.Background(), p.level, strings.TrimSpace(fmt.Sprintln(v...)))
}
