package opsctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/payrail/payrail/payments"
)

// openPaymentStore opens the payment store of PAYMENTS_STORE_URL;
// memory:// is refused, since it lives inside the server process.
func (c *cli) openPaymentStore() (payments.Store, error) {
	u := c.Config.PaymentsStoreURL
	if scheme(u) == "memory" {
		return nil, usagef("PAYMENTS_STORE_URL is memory://: that store lives inside the server process and cannot be inspected from outside; set PAYMENTS_STORE_URL to the shared store (postgres://)")
	}
	s, err := payments.OpenStore(c.ctx, u)
	if err != nil {
		if errors.Is(err, payments.ErrUnknownStoreDriver) {
			return nil, usagef("PAYMENTS_STORE_URL: %v", err)
		}
		return nil, fmt.Errorf("PAYMENTS_STORE_URL: %w", err)
	}
	return s, nil
}

// openPaymentStoreToList checks a list's --limit, then opens the payment
// store.
func (c *cli) openPaymentStoreToList(limit int) (payments.Store, error) {
	if limit <= 0 {
		return nil, usagef("--limit must be positive")
	}
	return c.openPaymentStore()
}

// deliveryView is one delivery of an event to one endpoint, times in UTC.
type deliveryView struct {
	Endpoint     string     `json:"endpoint"`
	Status       string     `json:"status"`
	Attempts     int        `json:"attempts"`
	NextAttempt  *time.Time `json:"next_attempt,omitempty"`
	FirstAttempt *time.Time `json:"first_attempt,omitempty"`
	LastAttempt  *time.Time `json:"last_attempt,omitempty"`
	LastResult   string     `json:"last_result,omitempty"`
	Redelivered  *time.Time `json:"redelivered,omitempty"`
}

func utc(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func viewDelivery(d payments.Delivery) deliveryView {
	return deliveryView{Endpoint: d.Endpoint, Status: string(d.Status), Attempts: d.Attempts,
		NextAttempt: utc(d.NextAttempt), FirstAttempt: utc(d.FirstAttempt), LastAttempt: utc(d.LastAttempt), LastResult: d.LastResult,
		Redelivered: utc(d.Redelivered)}
}

// eventView is an event as events list and inspect show it.
type eventView struct {
	ID             string `json:"id"`
	Type           string `json:"type"`
	PaymentID      string `json:"payment_id"`
	Merchant       string `json:"merchant"`
	PaymentVersion int64  `json:"payment_version"`
	// PaymentStatus is the payment's status right after the change.
	PaymentStatus string    `json:"payment_status"`
	CreatedAt     time.Time `json:"created_at"`
	// Resolved: the merchant's endpoints were looked up (at the first
	// delivery attempt) and Deliveries filled in.
	Resolved   bool           `json:"resolved"`
	Deliveries []deliveryView `json:"deliveries"`
	// Payload is what is POSTed to the endpoints (inspect only).
	Payload json.RawMessage `json:"payload,omitempty"`
}

func viewEvent(p *payments.Payment, ev *payments.Event) eventView {
	v := eventView{ID: ev.ID(p), Type: string(ev.Type), PaymentID: p.ID, Merchant: p.Merchant, PaymentVersion: ev.PaymentVersion,
		PaymentStatus: string(ev.StateOf(p).Status), CreatedAt: ev.CreatedAt.UTC(), Resolved: ev.Resolved, Deliveries: []deliveryView{}}
	for _, d := range ev.Deliveries {
		v.Deliveries = append(v.Deliveries, viewDelivery(d))
	}
	return v
}

// pendingView is one row of events pending: an event's delivery to one
// endpoint that is still to be made ("-" endpoint: not resolved yet).
type pendingView struct {
	PaymentID string    `json:"payment_id"`
	Merchant  string    `json:"merchant"`
	EventID   string    `json:"event_id"`
	Type      string    `json:"type"`
	CreatedAt time.Time `json:"created_at"`
	deliveryView
}

func tsOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return ts(*t)
}

