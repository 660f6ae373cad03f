package opsctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/examples/internal/config"
	"github.com/payrail/payrail/observability"
	"github.com/payrail/payrail/payments"
)

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

// statsView is bus stats's -o json: the counts, null where the bus
// cannot tell.
type statsView struct {
	Backlog          *int64   `json:"backlog"`
	InFlight         *int64   `json:"in_flight"`
	DeadLetters      *int64   `json:"dead_letters"`
	OldestAgeSeconds *float64 `json:"oldest_age_seconds"`
}

func known(n int64) *int64 {
	if n < 0 {
		return nil
	}
	return &n
}

func (c *cli) busStatsCommand() *cobra.Command {
	var out format
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Backlog, in-flight and dead-letter counts of the worker's subscription",
		Long: `Print the backlog, in-flight and dead-letter counts and the age of the oldest waiting
message of the worker's subscription (the metrics payrail_bus_backlog and
payrail_bus_dead_letters show the same). A count the bus cannot tell is "unknown" (null
in -o json).`,
		Example: `  opsctl bus stats
  opsctl bus stats -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sub, err := openWorkerSubscription(c.ctx, c.Config)
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
			if out == formatJSON {
				v := statsView{Backlog: known(st.Backlog), InFlight: known(st.InFlight), DeadLetters: known(st.DeadLetters)}
				if st.OldestAge >= 0 {
					s := st.OldestAge.Seconds()
					v.OldestAgeSeconds = &s
				}
				return writeJSON(c.Stdout, v)
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
			w := table(c.Stdout)
			fmt.Fprintln(w, "BACKLOG\tIN_FLIGHT\tDEAD_LETTERS\tOLDEST_AGE")
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", count(st.Backlog), count(st.InFlight), count(st.DeadLetters), age)
			return w.Flush()
		},
	}
	addOutput(cmd, &out, false)
	return needsConfig(cmd)
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

func deadLetterViews(dls []*bus.DeadLetter, body bool) []deadLetterView {
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
			case payments.AttrPaymentID, payments.AttrMerchant, "traceparent":
			default:
				if v.Attributes == nil {
					v.Attributes = map[string]string{}
				}
				v.Attributes[k] = val
			}
		}
		if body {
			v.Body = string(m.Body)
		}
		views = append(views, v)
	}
	return views
}

func (c *cli) dlqListCommand() *cobra.Command {
	var (
		limit int
		body  bool
		out   format
	)
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the dead letters of the worker's subscription",
		Long: `List the dead letters of the worker's subscription without consuming them: id, payment,
merchant, delivery attempt, when and why it was dead-lettered, and the trace id to look
its journey up in the tracing backend. The body (the payment command: ids, never card
data) only with --body. -o json prints one dead letter per line.`,
		Example: `  opsctl bus dlq ls
  opsctl bus dlq ls --limit 1 --body -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit <= 0 {
				return usagef("--limit must be positive")
			}
			sub, err := openWorkerSubscription(c.ctx, c.Config)
			if err != nil {
				return err
			}
			defer sub.Close()
			dls, err := sub.DeadLetters(c.ctx, limit)
			if errors.Is(err, bus.ErrUnsupported) {
				return fmt.Errorf("this bus (%s) does not expose its dead-letter queue to payrail; inspect it with the broker's own console", c.Config.MessageBusAdapter)
			}
			if err != nil {
				return err
			}
			views := deadLetterViews(dls, body)
			if out == formatJSON {
				return writeJSONLines(c.Stdout, views)
			}
			return c.printDeadLetters(views, body, limit)
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 100, "list at most N dead letters")
	cmd.Flags().BoolVar(&body, "body", false, "also print each message body (the payment command)")
	addOutput(cmd, &out, true)
	return needsConfig(cmd)
}

func (c *cli) printDeadLetters(views []deadLetterView, body bool, limit int) error {
	w := table(c.Stdout)
	fmt.Fprintln(w, "ID\tPAYMENT\tMERCHANT\tATTEMPT\tDEAD_LETTERED\tTRACE\tREASON")
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
		if body {
			fmt.Fprintf(w, "\tbody: %s\n", v.Body)
		}
		if len(v.Attributes) > 0 {
			var kv []string
			for _, k := range slices.Sorted(maps.Keys(v.Attributes)) {
				kv = append(kv, k+"="+v.Attributes[k])
			}
			fmt.Fprintf(w, "\tattributes: %s\n", strings.Join(kv, " "))
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "-- %d dead letter(s)", len(views))
	if len(views) == limit {
		fmt.Fprintf(c.Stdout, " (limit reached: --limit to see more)")
	}
	fmt.Fprintln(c.Stdout)
	return nil
}

