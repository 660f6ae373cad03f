// Package chaos is payrail's chaos soak harness: it drives payments through
// the real HTTP API (payments.NewHandler on a real listener, a real HTTP
// client) and the real worker (payments.NewWorker with its recovery sweep
// and a payments.Reconciler) with faults injected, then checks the
// money-path invariants against the provider's ledger of real charges.
//
// # Running it
//
// The CI-scale soaks always run (a few seconds each on 2 cores):
//
//	go test ./internal/testkit/chaos/ -run 'TestSoak|TestCheck' -v
//
// TestSoakMemory uses memory stores and the in-memory bus; TestSoakPeers
// uses the PostgreSQL payment store (payments/postgres), the Redis
// idempotency store (idempotency/redis) and Kafka (bus/kafka against
// franz-go's kfake); TestSoakPeersPubSub the same stores with Pub/Sub
// (bus/pubsub against pstest). Without PostgreSQL or Redis the peers'
// soaks skip locally and fail when CI=true (testkit.StoreRequirePeer);
// the peers' URLs are PAYRAIL_TEST_POSTGRES_URL and PAYRAIL_TEST_REDIS_URL.
//
// The full soak is the same tests at scale:
//
//	PAYRAIL_SOAK_PAYMENTS=100000 go test ./internal/testkit/chaos/ -run TestSoak -v -timeout 60m
//
// Knobs (environment):
//
//	PAYRAIL_SOAK_PAYMENTS  client orders per variant (default: 1500 memory, 600 peers)
//	PAYRAIL_SOAK_SEED      seed of every random choice (default: the clock);
//	                       every run logs its seed, to be replayed with this
//
// A run is reproducible in its choices (which orders, which faults with
// which probabilities, which instance is killed), not in its interleavings:
// goroutine scheduling still differs between runs.
//
// # What a run does
//
// One FaultGateway — gateway/mock behind a fault injector — is the provider
// for every instance, and its Ledger records each charge the provider made
// as new (distinct provider references; replays of an idempotency key are
// not charges). Faults, with seeded probabilities (DefaultFaults): 503s
// before the provider acts (NotProcessed), timeouts and 502s after it
// charged (ambiguous), slow calls, Lookup failures, duplicate publishes of
// commands, deliberate client re-submissions; and, on real peers, kill -9
// and SIGTERM of instances under load, PostgreSQL sessions terminated
// (pg_terminate_backend) and Redis clients killed (CLIENT KILL), both
// restricted to this test's own connections (application_name / client
// name) so that other tests on the same servers are left alone.
//
// An Instance is one process, built from the SDK's pieces around
// kill-switch wrappers of the payment store, the idempotency driver store,
// the bus topic and subscription drivers and the gateway. Kill (kill -9)
// flips the switch: from that instant no call of the instance reaches a
// peer, answers in flight are lost (the provider may have charged: the
// interesting case), the listener and connections close and its goroutines
// are abandoned. A fresh instance then starts on the same peers. Shutdown
// (SIGTERM) is the SDK's graceful path: readiness fails, the HTTP server
// drains in-flight requests, the worker's context is cancelled and
// Worker.Run waits for its in-flight commands, then everything closes.
//
// Clients (16 goroutines) each send their own orders — the order id is the
// Idempotency-Key and metadata order_id — sync or async at random, and
// retry with the same key and body on connection errors, timeouts, 5xx
// (except a failed payment's 503 gateway_unavailable) and 409
// idempotency_key_in_use, honouring Retry-After (capped at 1s), until a
// definite answer; every answer is recorded.
//
// Phases. Memory: 4/5 of the orders under faults; faults off and recovery
// settles (until every accepted payment is final, or SettleTimeout); the
// last fifth is sent while the only instance is SIGTERMed (a memory
// store's process has nothing to come back to, so kill -9 is not
// exercised: it loses everything by definition). Peers: two instances at
// a time, all orders under faults, spread over at least 8s so that every
// fault fires however few they are, with an instance stopped every 2.5s
// (kill -9, every third a SIGTERM) and replaced, connections dropped every
// 2s; then faults off, recovery settles, every instance is shut down
// gracefully. A soak of the peers fails if a kill, a SIGTERM or a drop of
// either store's connections never happened.
//
// # The invariants (Check)
//
//  1. At most one live charge per payment, and at most one charged payment
//     per client order (idempotency key).
//  2. Every payment answered 201 or 202 is final — Final: a terminal
//     status, or authorized or captured, which only the merchant moves on
//     — or in review: StatusRequiresReview ("requires_review") with a
//     non-empty FailureCode. Anything else is lost.
//  3. The store equals the provider: authorized or captured in the store
//     ⇔ a live charge with the payment's reference and the same status;
//     declined, failed or voided ⇔ no live charge; a live charge for a
//     payment the store lacks is a mismatch too.
//
// The Report counts payments, requests, answers by status, faults by kind,
// double charges, lost, in review and mismatches, and the duration; the
// tests log it and fail with Report.Err (matching ErrViolation), which
// names each violating payment and order.
package chaos
