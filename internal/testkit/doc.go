// Package testkit holds payrail's driver conformance suites: the
// specifications every driver of a portable package must pass against its
// real peer, in the spirit of gocloud.dev's drivertest.
//
// # The bus suite
//
// RunBusConformance checks a message bus driver through the portable API of
// package bus (bus.Topic, bus.Subscription, bus.Message): payload round trip,
// competing consumers, fan-out, ack, nack and nack delay, ack deadlines and
// their extension, dead-lettering, dead-letter inspection and redrive,
// per-key ordering, W3C trace context, Close and cancellation, error
// classification of missing entities and a 10k-message throughput smoke
// test. BenchmarkBus measures publish and publish+receive throughput.
//
// A driver plugs in from its own _test.go file by implementing BusHarness
// against its real peer (a local server, an emulator or an in-process
// implementation of the wire protocol; never a mock):
//
//	type harness struct{ /* connection to the peer */ }
//
//	func (h *harness) Capabilities() testkit.BusCapabilities {
//		return testkit.BusCapabilities{FanOut: true, DeadLetter: true, MissingEntityError: true /* ... */}
//	}
//	func (h *harness) MakePair(ctx context.Context, tb testing.TB, cfg testkit.PairConfig) (testkit.BusPair, error) {
//		// create a uniquely named topic and subscription(s) on the peer,
//		// register their deletion with tb.Cleanup, open the topic
//	}
//	func (h *harness) OpenMissingTopic(ctx context.Context) (*bus.Topic, error)               { /* ... */ }
//	func (h *harness) OpenMissingSubscription(ctx context.Context) (*bus.Subscription, error) { /* ... */ }
//
//	func TestConformance(t *testing.T) { testkit.RunBusConformance(t, newHarness(t)) }
//	func BenchmarkConformance(b *testing.B) { testkit.BenchmarkBus(b, newHarness(b)) }
//
// Capabilities are declared, not hidden: a case whose capability the
// harness does not declare is reported with t.Skip naming the capability,
// and every declared capability must pass. The suite also fails when a
// subscription's own driver.Capabilities claim something the harness does
// not declare, so that nothing a driver advertises goes untested.
//
// Subtests run in parallel against one peer (set BusCapabilities.Serial to
// run them one at a time), each with its own fresh topic and subscriptions
// and a deadline (BusCapabilities.CaseTimeout). Timing checks use generous
// tolerances, because the machines running them are shared.
//
// # The idempotency and payment store suites
//
// RunIdempotencyConformance checks an idempotency store (package
// idempotency/driver semantics): begin, complete and replay; fingerprint
// mismatch; in-progress conflicts; lease expiry making a crashed request's
// key retryable with the same resource id while the stale owner's late
// Complete is refused; TTL expiry; 500 concurrent Begins of one key from 4
// independent clients with exactly one winner; large bodies; merchant
// isolation; cancellation; closed stores; the administrative interface; and
// the round trips per request. RunPaymentStoreConformance checks a
// payments.Store (optimistic versions, merchant scoping, ListStale).
//
// # The gateway suite
//
// RunGatewayConformance checks a payment gateway driver through the
// portable *gateway.Gateway: authorize, full and partial capture, void,
// full and partial refund, Lookup, idempotent replays and reused keys,
// declines, JPY and KWD amounts in minor units, invalid amounts, context
// cancellation, Close, and the classification of every fault the harness
// can inject (declined, refused, unreachable, server error, lost answer,
// key reused, key in use, authentication) — the classification that
// decides whether a payment may be retried, cascaded or settled without
// charging twice. A GatewayHarness opens the driver by URL against its real
// peer and declares GatewayCapabilities; every undeclared capability needs
// a reason in Notes (it becomes the skip message), and a harness that
// proves no decline, no refusal, no lost answer or no key conflict fails.
// docs/gateway-drivers.md walks through writing a driver and its harness.
//
// # Test peers
//
// Helpers start the real peers the suites run against and stop them after
// the tests: DynamoDB Local (package dynamodblocal), the fauxqs SNS/SQS
// emulator (package fauxqs), a Service Bus-compatible AMQP 1.0 test peer on
// Qpid Proton (StartServiceBusPeer, sbpeer/; checked by bus/servicebus's
// TestServiceBusPeer) and an OTLP receiver for telemetry tests (package
// otlpsink, its own module because of its gRPC dependency). Postgres and
// Redis are the machine's own services. A test that needs a missing peer skips locally and fails when
// CI=true.
package testkit
