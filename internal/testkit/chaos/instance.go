package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/payrail/payrail/bus"
	busdriver "github.com/payrail/payrail/bus/driver"
	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/idempotency"
	idemdriver "github.com/payrail/payrail/idempotency/driver"
	"github.com/payrail/payrail/payments"
)

// Env opens the pieces of one instance (one "process") on the run's
// peers. Each Open is called once per instance, so that an instance has
// its own connections (pools, clients, consumer-group member) as a process
// does. For in-process peers (memory stores, the in-memory bus) they
// return handles on the same shared state.
type Env struct {
	// Name names the variant in reports ("memory", "postgres-redis-kafka").
	Name string
	// Durable is true when the peers outlive an instance, so that kill -9
	// and restarts are meaningful.
	Durable bool
	// Store is the payment store the checker reads after the run.
	Store       payments.Store
	OpenStore   func(ctx context.Context) (payments.Store, error)
	OpenIdem    func(ctx context.Context) (idemdriver.Store, error)
	OpenTopic   func(ctx context.Context) (busdriver.Topic, error)
	OpenSub     func(ctx context.Context) (busdriver.Subscription, error)
	CloseStores bool // close an instance's store and idempotency handles when it stops
	Disconnects []Disconnect
}

// Disconnect is a store connection drop fault injected periodically on a
// real peer.
type Disconnect struct {
	Kind string // counted under this fault kind
	Drop func(ctx context.Context) error
}

// Instance is one server+worker process built from the SDK's pieces: a
// payments.Processor, its HTTP handler on a real listener and a Worker with
// its recovery sweep and Reconciler, around kill-switch wrappers of every
// store, bus and gateway handle.
type Instance struct {
	URL     string
	sw      *Switch
	srv     *http.Server
	handler *payments.Handler
	proc    *payments.Processor
	worker  *payments.Worker
	cancel  context.CancelFunc
	done    chan error
	closers []func() error
}

// Timings are the processor's timeouts and the recovery intervals, short
// so that a soak settles in seconds.
type Timings struct {
	GatewayTimeout   time.Duration
	Lease            time.Duration
	RecoveryEvery    time.Duration
	RecoveryStale    time.Duration
	ReconcileEvery   time.Duration
	ReconcileStale   time.Duration
	ReconcileBackoff time.Duration
	SlowLatency      time.Duration
}

// DefaultTimings suit a CI-scale soak.
func DefaultTimings() Timings {
	return Timings{GatewayTimeout: time.Second, Lease: 2 * time.Second,
		RecoveryEvery: 250 * time.Millisecond, RecoveryStale: 2 * time.Second,
		ReconcileEvery: 250 * time.Millisecond, ReconcileStale: 4 * time.Second, ReconcileBackoff: 250 * time.Millisecond,
		SlowLatency: 300 * time.Millisecond}
}

