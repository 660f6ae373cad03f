package webhook

import (
	"fmt"
	"net/netip"
	"syscall"
)

// reserved lists the ranges, beyond what netip.Addr's predicates name,
// that are not public unicast destinations.
var reserved = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space (carrier-grade NAT)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and the broadcast address
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2001::/32"),       // Teredo: tunnels to an embedded IPv4 address
	netip.MustParsePrefix("2002::/16"),       // 6to4: tunnels to an embedded IPv4 address
}

// nat64 is the well-known NAT64 prefix: its addresses reach the IPv4
// address in their last 32 bits, which is checked in turn.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// forbidden reports why addr may not be dialled, or "" if it may.
func forbidden(addr netip.Addr) string {
	addr = addr.Unmap()
	if nat64.Contains(addr) {
		b := addr.As16()
		return forbidden(netip.AddrFrom4([4]byte(b[12:])))
	}
	switch {
	case !addr.IsValid():
		return "invalid"
	case addr.IsUnspecified():
		return "unspecified"
	case addr.IsLoopback():
		return "loopback"
	case addr.IsPrivate():
		if addr.Is4() {
			return "private"
		}
		return "unique-local"
	case addr.IsLinkLocalUnicast():
		return "link-local"
	case addr.IsMulticast(), addr.IsInterfaceLocalMulticast(), addr.IsLinkLocalMulticast():
		return "multicast"
	}
	for _, p := range reserved {
		if p.Contains(addr) {
			return "reserved"
		}
	}
	return ""
}

// dialGuard returns a net.Dialer Control function that refuses forbidden
// addresses unless an allowed prefix contains them. Control runs for every
// connection attempt with the address actually dialled, after name
// resolution, so a host name that resolves (or re-resolves) to an internal
// address is caught.
func dialGuard(allowed []netip.Prefix) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("%w: cannot parse %q", ErrForbiddenAddress, address)
		}
		addr := ap.Addr().Unmap()
		why := forbidden(addr)
		if why == "" {
			return nil
		}
		for _, p := range allowed {
			if p.Contains(addr) {
				return nil
			}
		}
		return fmt.Errorf("%w: %s is %s", ErrForbiddenAddress, addr, why)
	}
}
