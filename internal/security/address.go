package security

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ParseRemoteAddress extracts the source IP from an Asterisk security event's RemoteAddress
// (contract §2.8): "IPV4|IPV6 / [transport /] address / port". It reads the family from the front
// and the port from the back, so an absent transport or an unbracketed IPv6 address (whose colons
// are not slashes) cannot shift the fields. An IPv4-mapped IPv6 address comes back as IPv4.
func ParseRemoteAddress(s string) (netip.Addr, error) {
	s = strings.TrimSpace(s)
	parts := strings.Split(s, "/")
	if len(parts) < 3 || len(parts) > 4 {
		return netip.Addr{}, fmt.Errorf("security: remote address %q: want FAMILY/[TRANSPORT/]ADDRESS/PORT", s)
	}
	family := strings.ToUpper(parts[0])
	if family != "IPV4" && family != "IPV6" {
		return netip.Addr{}, fmt.Errorf("security: remote address %q: family %q is not IPV4 or IPV6", s, parts[0])
	}
	port := parts[len(parts)-1]
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return netip.Addr{}, fmt.Errorf("security: remote address %q: port %q is not a number from 0 to 65535", s, port)
	}
	host := parts[len(parts)-2]
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("security: remote address %q: %q is not an IP address", s, host)
	}
	if addr.Zone() != "" {
		// A link-local zone names an interface of this host; the firewall sets hold bare addresses.
		addr = addr.WithZone("")
	}
	return addr.Unmap(), nil
}

// ParsePrefix reads an access-list or command-line address: a bare IP ("192.0.2.7", "2001:db8::1")
// or a CIDR network ("198.51.100.0/24"). Host bits of a network are cleared; IPv4-mapped IPv6 is
// turned into IPv4.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Prefix{}, errors.New("security: empty address")
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("security: %q is not an address or network: %w", s, err)
		}
		a := p.Addr()
		bits := p.Bits()
		if a.Is4In6() && bits >= 96 {
			a, bits = a.Unmap(), bits-96
		}
		return netip.PrefixFrom(a, bits).Masked(), nil
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("security: %q is not an address or network", s)
	}
	a = a.WithZone("").Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// FormatPrefix prints a single-address prefix as the bare address and a network in CIDR form.
func FormatPrefix(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// Family names a prefix's address family the way list_bans reports it.
func Family(p netip.Prefix) string {
	if p.Addr().Is4() {
		return "ipv4"
	}
	return "ipv6"
}
