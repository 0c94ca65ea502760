package security

import (
	"context"
	"errors"
	"net/netip"
	"testing"
)

type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, errors.New("no such host")
}

func TestExemptAddresses(t *testing.T) {
	r := fakeResolver{"odoo.example.com": {netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("2001:db8::10")}}
	got, errs := ExemptAddresses(context.Background(), r, "192.0.2.5", "https://odoo.example.com:8069/")
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	has := func(s string) bool {
		for _, p := range got {
			if p == netip.MustParsePrefix(s) {
				return true
			}
		}
		return false
	}
	for _, want := range []string{"192.0.2.5/32", "198.51.100.10/32", "2001:db8::10/128"} {
		if !has(want) {
			t.Errorf("%s missing from %v", want, got)
		}
	}
	if !has("127.0.0.1/32") {
		t.Errorf("this host's loopback address missing: %v", got)
	}
	p := NewPolicy(testOptions(), got)
	if why := p.NeverBanned(netip.MustParseAddr("2001:db8::10")); why != "exempt" {
		t.Errorf("odoo address: %q", why)
	}
	_, errs = ExemptAddresses(context.Background(), r, "ami.invalid", "https://[2001:db8::1]/")
	if len(errs) != 1 {
		t.Errorf("unresolvable AMI host: %v", errs)
	}
}