// redriveItem is one dead letter as `bus dlq redrive` reports it: its
// payment as the configured payment store has it, and what the worker does
// with the redriven command (payments.RedrivePlan).
type redriveItem struct {
	ID          string `json:"id"`
	PaymentID   string `json:"payment_id,omitempty"`
	Status      string `json:"status"` // the payment's, "not found" or "?" (unknown)
	FailureCode string `json:"failure_code,omitempty"`
	// Reprocess: the worker processes the redriven command again (else it
	// acknowledges it without calling the gateway).
	Reprocess bool   `json:"reprocess"`
	Action    string `json:"action"`
}

// redriveReport is bus dlq redrive's -o json.
type redriveReport struct {
	DryRun bool          `json:"dry_run"`
	Items  []redriveItem `json:"items"`
	// More: the report lists the first maxReport dead letters; there may
	// be more (and --apply without --limit redrives them too).
	More      bool `json:"more"`
	Reprocess int  `json:"reprocess"`
	Skip      int  `json:"skip"`
	// Redriven is how many were moved back (0 on a dry run).
	Redriven int `json:"redriven"`
}

// planRedrive reads the payment of each dead letter from PAYMENTS_STORE_URL
// (when it names a shared store) and says what a redrive does with it.
func (c *cli) planRedrive(dls []*bus.DeadLetter) ([]redriveItem, error) {
	var ps payments.Store
	if u := c.Config.PaymentsStoreURL; u != "" && scheme(u) != "memory" {
		s, err := payments.OpenStore(c.ctx, u)
		if err != nil {
			return nil, fmt.Errorf("PAYMENTS_STORE_URL (reading the dead letters' payments): %w", err)
		}
		defer s.Close()
		ps = s
	}
	items := make([]redriveItem, 0, len(dls))
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
		it := redriveItem{ID: m.ID, PaymentID: id, Status: "?", Reprocess: true}
		switch {
		case id == "" || merchant == "":
			it.Action = "redrive (not a payment command: the worker dead-letters it again)"
		case ps == nil:
			it.Action = "redrive (status unknown: PAYMENTS_STORE_URL is not a shared store)"
		default:
			p, err := ps.Get(c.ctx, merchant, id)
			if errors.Is(err, payments.ErrStoreNotFound) {
				it.Status, it.Action = "not found", "redrive (payment not found: dead-lettered again after its attempts)"
				break
			}
			if err != nil {
				return nil, fmt.Errorf("reading payment %s: %w", id, err)
			}
			process, why := payments.RedrivePlan(p)
			it.Status, it.FailureCode, it.Reprocess = string(p.Status), p.FailureCode, process
			it.Action = "skip (" + why + ")"
			if process {
				it.Action = "redrive (" + why + ")"
			}
		}
		items = append(items, it)
	}
	return items, nil
}

// maxReport is how many dead letters bus dlq redrive reads for its report
// when no --limit is given.
const maxReport = 1000

// redriveChunk is how many dead letters one Redrive call moves, so that
// the progress bar advances and a failure says how many were moved.
const redriveChunk = 100

func (c *cli) dlqRedriveCommand() *cobra.Command {
	var (
		limit int
		out   format
	)
	cmd := &cobra.Command{
		Use:   "redrive",
		Short: "Move dead letters back for redelivery",
		Long: `Report, per dead letter, its payment's status and failure code (from PAYMENTS_STORE_URL)
and whether the worker reprocesses it (a retryable failure) or skips it (a final
outcome); with --apply, move them back for redelivery (all, or the first N), with a
progress bar on a terminal. Every bus's dead-letter queue redrives in bulk, so the
commands of final outcomes are moved back too: the worker acknowledges them without
calling the gateway, and the reprocessed ones reuse their gateway idempotency key, so
nothing is charged twice. payrail.bus.redriven is exported over OTLP when
OTEL_EXPORTER_OTLP_ENDPOINT is set.

Exit status 3 when the redrive stopped after moving some dead letters.`,
		Example: `  opsctl bus dlq redrive                    # dry run: one line per dead letter
  opsctl bus dlq redrive --limit 10 --apply
  opsctl bus dlq redrive --apply -o json`,
		Args: noArgs,
	}
	ap := addApply(cmd, "redrive")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		doApply, err := ap.resolve()
		if err != nil {
			return err
		}
		if limit < 0 {
			return usagef("--limit must not be negative")
		}
		return c.dlqRedrive(limit, doApply, out)
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "redrive at most N dead letters (default: all)")
	addOutput(cmd, &out, false)
	return needsConfig(cmd)
}

