package gateway

// SoftDeclinePolicy is an optional interface of a Router: it says whether a
// soft decline (an *Error of KindDeclined with SoftDecline set, such as
// "try_again_later" or "issuer_not_available") at one gateway of the chain
// Route returned may be retried on the next gateway of that chain.
//
// The payments processor asks only for soft declines and only when a next
// gateway exists; hard declines are never retried elsewhere, and a Router
// that does not implement SoftDeclinePolicy never allows the retry.
type SoftDeclinePolicy interface {
	// AllowSoftDeclineRetry reports whether the payment r, soft-declined
	// with declineCode by the gateway named gateway, may be tried on the
	// next gateway of its chain.
	AllowSoftDeclineRetry(r *RouteRequest, gateway, declineCode string) bool
}
