package webhook

import "errors"

// Errors of the receiving side. [Verifier.Verify] wraps them with detail;
// match them with errors.Is.
var (
	// ErrMissingHeader: webhook-id, webhook-timestamp or webhook-signature
	// is absent or empty.
	ErrMissingHeader = errors.New("webhook: missing header")
	// ErrMalformedHeader: a webhook header does not have the form the
	// specification requires (a timestamp that is not Unix seconds, an id
	// with spaces or control characters, an over-long header).
	ErrMalformedHeader = errors.New("webhook: malformed header")
	// ErrInvalidSignature: no signature of webhook-signature matches the
	// content under any of the verifier's secrets.
	ErrInvalidSignature = errors.New("webhook: invalid signature")
	// ErrTimestampOutOfTolerance: webhook-timestamp is further from the
	// receiver's clock, in the past or in the future, than the tolerance.
	ErrTimestampOutOfTolerance = errors.New("webhook: timestamp out of tolerance")
	// ErrReplayed: a correctly signed delivery whose webhook-id the
	// verifier's SeenStore has already accepted within the tolerance window.
	ErrReplayed = errors.New("webhook: replayed delivery")
	// ErrBodyTooLarge: the body exceeds the verifier's size cap.
	ErrBodyTooLarge = errors.New("webhook: body too large")
	// ErrInvalidEvent: the body is correctly signed but is not a payrail
	// event envelope (Verifier.Middleware and ParseEvent).
	ErrInvalidEvent = errors.New("webhook: invalid event")
	// ErrSeenStoreFull: the in-memory SeenStore holds its maximum number of
	// unexpired ids and cannot take another.
	ErrSeenStoreFull = errors.New("webhook: seen store full")
)

// Errors of configuration, on both sides.
var (
	// ErrInvalidSecret: a secret is not "whsec_" followed by the base64 of
	// 24 to 64 bytes, or no secret was given. Its messages never contain
	// the secret.
	ErrInvalidSecret = errors.New("webhook: invalid secret")
	// ErrInvalidID: a webhook id to sign is empty, too long, or contains a
	// full stop, white space or control characters.
	ErrInvalidID = errors.New("webhook: invalid webhook id")
)

// Errors of the sending side, found in [Result.Err].
var (
	// ErrInvalidURL: the endpoint's URL is not an absolute https URL (http
	// only with AllowInsecureHTTP), has no host, or carries credentials.
	ErrInvalidURL = errors.New("webhook: invalid endpoint URL")
	// ErrForbiddenAddress: the endpoint's host resolved to an address the
	// client may not reach (loopback, private, link-local, unique-local,
	// multicast, unspecified or otherwise reserved), unless allowed by
	// WithAllowedNetworks.
	ErrForbiddenAddress = errors.New("webhook: forbidden destination address")
	// ErrEndpointDisabled: the endpoint is not enabled.
	ErrEndpointDisabled = errors.New("webhook: endpoint disabled")
	// ErrEventFiltered: the endpoint does not subscribe to the event's type.
	ErrEventFiltered = errors.New("webhook: event type not subscribed by the endpoint")
	// ErrEndpointBusy: the endpoint already has as many deliveries in
	// flight as the client's per-endpoint limit; nothing was sent.
	ErrEndpointBusy = errors.New("webhook: endpoint at its concurrency limit")
	// ErrCircuitOpen: the endpoint's circuit breaker is open after
	// repeated failures; nothing was sent.
	ErrCircuitOpen = errors.New("webhook: endpoint circuit breaker open")
	// ErrUnexpectedStatus: the endpoint answered with a status other than
	// 2xx.
	ErrUnexpectedStatus = errors.New("webhook: endpoint answered with a non-2xx status")
)