// dlqRedrive reports what a redrive does with each dead letter, then
// (doApply) redrives.
func (c *cli) dlqRedrive(limit int, doApply bool, out format) error {
	var opts []bus.SubscriptionOption
	if doApply {
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
	sub, err := openWorkerSubscription(c.ctx, c.Config, opts...)
	if err != nil {
		return err
	}
	defer sub.Close()
	peek := limit
	if peek == 0 {
		peek = maxReport
	}
	unsupported := fmt.Errorf("this bus (%s) does not support redrive through payrail; use the broker's own redrive", c.Config.MessageBusAdapter)
	dls, err := sub.DeadLetters(c.ctx, peek)
	if errors.Is(err, bus.ErrUnsupported) {
		return unsupported
	}
	if err != nil {
		return err
	}
	items, err := c.planRedrive(dls)
	if err != nil {
		return err
	}
	rep := redriveReport{DryRun: !doApply, Items: items, More: limit == 0 && len(dls) == peek}
	for _, it := range items {
		if it.Reprocess {
			rep.Reprocess++
		} else {
			rep.Skip++
		}
	}
	var redriveErr error
	if doApply && len(dls) > 0 {
		rep.Redriven, redriveErr = c.redrive(sub, len(dls), rep.More)
		if errors.Is(redriveErr, bus.ErrUnsupported) {
			return unsupported
		}
	}
	if err := c.printRedrive(out, rep); err != nil {
		return err
	}
	if redriveErr != nil {
		return partial(rep.Redriven, fmt.Errorf("redrive (after %d moved): %w", rep.Redriven, redriveErr))
	}
	return nil
}

// redrive moves want dead letters back, chunk by chunk behind a progress
// bar, and returns how many it moved; all (more than the report listed)
// moves them all in one call, the bus's bulk redrive.
func (c *cli) redrive(sub *bus.Subscription, want int, all bool) (int, error) {
	if all {
		bar := c.progress(-1, "redriving dead letters")
		n, err := sub.Redrive(c.ctx, 0)
		_ = bar.Add(n)
		_ = bar.Finish()
		return n, err
	}
	bar := c.progress(want, "redriving dead letters")
	defer bar.Finish()
	moved := 0
	for moved < want {
		got, err := sub.Redrive(c.ctx, min(redriveChunk, want-moved))
		moved += got
		_ = bar.Add(got)
		if err != nil || got == 0 { // got 0: the queue is empty
			return moved, err
		}
	}
	return moved, nil
}

// printRedrive writes the per-message report and the summary, or the
// report as JSON.
func (c *cli) printRedrive(out format, rep redriveReport) error {
	if out == formatJSON {
		return writeJSON(c.Stdout, rep)
	}
	w := table(c.Stdout)
	fmt.Fprintln(w, "ID\tPAYMENT\tSTATUS\tFAILURE\tACTION")
	for _, it := range rep.Items {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", it.ID, orDash(it.PaymentID), it.Status, orDash(it.FailureCode), it.Action)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	more := ""
	if rep.More {
		more = fmt.Sprintf(" (the first %d listed; there may be more)", maxReport)
	}
	if rep.DryRun {
		fmt.Fprintf(c.Stdout, "-- dry run: %d dead letter(s)%s: %d to redrive, %d to skip; the bus redrives in bulk, so --apply moves them all back and the worker acknowledges the skipped ones without calling the gateway; add --apply to redrive\n",
			len(rep.Items), more, rep.Reprocess, rep.Skip)
		return nil
	}
	fmt.Fprintf(c.Stdout, "redrove %d dead letter(s)%s: the worker reprocesses %d (same gateway idempotency key: nothing is charged twice) and acknowledges %d without calling the gateway\n",
		rep.Redriven, more, rep.Reprocess, rep.Skip)
	return nil
}