func (c *cli) eventsPendingCommand() *cobra.Command {
	var (
		limit int
		out   format
	)
	cmd := &cobra.Command{
		Use:   "pending",
		Short: "List the webhook deliveries still to be made, oldest first",
		Long: `List, from PAYMENTS_STORE_URL, the payments whose events still have deliveries to make,
earliest due first: one line per event and endpoint, with the attempts made, when the next
one is due and what the last one got ("HTTP 500 Internal Server Error", a timeout...).
An event whose endpoints were not looked up yet (no worker delivering webhooks reached
it) shows endpoint "-". Dead-lettered deliveries are not pending: see them with
events list, and send them again with events redeliver. -o json prints one delivery
per line.`,
		Example: `  opsctl events pending
  opsctl events pending --limit 20 -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := c.openPaymentStoreToList(limit)
			if err != nil {
				return err
			}
			defer s.Close()
			pays, err := payments.ListPendingEvents(c.ctx, s, limit)
			if err != nil {
				return err
			}
			var rows []pendingView
			for _, p := range pays {
				for i := range p.Events {
					ev := &p.Events[i]
					row := pendingView{PaymentID: p.ID, Merchant: p.Merchant, EventID: ev.ID(p), Type: string(ev.Type), CreatedAt: ev.CreatedAt.UTC()}
					if !ev.Resolved {
						row.deliveryView = deliveryView{Endpoint: "-", Status: "unresolved", NextAttempt: utc(ev.CreatedAt)}
						rows = append(rows, row)
						continue
					}
					for _, d := range ev.Deliveries {
						if d.Status == payments.DeliveryPending {
							row.deliveryView = viewDelivery(d)
							rows = append(rows, row)
						}
					}
				}
			}
			if err := c.printDeliveryRows(out, rows, "NEXT_ATTEMPT", func(d deliveryView) *time.Time { return d.NextAttempt }); err != nil || out == formatJSON {
				return err
			}
			fmt.Fprintf(c.Stdout, "-- %d pending deliver(ies) of %d payment(s)", len(rows), len(pays))
			if len(pays) == limit {
				fmt.Fprint(c.Stdout, " (limit reached: --limit to see more)")
			}
			fmt.Fprintln(c.Stdout)
			return nil
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 100, "read at most N payments")
	addOutput(cmd, &out, false)
	return needsConfig(cmd)
}

// payment reads a payment; not found is exit status 1 with a clear message.
func (c *cli) payment(s payments.Store, merchant, id string) (*payments.Payment, error) {
	p, err := s.Get(c.ctx, merchant, id)
	if errors.Is(err, payments.ErrStoreNotFound) {
		return nil, fmt.Errorf("merchant %s has no payment %s", merchant, id)
	}
	if err != nil {
		return nil, fmt.Errorf("reading payment %s: %w", id, err)
	}
	return p, nil
}

// event returns the payment's event id.
func event(p *payments.Payment, id string) (*payments.Event, error) {
	i := slices.IndexFunc(p.Events, func(e payments.Event) bool { return e.ID(p) == id })
	if i < 0 {
		var ids []string
		for _, e := range p.Events {
			ids = append(ids, e.ID(p))
		}
		return nil, fmt.Errorf("payment %s has no event %s (its events: %s)", p.ID, id, orDash(strings.Join(ids, ", ")))
	}
	return &p.Events[i], nil
}

// storedEvent opens the payment store and reads the event args name
// (MERCHANT PAYMENT_ID EVENT_ID); the caller closes the store.
func (c *cli) storedEvent(args []string) (payments.Store, *payments.Payment, *payments.Event, error) {
	s, err := c.openPaymentStore()
	if err != nil {
		return nil, nil, nil, err
	}
	p, err := c.payment(s, args[0], args[1])
	if err == nil {
		var ev *payments.Event
		if ev, err = event(p, args[2]); err == nil {
			return s, p, ev, nil
		}
	}
	_ = s.Close()
	return nil, nil, nil, err
}

// nArgs wants exactly the positional arguments named.
func nArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usagef("%s needs the arguments %s, got %d", cmd.CommandPath(), strings.Join(names, " "), len(args))
		}
		return nil
	}
}

// printDeliveries writes one table row per delivery of ev, prefixed with
// the event's columns (one row with "-" if it has none).
func printDeliveries(w io.Writer, prefix string, ev eventView) {
	if len(ev.Deliveries) == 0 {
		state := "no endpoint subscribed"
		if !ev.Resolved {
			state = "unresolved"
		}
		fmt.Fprintf(w, "%s-\t%s\t0\t-\t-\n", prefix, state)
		return
	}
	for _, d := range ev.Deliveries {
		fmt.Fprintf(w, "%s%s\t%s\t%d\t%s\t%s\n", prefix, d.Endpoint, d.Status, d.Attempts, tsOrDash(d.NextAttempt), orDash(d.LastResult))
	}
}

func (c *cli) eventsListCommand() *cobra.Command {
	var out format
	cmd := &cobra.Command{
		Use:     "list MERCHANT PAYMENT_ID",
		Aliases: []string{"ls"},
		Short:   "List every event of a payment, with its deliveries",
		Long: `List every event of a payment (from PAYMENTS_STORE_URL), in order, with the state of its
delivery to each endpoint: pending (next attempt), delivered or dead (dead-lettered:
the retry period ended, the endpoint answered 410 or was disabled or removed).
-o json prints one event per line.`,
		Example: `  opsctl events list acme pay_2Nq8xK
  opsctl events list acme pay_2Nq8xK -o json`,
		Args: nArgs("MERCHANT", "PAYMENT_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := c.openPaymentStore()
			if err != nil {
				return err
			}
			defer s.Close()
			p, err := c.payment(s, args[0], args[1])
			if err != nil {
				return err
			}
			views := make([]eventView, 0, len(p.Events))
			for i := range p.Events {
				views = append(views, viewEvent(p, &p.Events[i]))
			}
			if out == formatJSON {
				return writeJSONLines(c.Stdout, views)
			}
			w := table(c.Stdout)
			fmt.Fprintln(w, "EVENT\tTYPE\tVERSION\tCREATED\tENDPOINT\tSTATUS\tATTEMPTS\tNEXT_ATTEMPT\tLAST_RESULT")
			for _, v := range views {
				printDeliveries(w, fmt.Sprintf("%s\t%s\t%d\t%s\t", v.ID, v.Type, v.PaymentVersion, ts(v.CreatedAt)), v)
			}
			if err := w.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(c.Stdout, "-- %d event(s) of payment %s (status %s)\n", len(views), p.ID, p.Status)
			return nil
		},
	}
	addOutput(cmd, &out, false)
	return needsConfig(cmd)
}

func (c *cli) eventsInspectCommand() *cobra.Command {
	var out format
	cmd := &cobra.Command{
		Use:   "inspect MERCHANT PAYMENT_ID EVENT_ID",
		Short: "Show one event: its deliveries and the payload sent to the endpoints",
		Long: `Show one event of a payment: its deliveries and the JSON payload POSTed to the endpoints
(the envelope, with the payment as the API showed it right after the change). The
signature headers are computed at each attempt and never shown, nor are the endpoints'
secrets.`,
		Example: `  opsctl events inspect acme pay_2Nq8xK evt_pay_2Nq8xK_3
  opsctl events inspect acme pay_2Nq8xK evt_pay_2Nq8xK_3 -o json | jq .payload`,
		Args: nArgs("MERCHANT", "PAYMENT_ID", "EVENT_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, p, ev, err := c.storedEvent(args)
			if err != nil {
				return err
			}
			defer s.Close()
			wev, err := ev.Webhook(p)
			if err != nil {
				return err
			}
			payload, err := json.Marshal(wev)
			if err != nil {
				return err
			}
			v := viewEvent(p, ev)
			v.Payload = payload
			if out == formatJSON {
				return writeJSON(c.Stdout, v)
			}
			fmt.Fprintf(c.Stdout, "Event:    %s\nType:     %s\nPayment:  %s (merchant %s, version %d, status %s)\nCreated:  %s\n\n",
				v.ID, v.Type, v.PaymentID, v.Merchant, v.PaymentVersion, v.PaymentStatus, ts(v.CreatedAt))
			w := table(c.Stdout)
			fmt.Fprintln(w, "ENDPOINT\tSTATUS\tATTEMPTS\tNEXT_ATTEMPT\tLAST_RESULT")
			printDeliveries(w, "", v)
			if err := w.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(c.Stdout, "\nPayload:")
			enc := json.NewEncoder(c.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(json.RawMessage(payload))
		},
	}
	addOutput(cmd, &out, false)
	return needsConfig(cmd)
}

// redeliverItem is one delivery as events redeliver reports it.
type redeliverItem struct {
	Endpoint string `json:"endpoint"`
	Status   string `json:"status"` // before the redelivery
	Attempts int    `json:"attempts"`
	Action   string `json:"action"` // would redeliver, redelivered, unchanged
}

// redeliverReport is events redeliver's -o json.
type redeliverReport struct {
	DryRun      bool            `json:"dry_run"`
	Merchant    string          `json:"merchant"`
	PaymentID   string          `json:"payment_id"`
	EventID     string          `json:"event_id"`
	Items       []redeliverItem `json:"items"`
	Redelivered int             `json:"redelivered"`
}

func (c *cli) eventsRedeliverCommand() *cobra.Command {
	var (
		endpoint string
		all      bool
		out      format
	)
	cmd := &cobra.Command{
		Use:   "redeliver MERCHANT PAYMENT_ID EVENT_ID",
		Short: "Send an event again: its dead-lettered deliveries, one endpoint's, or all",
		Long: `Schedule an event's delivery again, now, with a fresh retry period: the deliveries that
were dead-lettered (the default), the delivery to one endpoint (--endpoint, whatever its
state), or every delivery, delivered ones included (--all). A worker delivering
webhooks sends it at its next sweep (PAYRAIL_WEBHOOK_SWEEP_INTERVAL). The event keeps
its id: receivers that already processed it discard the copy.

A dry run unless --apply. See the runbook "a merchant's webhook endpoint is failing"
in docs/runbooks.md.`,
		Example: `  opsctl events redeliver acme pay_2Nq8xK evt_pay_2Nq8xK_3            # dry run
  opsctl events redeliver acme pay_2Nq8xK evt_pay_2Nq8xK_3 --apply
  opsctl events redeliver acme pay_2Nq8xK evt_pay_2Nq8xK_3 --endpoint ep_acme --apply`,
		Args: nArgs("MERCHANT", "PAYMENT_ID", "EVENT_ID"),
	}
	ap := addApply(cmd, "redeliver")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		doApply, err := ap.resolve()
		if err != nil {
			return err
		}
		if endpoint != "" && all {
			return usagef("--endpoint and --all contradict each other: --endpoint redelivers to one endpoint, --all to every one")
		}
		s, p, ev, err := c.storedEvent(args)
		if err != nil {
			return err
		}
		defer s.Close()
		rep := redeliverReport{DryRun: !doApply, Merchant: p.Merchant, PaymentID: p.ID, EventID: ev.ID(p), Items: []redeliverItem{}}
		for _, d := range ev.Deliveries {
			it := redeliverItem{Endpoint: d.Endpoint, Status: string(d.Status), Attempts: d.Attempts, Action: "unchanged"}
			if (endpoint != "" && d.Endpoint == endpoint) || (endpoint == "" && (all || d.Status == payments.DeliveryDead)) {
				it.Action = "would redeliver"
				rep.Redelivered++
			}
			rep.Items = append(rep.Items, it)
		}
		if endpoint != "" && rep.Redelivered == 0 {
			return fmt.Errorf("event %s was never sent to endpoint %s (its endpoints: %s)", ev.ID(p), endpoint, orDash(endpointsOf(ev)))
		}
		if doApply && rep.Redelivered > 0 {
			if _, err := payments.RedeliverEvent(c.ctx, s, p.Merchant, p.ID, ev.ID(p), endpoint, all, c.Now()); err != nil {
				return fmt.Errorf("redelivering event %s: %w", ev.ID(p), err)
			}
			for i := range rep.Items {
				if rep.Items[i].Action == "would redeliver" {
					rep.Items[i].Action = "redelivered"
				}
			}
		}
		if !doApply {
			rep.Redelivered = 0
		}
		return c.printRedeliver(out, rep)
	}
	cmd.Flags().StringVar(&endpoint, "endpoint", "", "redeliver to this endpoint only, whatever the state of its delivery")
	cmd.Flags().BoolVar(&all, "all", false, "redeliver to every endpoint, delivered ones included")
	addOutput(cmd, &out, false)
	return needsConfig(cmd)
}

func endpointsOf(ev *payments.Event) string {
	var eps []string
	for _, d := range ev.Deliveries {
		eps = append(eps, d.Endpoint)
	}
	return strings.Join(eps, ", ")
}

func (c *cli) printRedeliver(out format, rep redeliverReport) error {
	if out == formatJSON {
		return writeJSON(c.Stdout, rep)
	}
	w := table(c.Stdout)
	fmt.Fprintln(w, "ENDPOINT\tSTATUS\tATTEMPTS\tACTION")
	for _, it := range rep.Items {
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\n", it.Endpoint, it.Status, it.Attempts, it.Action)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	n := 0
	for _, it := range rep.Items {
		if it.Action != "unchanged" {
			n++
		}
	}
	switch {
	case n == 0:
		fmt.Fprintf(c.Stdout, "-- nothing to redeliver: no delivery of %s is dead-lettered (--endpoint ID or --all to send it again anyway)\n", rep.EventID)
	case rep.DryRun:
		fmt.Fprintf(c.Stdout, "-- dry run: would redeliver %s to %d endpoint(s); add --apply to do it\n", rep.EventID, n)
	default:
		fmt.Fprintf(c.Stdout, "-- redelivered %s to %d endpoint(s): a worker delivering webhooks sends it at its next sweep\n", rep.EventID, n)
	}
	return nil
}

// deadRows returns the dead-lettered deliveries of the store, endpoint's
// only if set, reading payments limit at a time (every one when all).
func (c *cli) deadRows(s payments.Store, endpoint string, limit int, all bool) ([]pendingView, int, error) {
	var rows []pendingView
	after, n := "", 0
	for {
		pays, err := payments.ListDeadEvents(c.ctx, s, after, limit)
		if err != nil {
			return nil, n, err
		}
		for _, p := range pays {
			n++
			for i := range p.Events {
				ev := &p.Events[i]
				for _, d := range ev.Deliveries {
					if d.Status == payments.DeliveryDead && (endpoint == "" || d.Endpoint == endpoint) {
						rows = append(rows, pendingView{PaymentID: p.ID, Merchant: p.Merchant, EventID: ev.ID(p), Type: string(ev.Type),
							CreatedAt: ev.CreatedAt.UTC(), deliveryView: viewDelivery(d)})
					}
				}
			}
		}
		if !all || len(pays) < limit {
			return rows, n, nil
		}
		after = pays[len(pays)-1].ID
	}
}

// printDeliveryRows prints delivery rows as JSON Lines or as a table
// whose time column, named column, is when(row).
func (c *cli) printDeliveryRows(out format, rows []pendingView, column string, when func(deliveryView) *time.Time) error {
	if out == formatJSON {
		return writeJSONLines(c.Stdout, rows)
	}
	w := table(c.Stdout)
	fmt.Fprintln(w, "PAYMENT\tMERCHANT\tEVENT\tTYPE\tENDPOINT\tATTEMPTS\t"+column+"\tLAST_RESULT")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.PaymentID, r.Merchant, r.EventID, r.Type, r.Endpoint,
			r.Attempts, tsOrDash(when(r.deliveryView)), orDash(r.LastResult))
	}
	return w.Flush()
}

// lastAttempt is the time column of dead-lettered deliveries.
func lastAttempt(d deliveryView) *time.Time { return d.LastAttempt }

func (c *cli) eventsDeadCommand() *cobra.Command {
	var (
		endpoint string
		limit    int
		out      format
	)
	cmd := &cobra.Command{
		Use:   "dead",
		Short: "List the dead-lettered webhook deliveries, across payments",
		Long: `List, from PAYMENTS_STORE_URL, the webhook deliveries that were dead-lettered (the retry
period ended, or the endpoint answered 410 or was disabled or removed), one line per event
and endpoint, in payment id order: --endpoint ID shows one endpoint's. Send them again
with events redeliver-dead once the endpoint is fixed. -o json prints one delivery per line.`,
		Example: `  opsctl events dead
  opsctl events dead --endpoint ep_acme -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := c.openPaymentStoreToList(limit)
			if err != nil {
				return err
			}
			defer s.Close()
			rows, n, err := c.deadRows(s, endpoint, limit, false)
			if err != nil {
				return err
			}
			if err := c.printDeliveryRows(out, rows, "LAST_ATTEMPT", lastAttempt); err != nil || out == formatJSON {
				return err
			}
			fmt.Fprintf(c.Stdout, "-- %d dead-lettered deliver(ies) in %d payment(s)", len(rows), n)
			if n == limit {
				fmt.Fprint(c.Stdout, " (limit reached: --limit to see more)")
			}
			fmt.Fprintln(c.Stdout)
			return nil
		},
	}
	cmd.Flags().StringVar(&endpoint, "endpoint", "", "only this endpoint's deliveries")
	cmd.Flags().IntVar(&limit, "limit", 100, "read at most N payments")
	addOutput(cmd, &out, false)
	return needsConfig(cmd)
}

