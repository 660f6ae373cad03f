package observability

import (
	"context"
	"io"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// NewLogger returns a JSON slog logger writing to w at level, whose records
// carry trace_id and span_id when logged with a context holding a span.
func NewLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(TraceHandler(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})))
}

// TraceHandler wraps h so that records logged with a context carrying a
// valid span get trace_id and span_id attributes, always at the top level
// of the record (also under WithGroup), where log backends look for them.
func TraceHandler(h slog.Handler) slog.Handler { return &traceHandler{h: h} }

// traceHandler passes attributes added before the first WithGroup to the
// wrapped handler, and keeps the open groups (with the attributes added
// inside each) itself, so that Handle can place the trace ids outside them.
type traceHandler struct {
	h      slog.Handler
	groups []string
	attrs  [][]slog.Attr // attrs[i] were added inside groups[i]
}

func (t *traceHandler) Enabled(ctx context.Context, l slog.Level) bool { return t.h.Enabled(ctx, l) }

func (t *traceHandler) Handle(ctx context.Context, r slog.Record) error {
	sc := trace.SpanContextFromContext(ctx)
	if len(t.groups) == 0 {
		if sc.IsValid() {
			r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
		}
		return t.h.Handle(ctx, r)
	}
	// Nest the record's attributes in the open groups by hand.
	inner := make([]slog.Attr, 0, len(t.attrs[len(t.attrs)-1])+r.NumAttrs())
	inner = append(inner, t.attrs[len(t.attrs)-1]...)
	r.Attrs(func(a slog.Attr) bool {
		inner = append(inner, a)
		return true
	})
	g := slog.Attr{Key: t.groups[len(t.groups)-1], Value: slog.GroupValue(inner...)}
	for i := len(t.groups) - 2; i >= 0; i-- {
		g = slog.Attr{Key: t.groups[i], Value: slog.GroupValue(append(append([]slog.Attr(nil), t.attrs[i]...), g)...)}
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	if sc.IsValid() {
		out.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	out.AddAttrs(g)
	return t.h.Handle(ctx, out)
}

func (t *traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return t
	}
	if len(t.groups) == 0 {
		return &traceHandler{h: t.h.WithAttrs(as)}
	}
	c := &traceHandler{h: t.h, groups: t.groups, attrs: append([][]slog.Attr(nil), t.attrs...)}
	last := len(c.attrs) - 1
	c.attrs[last] = append(append([]slog.Attr(nil), c.attrs[last]...), as...)
	return c
}

func (t *traceHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return t
	}
	return &traceHandler{
		h:      t.h,
		groups: append(append([]string(nil), t.groups...), name),
		attrs:  append(append([][]slog.Attr(nil), t.attrs...), nil),
	}
}

// ParseLevel parses debug, info, warn or error (case-insensitive); anything
// else is info.
func ParseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}
