package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/payrail/payrail/gateway/mock"
)

// Config sizes and shapes a soak run.
type Config struct {
	// Seed seeds every random choice (faults, orders, kills).
	Seed uint64
	// Payments is the number of client orders; Clients the goroutines
	// sending them; Instances the server+worker processes running at once.
	Payments, Clients, Instances int
	Faults                       Faults
	Timings                      Timings
	// KillEvery kills -9 a random instance this often and starts a fresh
	// one (Durable envs only; 0: never). Every third stop is a SIGTERM
	// (graceful, under load) instead.
	KillEvery time.Duration
	// DisconnectEvery runs the env's Disconnects this often (0: never).
	DisconnectEvery time.Duration
	// LoadDuration, if set, spreads the load phase's orders evenly over at
	// least this long, so that the kills and disconnects above happen
	// while payments are in flight however few the orders are.
	LoadDuration time.Duration
	// SettleTimeout bounds the end phase (faults off, recovery running).
	// When instances are killed, the processor's AttemptWindow is added:
	// a payment whose gateway call a kill interrupted stays fenced that
	// long before recovery resumes it.
	SettleTimeout time.Duration
	// Logf, if set, receives progress lines.
	Logf func(format string, args ...any)
}

func (c *Config) logf(format string, args ...any) {
	if c.Logf != nil {
		c.Logf(format, args...)
	}
}

