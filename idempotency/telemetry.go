package idempotency

import (
	"net/url"
	"reflect"
	"strings"

	"go.opentelemetry.io/otel/attribute"

	"github.com/payrail/payrail/internal/dbtel"
	"github.com/payrail/payrail/telemetry"
)

// Telemetry.
//
// A Store instruments its operations with OpenTelemetry, following the
// database client conventions, whatever its driver:
//
//   - a client span "<operation> <collection>" (begin, complete, release,
//     extend, get, list, delete) with db.system.name (postgresql, redis,
//     aws.dynamodb, or the driver's name: memory), db.operation.name,
//     db.collection.name when the store URL names its table (?table=),
//     and on failure error.type and an error status; Begin's span also
//     carries payrail.idempotency.outcome (acquired, reacquired, replay,
//     in_progress, mismatch);
//   - the histogram MetricOperationDuration (db.client.operation.duration,
//     in seconds) with the same attributes (no outcome).
//
// Spans are only started while an OpenTelemetry SDK is installed, so a
// Store costs no allocation for them otherwise. Never recorded: keys,
// merchants, tokens, fingerprints, stored responses.
const (
	// MetricOperationDuration is the duration of store operations
	// (db.client.operation.duration), by db.system.name, db.operation.name,
	// db.collection.name and error.type.
	MetricOperationDuration = dbtel.MetricOperationDuration
)

const instrumentationName = "github.com/payrail/payrail/idempotency"

// attrOutcome is Begin's outcome on its span; the processor's
// payrail.idempotency.requests counter uses the same key.
const attrOutcome = attribute.Key("payrail.idempotency.outcome")

// Option configures a Store opened with Open or New.
type Option func(*options)

type options struct {
	tel    telemetry.Providers
	system string
	table  string
}

// WithTelemetry sets the OpenTelemetry providers of the store's spans and
// metrics (nil fields, and by default: the application's globals, read
// when the store is opened).
func WithTelemetry(t telemetry.Providers) Option {
	return func(o *options) { o.tel = t }
}

// Store operations, as db.operation.name.
const (
	opBegin = iota
	opComplete
	opRelease
	opExtend
	opGet
	opList
	opDelete
)

func newStoreTelemetry(o options) *dbtel.Telemetry {
	return dbtel.New(dbtel.Config{Providers: o.tel, Scope: instrumentationName, System: o.system, Collection: o.table,
		Ops: []string{"begin", "complete", "release", "extend", "get", "list", "delete"}, Errors: errorClasses})
}

// errorClasses are the store's error.type values.
var errorClasses = []dbtel.ErrorClass{
	{Err: ErrLeaseLost, Type: "lease_lost"}, {Err: ErrNotFound, Type: "not_found"},
	{Err: ErrClosed, Type: "closed"}, {Err: ErrNoDriver, Type: "closed"}, {Err: ErrFull, Type: "full"},
	{Err: ErrInvalidInput, Type: "invalid_input"}, {Err: ErrUnsupported, Type: "unsupported"},
}

// dbSystem maps a driver name (URL scheme or package name) to its
// db.system.name.
func dbSystem(name string) string {
	switch name {
	case "postgres", "postgresql":
		return "postgresql"
	case "dynamodb":
		return "aws.dynamodb"
	case "":
		return "unknown"
	}
	return name
}

// driverName guesses a driver's name from its package
// (github.com/payrail/payrail/idempotency/redis -> redis), for New.
func driverName(d any) string {
	t := reflect.TypeOf(d)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return ""
	}
	p := t.PkgPath()
	return p[strings.LastIndex(p, "/")+1:]
}

// urlOptions are the telemetry names a store URL implies.
func urlOptions(u *url.URL) Option {
	return func(o *options) {
		o.system = dbSystem(u.Scheme)
		o.table = u.Query().Get("table")
	}
}
