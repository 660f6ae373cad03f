// Package webhook signs, delivers and verifies payrail's outgoing webhooks,
// following the Standard Webhooks specification
// (https://www.standardwebhooks.com).
//
// Receivers (merchants) need only the receiving half: a [Verifier] checks
// the webhook-id, webhook-timestamp and webhook-signature headers of a
// delivery against the endpoint's signing secret(s), rejects timestamps
// outside a tolerance window and, with a [SeenStore], deliveries whose id it
// has already accepted. [Verifier.Middleware] does all of it for an
// http.Handler and hands the decoded [Event] to the next handler
// ([EventFromContext]).
//
// Senders (payrail's worker) use a [Signer] to produce the headers and a
// [Client] to POST one [Event] to one [Endpoint]: https only, with a
// server-side request forgery guard on the resolved address, a capped and
// time-limited response read, a per-endpoint concurrency limit and circuit
// breaker, and a classification of every attempt ([Result]). A [Schedule]
// says when to try again.
//
// The package never logs, and a [Secret] never prints: every fmt verb and
// slog show it redacted.
package webhook