func (c *cli) eventsRedeliverDeadCommand() *cobra.Command {
	var (
		endpoint string
		out      format
	)
	cmd := &cobra.Command{
		Use:   "redeliver-dead",
		Short: "Send every dead-lettered delivery again (one endpoint's with --endpoint)",
		Long: `Schedule every dead-lettered webhook delivery of PAYMENTS_STORE_URL for delivery again,
now, with a fresh retry period: --endpoint ID limits it to one endpoint's, which is what
the runbook "a merchant's webhook endpoint is failing" does once the merchant fixed it.
Events keep their ids: receivers that already processed one discard the copy.

A dry run unless --apply.`,
		Example: `  opsctl events redeliver-dead --endpoint ep_acme            # dry run
  opsctl events redeliver-dead --endpoint ep_acme --apply`,
		Args: noArgs,
	}
	ap := addApply(cmd, "redeliver")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		doApply, err := ap.resolve()
		if err != nil {
			return err
		}
		s, err := c.openPaymentStore()
		if err != nil {
			return err
		}
		defer s.Close()
		rows, _, err := c.deadRows(s, endpoint, 500, true)
		if err != nil {
			return err
		}
		done := 0
		if doApply {
			for _, r := range rows {
				if _, err := payments.RedeliverEvent(c.ctx, s, r.Merchant, r.PaymentID, r.EventID, r.Endpoint, false, c.Now()); err != nil {
					return fmt.Errorf("redelivering event %s to %s (%d of %d done): %w", r.EventID, r.Endpoint, done, len(rows), err)
				}
				done++
			}
		}
		if err := c.printDeliveryRows(out, rows, "LAST_ATTEMPT", lastAttempt); err != nil || out == formatJSON {
			return err
		}
		if doApply {
			fmt.Fprintf(c.Stdout, "-- redelivered %d dead-lettered deliver(ies): a worker delivering webhooks sends them at its next sweep\n", done)
		} else {
			fmt.Fprintf(c.Stdout, "-- dry run: would redeliver %d dead-lettered deliver(ies); add --apply to do it\n", len(rows))
		}
		return nil
	}
	cmd.Flags().StringVar(&endpoint, "endpoint", "", "only this endpoint's deliveries")
	addOutput(cmd, &out, false)
	return needsConfig(cmd)
}