// Run soaks env and checks the invariants; see the package documentation
// for the phases. It returns the report (check it with Report.Err) and an
// error only when the harness itself failed (an instance did not start,
// the store could not be read).
func Run(ctx context.Context, env *Env, cfg Config) (*Report, error) {
	start := time.Now()
	dice := NewDice(cfg.Seed)
	ledger := NewLedger()
	gw := NewFaultGateway(mock.New(mock.WithSeed(cfg.Seed)), ledger, dice, cfg.Faults, cfg.Timings.SlowLatency)
	p := &pool{}
	startOne := func() error {
		// A process that fails to start (a store connection dropped while
		// it opened) is started again, as its supervisor would.
		var in *Instance
		var err error
		for attempt := 1; ; attempt++ {
			if in, err = StartInstance(ctx, env, gw, dice, cfg.Faults, cfg.Timings); err == nil {
				break
			}
			if attempt == 10 || ctx.Err() != nil {
				return err
			}
			cfg.logf("chaos: starting an instance (attempt %d): %v", attempt, err)
			time.Sleep(200 * time.Millisecond)
		}
		p.mu.Lock()
		p.ins = append(p.ins, in)
		p.mu.Unlock()
		return nil
	}
	for range max(1, cfg.Instances) {
		if err := startOne(); err != nil {
			return nil, err
		}
	}
	cl := newClients(p, cfg.Seed, dice, cfg.Faults.ClientDuplicate)
	rep := &Report{Seed: cfg.Seed}

	// Chaos: kills and restarts, connection drops.
	chaosCtx, stopChaos := context.WithCancel(ctx)
	var chaosWG sync.WaitGroup
	var chaosErr error
	if env.Durable && cfg.KillEvery > 0 {
		chaosWG.Go(func() {
			r := rand.New(rand.NewPCG(cfg.Seed, 7))
			t := time.NewTicker(cfg.KillEvery)
			defer t.Stop()
			for n := 1; ; n++ {
				select {
				case <-chaosCtx.Done():
					return
				case <-t.C:
				}
				p.mu.Lock()
				i := r.IntN(len(p.ins))
				victim := p.ins[i]
				p.ins = append(p.ins[:i], p.ins[i+1:]...)
				p.mu.Unlock()
				if n%3 == 0 {
					dice.Count(FaultSIGTERM)
					if err := victim.Shutdown(5 * time.Second); err != nil {
						cfg.logf("chaos: SIGTERM of an instance: %v", err)
					}
				} else {
					dice.Count(FaultKill)
					victim.Kill()
				}
				if err := startOne(); err != nil {
					chaosErr = fmt.Errorf("chaos: restarting an instance: %w", err)
					return
				}
			}
		})
	}
	if cfg.DisconnectEvery > 0 && len(env.Disconnects) > 0 {
		chaosWG.Go(func() {
			t := time.NewTicker(cfg.DisconnectEvery)
			defer t.Stop()
			for {
				select {
				case <-chaosCtx.Done():
					return
				case <-t.C:
				}
				for _, d := range env.Disconnects {
					if err := d.Drop(chaosCtx); err == nil {
						dice.Count(d.Kind)
					} else if chaosCtx.Err() == nil {
						cfg.logf("chaos: %s: %v", d.Kind, err)
					}
				}
			}
		})
	}

	// Load with faults. Without durable peers, the last fifth of the
	// orders is kept for the SIGTERM-under-load phase.
	loadEnd := cfg.Payments
	if !env.Durable {
		loadEnd = cfg.Payments * 4 / 5
	}
	var pace time.Duration
	if cfg.LoadDuration > 0 && loadEnd > 0 {
		pace = cfg.LoadDuration / time.Duration(loadEnd)
	}
	cl.run(ctx, 0, loadEnd, cfg.Clients, pace)
	cfg.logf("chaos: load phase done after %s: %d answers, %d charges", time.Since(start).Round(time.Millisecond), len(cl.snapshot()), ledger.Len())

	// End phase: stop faults, let recovery settle everything.
	stopChaos()
	chaosWG.Wait()
	if chaosErr != nil {
		return nil, chaosErr
	}
	dice.Stop()
	settle := cfg.SettleTimeout
	if env.Durable && cfg.KillEvery > 0 {
		// An instance killed -9 in the middle of a gateway call leaves its
		// claim on that payment (fencing): the Reconciler resumes it only
		// once the claim has lapsed, up to one attempt window after the
		// last kill.
		p.mu.Lock()
		if len(p.ins) > 0 {
			settle += p.ins[0].proc.AttemptWindow()
		}
		p.mu.Unlock()
	}
	settled := waitSettled(ctx, env, cl, settle)
	cfg.logf("chaos: settle phase: settled=%v after %s", settled, time.Since(start).Round(time.Millisecond))

	if !env.Durable {
		// SIGTERM under load: the remaining orders are being sent while
		// the only instance shuts down gracefully.
		var wg sync.WaitGroup
		wg.Go(func() { cl.run(ctx, loadEnd, cfg.Payments, cfg.Clients, 0) })
		waitAnswers(ctx, cl, loadEnd+(cfg.Payments-loadEnd)/3)
		dice.Count(FaultSIGTERM)
		p.shutdownAll(cfg, "SIGTERM")
		wg.Wait()
	} else {
		p.shutdownAll(cfg, "final shutdown")
	}

	rep.Requests = cl.requests.Load()
	rep.Faults = dice.Counts()
	rep, err := Check(ctx, env.Store, ledger.Charges(), cl.snapshot(), rep)
	rep.Duration = time.Since(start)
	if gave := cl.gaveUp.Load(); gave > 0 {
		cl.mu.Lock()
		cfg.logf("chaos: %d submissions got no definite answer (instance gone or deadline): %s", gave, strings.Join(cl.gaveUpOn, "; "))
		cl.mu.Unlock()
	}
	return rep, err
}

// waitAnswers waits until the clients hold n answers or ctx ends.
func waitAnswers(ctx context.Context, cl *clients, n int) {
	for ctx.Err() == nil {
		cl.mu.Lock()
		got := len(cl.answers)
		cl.mu.Unlock()
		if got >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitSettled polls the store until every accepted payment is final or in
// review, or timeout passes; it reports which.
func waitSettled(ctx context.Context, env *Env, cl *clients, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		r, err := Check(ctx, env.Store, nil, cl.snapshot(), nil)
		if err == nil && len(r.Lost) == 0 {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// shutdownAll ends the pool (no restart follows) and shuts every instance
// down gracefully, logging failures under what.
func (p *pool) shutdownAll(cfg Config, what string) {
	p.mu.Lock()
	ins := p.ins
	p.ins, p.ended = nil, true
	p.mu.Unlock()
	for _, in := range ins {
		if err := in.Shutdown(10 * time.Second); err != nil {
			cfg.logf("chaos: %s: %v", what, err)
		}
	}
}
