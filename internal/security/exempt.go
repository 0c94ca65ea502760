package security

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
)

// Resolver looks up a host's addresses; *net.Resolver satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// ExemptAddresses collects the addresses that must never be banned (contract §6.1): the AMI host,
// the addresses odoo.url resolves to, and every address of this host's interfaces. A host that
// does not resolve is reported and skipped; the rest are still returned.
func ExemptAddresses(ctx context.Context, r Resolver, amiHost, odooURL string) ([]netip.Prefix, []error) {
	var out []netip.Prefix
	var errs []error
	add := func(a netip.Addr) {
		a = a.Unmap().WithZone("")
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	resolve := func(what, host string) {
		host = strings.Trim(host, "[]")
		if host == "" {
			return
		}
		if a, err := netip.ParseAddr(host); err == nil {
			add(a)
			return
		}
		addrs, err := r.LookupNetIP(ctx, "ip", host)
		if err != nil {
			errs = append(errs, fmt.Errorf("security: cannot resolve %s %q to exempt it from bans: %w", what, host, err))
			return
		}
		for _, a := range addrs {
			add(a)
		}
	}
	resolve("the AMI host", amiHost)
	if odooURL != "" {
		u, err := url.Parse(odooURL)
		if err != nil {
			errs = append(errs, fmt.Errorf("security: odoo.url %q: %w", odooURL, err))
		} else {
			resolve("the Odoo host", u.Hostname())
		}
	}
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		errs = append(errs, fmt.Errorf("security: cannot list this host's addresses: %w", err))
	}
	for _, ia := range ifAddrs {
		if ipn, ok := ia.(*net.IPNet); ok {
			if a, ok := netip.AddrFromSlice(ipn.IP); ok {
				add(a)
			}
		}
	}
	return out, errs
}