// StartInstance builds and starts an instance on env around the shared
// provider gw.
func StartInstance(ctx context.Context, env *Env, gw *FaultGateway, dice *Dice, f Faults, tm Timings) (_ *Instance, err error) {
	in := &Instance{sw: NewSwitch(), done: make(chan error, 1)}
	defer func() {
		if err != nil {
			in.closeAll()
		}
	}()
	st, err := env.OpenStore(ctx)
	if err != nil {
		return nil, fmt.Errorf("chaos: payment store: %w", err)
	}
	if env.CloseStores {
		in.closers = append(in.closers, st.Close)
	}
	ids, err := env.OpenIdem(ctx)
	if err != nil {
		return nil, fmt.Errorf("chaos: idempotency store: %w", err)
	}
	if env.CloseStores {
		in.closers = append(in.closers, ids.Close)
	}
	dt, err := env.OpenTopic(ctx)
	if err != nil {
		return nil, fmt.Errorf("chaos: topic: %w", err)
	}
	topic := bus.NewTopic(NewKillTopic(dt, in.sw, dice, f.DuplicatePublish))
	in.closers = append(in.closers, topic.Close)
	ds, err := env.OpenSub(ctx)
	if err != nil {
		return nil, fmt.Errorf("chaos: subscription: %w", err)
	}
	sub := bus.NewSubscription(NewKillSubscription(ds, in.sw), bus.WithConcurrency(16))
	in.closers = append(in.closers, sub.Close)
	g, err := gateway.New("mock", NewKillGateway(gw, in.sw, dice))
	if err != nil {
		return nil, err
	}
	in.proc, err = payments.New(
		payments.WithStore(NewKillStore(st, in.sw)),
		payments.WithIdempotencyStore(idempotency.New(NewKillIdempotency(ids, in.sw))),
		payments.WithTopic(topic),
		payments.WithGateway(g),
		payments.WithRetryPolicy(payments.RetryPolicy{MaxAttempts: 3, InitialBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}),
		payments.WithGatewayTimeout(tm.GatewayTimeout),
		payments.WithIdempotencyLease(tm.Lease),
		payments.WithLogger(soakLogger()),
	)
	if err != nil {
		return nil, err
	}
	in.closers = append([]func() error{in.proc.Close}, in.closers...)
	rec, err := payments.NewReconciler(in.proc,
		payments.WithReconcileInterval(tm.ReconcileEvery),
		payments.WithReconcileStaleAfter(tm.ReconcileStale),
		payments.WithReconcileBackoff(tm.ReconcileBackoff, 4*tm.ReconcileBackoff))
	if err != nil {
		return nil, err
	}
	// A queue that dies with the instance (the in-memory bus) is drained
	// at shutdown, as the processor's own in-memory bus is.
	in.worker, err = payments.NewWorker(in.proc, payments.WithSubscription(sub), payments.WithDrainOnShutdown(!env.Durable),
		payments.WithRecovery(tm.RecoveryEvery, tm.RecoveryStale), payments.WithReconciler(rec))
	if err != nil {
		return nil, err
	}
	if in.handler, err = payments.NewHandler(in.proc, payments.DevAuthenticator()); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	in.URL = "http://" + ln.Addr().String()
	in.srv = &http.Server{Handler: in.handler, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = in.srv.Serve(ln) }()
	runCtx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	go func() { in.done <- in.worker.Run(runCtx) }()
	return in, nil
}

// soakLogger logs the instances' processors, workers and reconcilers as
// JSON to the file PAYRAIL_SOAK_LOG names (appended), for investigating a
// failed run; by default nothing is logged.
func soakLogger() *slog.Logger {
	name := os.Getenv("PAYRAIL_SOAK_LOG")
	if name == "" {
		return slog.New(slog.DiscardHandler)
	}
	f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewJSONHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (in *Instance) closeAll() {
	for _, c := range in.closers {
		_ = c()
	}
}

// Kill is kill -9: the switch flips (no more store, idempotency or bus
// calls; gateway answers in flight are lost), the listener and every
// connection close, and the instance's goroutines are abandoned: their
// context is cancelled so they unwind, but nothing they do reaches a peer.
// The handles are closed in the background, as the OS would drop the
// process's connections.
func (in *Instance) Kill() {
	in.sw.Kill()
	_ = in.srv.Close()
	in.cancel()
	go in.closeAll()
}

// Shutdown is SIGTERM, the SDK's graceful path in the documented order:
// /readyz fails and the HTTP server stops accepting and waits for
// in-flight requests; Processor.Shutdown refuses new operations and waits
// for those in flight; Worker.Shutdown drains a queue that dies with the
// instance and waits for its in-flight commands; finally the processor and
// handles close. It returns the errors of those steps.
func (in *Instance) Shutdown(timeout time.Duration) error {
	in.handler.SetDraining(true)
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := in.srv.Shutdown(ctx); err != nil {
		_ = in.srv.Close()
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
	}
	if err := in.proc.Shutdown(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := in.worker.Shutdown(ctx); err != nil {
		errs = append(errs, err)
	}
	select {
	case err := <-in.done:
		if err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, fmt.Errorf("worker: %w", err))
		}
	case <-ctx.Done():
		errs = append(errs, errors.New("worker did not stop in time"))
	}
	in.cancel()
	in.closeAll()
	return errors.Join(errs...)
}
