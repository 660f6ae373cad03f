package opsctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/examples/internal/config"
	"github.com/payrail/payrail/observability"
	"github.com/payrail/payrail/payments"
)

// subOpener opens the worker's subscription; tests replace it.
type subOpener func(ctx context.Context, cfg *config.Config, opts ...bus.SubscriptionOption) (*bus.Subscription, error)

// openWorkerSubscription opens the subscription the worker consumes. The
// in-memory bus is refused: it lives inside the server process.
func openWorkerSubscription(ctx context.Context, cfg *config.Config, opts ...bus.SubscriptionOption) (*bus.Subscription, error) {
	_, subURL, err := cfg.BusURLs()
	if err != nil {
		return nil, usagef("%v", err)
	}
	if scheme(subURL) == config.AdapterInMemory {
		return nil, usagef("the in-memory bus lives inside the server process and cannot be reached from outside; " +
			"its DLQ size is the metric payrail_bus_dead_letters on the server's /metrics. Set MESSAGE_BUS_ADAPTER (or BUS_SUBSCRIPTION_URL) to the deployment's bus")
	}
	sub, err := bus.OpenSubscription(ctx, subURL, opts...)
	if err != nil {
		if errors.Is(err, bus.ErrUnknownDriver) || errors.Is(err, bus.ErrInvalidURL) {
			return nil, usagef("bus subscription %s: %v", config.Redact(subURL), err)
		}
		return nil, fmt.Errorf("bus subscription %s: %w", config.Redact(subURL), err)
	}
	return sub, nil
}

// busCommand runs "bus stats" and "bus dlq ls|redrive"; args follow "bus".
func (c *cli) busCommand(args []string) error { return c.busWith(args, openWorkerSubscription) }

func (c *cli) busWith(args []string, open subOpener) error {
	if len(args) == 0 {
		return usagef("bus needs a subcommand: stats, dlq ls, dlq redrive")
	}
	switch {
	case args[0] == "stats":
		return c.busStats(args[1:], open)
	case args[0] == "dlq" && len(args) > 1 && (args[1] == "ls" || args[1] == "list"):
		return c.dlqList(args[2:], open)
	case args[0] == "dlq" && len(args) > 1 && args[1] == "redrive":
		return c.dlqRedrive(args[2:], open)
	}
	return usagef("unknown command %q", "bus "+strings.Join(args, " "))
}

func (c *cli) busStats(args []string, open subOpener) error {
	if err := parseNoArgs(c.flags("bus stats"), args); err != nil {
		return err
	}
	sub, err := open(c.ctx, c.Config)
	if err != nil {
		return err
	}
	defer sub.Close()
	st, err := sub.Stats(c.ctx)
	if errors.Is(err, bus.ErrUnsupported) {
		return fmt.Errorf("this bus (%s) cannot report queue counts; see docs/observability.md", c.Config.MessageBusAdapter)
	}
	if err != nil {
		return err
	}
	count := func(n int64) string {
		if n < 0 {
			return "unknown"
		}
		return fmt.Sprint(n)
	}
	age := "unknown"
	if st.OldestAge >= 0 {
		age = st.OldestAge.Round(time.Millisecond).String()
	}
	w := tabwriter.NewWriter(c.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "BACKLOG\tIN FLIGHT\tDEAD LETTERS\tOLDEST AGE")
	fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", count(st.Backlog), count(st.InFlight), count(st.DeadLetters), age)
	return w.Flush()
}

// deadLetterView is a dead letter as listed; the body (the payment command:
// ids only, never card data) is shown with --body.
type deadLetterView struct {
	ID             string            `json:"id"`
	Key            string            `json:"key,omitempty"`
	PaymentID      string            `json:"payment_id,omitempty"`
	Merchant       string            `json:"merchant,omitempty"`
	Attempt        int               `json:"delivery_attempt"`
	DeadLetteredAt *time.Time        `json:"dead_lettered_at,omitempty"`
	Reason         string            `json:"reason"`
	TraceParent    string            `json:"traceparent,omitempty"`
	Attributes     map[string]string `json:"attributes,omitempty"`
	Body           string            `json:"body,omitempty"`
}

