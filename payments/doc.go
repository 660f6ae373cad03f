// Package payments is an embeddable payment processor: it authorizes,
// captures, voids and refunds card payments through pluggable gateways,
// synchronously or asynchronously over a message bus, with idempotent
// requests, a persisted payment state machine and recovery of every
// payment whose outcome was left unknown.
//
// The package has four parts, all built from one Processor:
//
//   - Processor (New) executes operations: Authorize, Capture, Void,
//     Refund, Get and Wait. It is safe for concurrent use.
//   - Handler (NewHandler) is the HTTP API over it, an http.Handler that
//     can be mounted in an existing mux (see WithBasePath).
//   - Worker (NewWorker) completes asynchronous payments by consuming the
//     commands the Processor publishes.
//   - Reconciler (NewReconciler) settles payments whose gateway outcome is
//     unknown, usually run by a Worker (WithReconciler).
//
// Drivers are registered database/sql-style and opened by URL: gateways
// with gateway.Open ("mock://", "stripe://…"), buses with bus.OpenTopic and
// bus.OpenSubscription ("inmemory://…", "kafka://…"), idempotency stores
// with idempotency.Open ("memory://", "redis://…") and payment stores with
// OpenStore ("memory://", "postgres://…"). Import a driver package for its
// side effect to register it. New requires a gateway (WithGateway or
// WithRouter) and never falls back to the mock on its own; the bus, the
// idempotency store and the payment store default to in-memory
// implementations that suit a single process.
//
// Amounts are integers in the currency's minor unit (1999 EUR is
// 19.99 €); raw card numbers are refused wherever a token is expected.
//
// # Sync and async
//
// In ModeSync (the default) an operation calls the gateway before it
// returns, and Authorize returns the payment authorized, captured or
// declined. In ModeAsync, Authorize stores the payment as pending,
// publishes a command to the bus and returns at once; a Worker calls the
// gateway and stores the outcome, and Wait (or polling Get) returns the
// payment once its status is final. A request may ask for a mode
// (AuthorizeRequest.Mode); SetMode switches the default at runtime, to
// absorb pressure.
//
// Without WithTopic, New creates a private in-memory bus that a Worker in
// the same process consumes (NewWorker with no WithSubscription). That
// queue dies with the process, so it accepts an async payment only while
// it can drain within the drain budget (WithDrainBudget, give it the
// shutdown timeout); past it Authorize fails with ErrQueueFull. With a
// durable bus (WithTopic), run Workers anywhere with WithSubscription.
//
// # Idempotency
//
// Authorize requires an idempotency key; Capture, Void and Refund accept
// one. A retry with the same key and the same request returns the first
// result without calling the gateway again; the same key with a different
// request fails with ErrIdempotencyReused, and one whose first request is
// still running with ErrIdempotencyInUse (retry after Error.RetryAfter).
// Keys are scoped by merchant. Every gateway call carries a deterministic
// idempotency key derived from the payment, so that client retries,
// redelivered commands and the Reconciler never make the provider charge
// twice.
//
// # Lifecycle
//
// An embedder builds and stops the parts in this order (the reference
// server, examples/server, does exactly this):
//
//  1. Open the drivers: gateway, idempotency store, payment store and, for
//     a durable bus, the topic (and, for an in-process worker on it, the
//     subscription).
//  2. payments.New with them.
//  3. NewReconciler, then NewWorker with WithReconciler (and
//     WithSubscription for a bus you opened).
//  4. NewHandler, mounted in your mux.
//  5. Serve with an http.Server whose BaseContext is not cancelled by the
//     shutdown signal, and run Worker.Run in a goroutine.
//
// On SIGTERM:
//
//  1. Handler.SetDraining(true): /readyz fails, load balancers stop
//     sending traffic.
//  2. http.Server.Shutdown: the listener closes and requests in flight
//     finish.
//  3. Processor.Shutdown: new operations fail with ErrUnavailable, and the
//     call waits for those in flight and their store writes.
//  4. Worker.Shutdown: on the processor's in-memory bus (or with
//     WithDrainOnShutdown), every accepted async payment is processed
//     first; then the commands in flight finish and Run returns.
//  5. Processor.Close, then what you opened yourself: topic and
//     subscription, payment and idempotency stores, gateways.
//
// Give each step its own deadline. If a step times out, its error says
// what was left; Processor.Unfinished lists the payments that are not
// final (lost with the in-memory payment store, resumed by the next Worker
// with a durable one). Methods of a Processor not created with New return
// ErrNotInitialized, and constructors validate their arguments and return
// errors rather than panic.
//
// # Errors
//
// Operations return *Error, whose Code is stable and maps to an HTTP status
// (Code.HTTPStatus); the Handler renders it as an RFC 9457 problem
// document with that code. Match classes with errors.Is against the
// sentinels (ErrDeclined, ErrValidation, ErrNotFound, ErrInvalidTransition,
// ErrIdempotencyReused, ErrGatewayUnavailable, ErrOutcomeUnknown,
// ErrUnavailable, ErrQueueFull...), which match by Code, and read the
// details with errors.As: DeclineCode, Fields for validation errors,
// RetryAfter for retryable ones, PaymentID. A declined or failed Authorize
// returns the payment as well as the error. A call that could not record
// its outcome never returns a final status with it: it returns the payment
// processing with ErrOutcomeUnknown, and a retry with the same key, or the
// Reconciler, resumes it.
//
// # Telemetry
//
// The Processor, Handler, Worker and Reconciler trace and measure
// themselves with OpenTelemetry; the Handler creates server spans that
// continue the caller's W3C trace context. Build one telemetry.Providers
// value and pass it to WithTelemetry: the Handler, Worker and Reconciler
// built from the Processor, and its default in-memory bus, use it too.
// Give the same value to the gateways (gateway.WithTelemetry) and buses
// (bus.WithTelemetry) you open yourself. Nil fields, and the zero value, use the application's
// globals; the package never sets a global. Tokens, keys and card data are
// never logged or traced.
//
// # Fencing and recovery
//
// Several writers may drive one payment at once: a resumed request, a
// redelivered command, a Reconciler in another process. Payment stores
// update with optimistic concurrency (Payment.Version), so only the first
// writer moves a payment out of processing; and before each gateway
// attempt a writer stores a claim (Payment.AttemptUntil, see
// Processor.AttemptWindow), so that no writer marks a payment "not charged"
// while another's call may still reach the provider. The Worker's recovery
// sweep republishes commands for payments left pending (a lost publish, a
// crash) and, without a Reconciler, processing; the Reconciler settles payments left processing through the
// gateway's Lookup, resumes with the same idempotency key those the
// provider never processed, and moves those it cannot establish within the
// provider's idempotency window to StatusRequiresReview for an operator
// (RecoveryPolicy sets the intervals).
package payments