func (c *cli) dlqList(args []string, open subOpener) error {
	fs := c.flags("bus dlq ls")
	limit := fs.Int("limit", 100, "list at most N dead letters")
	body := fs.Bool("body", false, "also print each message body (the payment command)")
	asJSON := fs.Bool("json", false, "one JSON object per line")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *limit <= 0 {
		return usagef("--limit must be positive")
	}
	sub, err := open(c.ctx, c.Config)
	if err != nil {
		return err
	}
	defer sub.Close()
	dls, err := sub.DeadLetters(c.ctx, *limit)
	if errors.Is(err, bus.ErrUnsupported) {
		return fmt.Errorf("this bus (%s) does not expose its dead-letter queue to payrail; inspect it with the broker's own console", c.Config.MessageBusAdapter)
	}
	if err != nil {
		return err
	}
	views := make([]deadLetterView, 0, len(dls))
	for _, dl := range dls {
		m := dl.Message
		v := deadLetterView{ID: m.ID, Key: m.Key, Attempt: m.DeliveryAttempt, Reason: dl.Reason,
			PaymentID: m.Attributes[payments.AttrPaymentID], Merchant: m.Attributes[payments.AttrMerchant],
			TraceParent: m.Attributes["traceparent"]}
		if !dl.DeadLetteredAt.IsZero() {
			t := dl.DeadLetteredAt.UTC()
			v.DeadLetteredAt = &t
		}
		for k, val := range m.Attributes {
			switch k {
			case "payrail.payment_id", "payrail.merchant", "traceparent":
			default:
				if v.Attributes == nil {
					v.Attributes = map[string]string{}
				}
				v.Attributes[k] = val
			}
		}
		if *body {
			v.Body = string(m.Body)
		}
		views = append(views, v)
	}
	if *asJSON {
		return writeJSONLines(c.Stdout, views)
	}
	w := tabwriter.NewWriter(c.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tPAYMENT\tMERCHANT\tATTEMPT\tDEAD-LETTERED\tTRACE\tREASON")
	for _, v := range views {
		at := "-"
		if v.DeadLetteredAt != nil {
			at = v.DeadLetteredAt.Format(time.RFC3339)
		}
		trace := "-"
		if parts := strings.Split(v.TraceParent, "-"); len(parts) == 4 {
			trace = parts[1] // the trace id, to look the message's journey up in the tracing backend
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", v.ID, orDash(v.PaymentID), orDash(v.Merchant), v.Attempt, at, trace, v.Reason)
		if *body {
			fmt.Fprintf(w, "\tbody: %s\n", v.Body)
		}
		if len(v.Attributes) > 0 {
			keys := make([]string, 0, len(v.Attributes))
			for k := range v.Attributes {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var kv []string
			for _, k := range keys {
				kv = append(kv, k+"="+v.Attributes[k])
			}
			fmt.Fprintf(w, "\tattributes: %s\n", strings.Join(kv, " "))
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "-- %d dead letter(s)", len(views))
	if len(views) == *limit {
		fmt.Fprintf(c.Stdout, " (limit reached: --limit to see more)")
	}
	fmt.Fprintln(c.Stdout)
	return nil
}

// redriveLine is one dead letter as `bus dlq redrive` reports it: its
// payment as the configured payment store has it, and what the worker does
// with the redriven command (payments.RedrivePlan).
type redriveLine struct {
	id, payment, status, failure, action string
	reprocess                            bool
}

// planRedrive reads the payment of each dead letter from PAYMENTS_STORE_URL
// (when it names a shared store) and says what a redrive does with it.
func (c *cli) planRedrive(dls []*bus.DeadLetter) ([]redriveLine, error) {
	var ps payments.Store
	if u := c.Config.PaymentsStoreURL; u != "" && scheme(u) != "memory" {
		s, err := payments.OpenStore(c.ctx, u)
		if err != nil {
			return nil, fmt.Errorf("PAYMENTS_STORE_URL (reading the dead letters' payments): %w", err)
		}
		defer s.Close()
		ps = s
	}
	lines := make([]redriveLine, 0, len(dls))
	for _, dl := range dls {
		m := dl.Message
		id, merchant := m.Attributes[payments.AttrPaymentID], m.Attributes[payments.AttrMerchant]
		if id == "" || merchant == "" {
			var cmd struct {
				PaymentID string `json:"payment_id"`
				Merchant  string `json:"merchant"`
			}
			_ = json.Unmarshal(m.Body, &cmd)
			id, merchant = cmd.PaymentID, cmd.Merchant
		}
		l := redriveLine{id: m.ID, payment: orDash(id), status: "?", failure: "-", reprocess: true}
		switch {
		case id == "" || merchant == "":
			l.action = "redrive (not a payment command: the worker dead-letters it again)"
		case ps == nil:
			l.action = "redrive (status unknown: PAYMENTS_STORE_URL is not a shared store)"
		default:
			p, err := ps.Get(c.ctx, merchant, id)
			if errors.Is(err, payments.ErrStoreNotFound) {
				l.status, l.action = "not found", "redrive (payment not found: dead-lettered again after its attempts)"
				break
			}
			if err != nil {
				return nil, fmt.Errorf("reading payment %s: %w", id, err)
			}
			process, why := payments.RedrivePlan(p)
			l.status, l.failure, l.reprocess = string(p.Status), orDash(p.FailureCode), process
			l.action = "skip (" + why + ")"
			if process {
				l.action = "redrive (" + why + ")"
			}
		}
		lines = append(lines, l)
	}
	return lines, nil
}

// printRedrive writes the per-message report and returns how many the
// worker reprocesses and skips.
func (c *cli) printRedrive(lines []redriveLine) (reprocess, skip int, err error) {
	w := tabwriter.NewWriter(c.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tPAYMENT\tSTATUS\tFAILURE\tACTION")
	for _, l := range lines {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", l.id, l.payment, l.status, l.failure, l.action)
		if l.reprocess {
			reprocess++
		} else {
			skip++
		}
	}
	return reprocess, skip, w.Flush()
}

// dlqRedrive reports, per dead letter, its payment's status and failure
// code and what the redrive does with it, then (--apply) redrives. Every
// bus's dead-letter queue redrives in bulk (the first N, or all), so the
// commands of final outcomes are moved back too: the worker acknowledges
// them without calling the gateway (payments.Redrivable).
func (c *cli) dlqRedrive(args []string, open subOpener) error {
	fs := c.flags("bus dlq redrive")
	limit := fs.Int("limit", 0, "redrive at most N dead letters (default: all)")
	apply := fs.Bool("apply", false, "redrive (default: print what would be redriven)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *limit < 0 {
		return usagef("--limit must not be negative")
	}
	var opts []bus.SubscriptionOption
	if *apply {
		// payrail.bus.redriven is counted by Subscription.Redrive: export it
		// (OTLP, from the OTEL_* environment) like the services do.
		prov, shutdown, err := observability.NewProviders(c.ctx, observability.WithServiceName("opsctl"))
		if err != nil {
			return err
		}
		defer func() {
			if err := shutdown(context.WithoutCancel(c.ctx)); err != nil {
				fmt.Fprintf(c.Stderr, "opsctl: warning: exporting telemetry: %v\n", err)
			}
		}()
		opts = append(opts, bus.WithMeterProvider(prov.Meter), bus.WithTracerProvider(prov.Tracer))
	}
	sub, err := open(c.ctx, c.Config, opts...)
	if err != nil {
		return err
	}
	defer sub.Close()
	const maxReport = 1000
	peek := *limit
	if peek == 0 {
		peek = maxReport
	}
	dls, err := sub.DeadLetters(c.ctx, peek)
	if errors.Is(err, bus.ErrUnsupported) {
		return fmt.Errorf("this bus (%s) does not support redrive through payrail; use the broker's own redrive", c.Config.MessageBusAdapter)
	}
	if err != nil {
		return err
	}
	lines, err := c.planRedrive(dls)
	if err != nil {
		return err
	}
	reprocess, skip, err := c.printRedrive(lines)
	if err != nil {
		return err
	}
	more := ""
	if *limit == 0 && len(dls) == peek {
		more = fmt.Sprintf(" (the first %d listed; there may be more)", maxReport)
	}
	if !*apply {
		fmt.Fprintf(c.Stdout, "-- dry run: %d dead letter(s)%s: %d to redrive, %d to skip; the bus redrives in bulk, so --apply moves them all back and the worker acknowledges the skipped ones without calling the gateway; add --apply to redrive\n",
			len(dls), more, reprocess, skip)
		return nil
	}
	n, err := sub.Redrive(c.ctx, *limit)
	if errors.Is(err, bus.ErrUnsupported) {
		return fmt.Errorf("this bus (%s) does not support redrive through payrail; use the broker's own redrive", c.Config.MessageBusAdapter)
	}
	if err != nil {
		return fmt.Errorf("redrive (after %d moved): %w", n, err)
	}
	fmt.Fprintf(c.Stdout, "redrove %d dead letter(s)%s: the worker reprocesses %d (same gateway idempotency key: nothing is charged twice) and acknowledges %d without calling the gateway\n",
		n, more, reprocess, skip)
	return nil
}
