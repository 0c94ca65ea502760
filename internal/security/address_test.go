package security

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseRemoteAddress(t *testing.T) {
	good := map[string]string{
		"IPV4/UDP/192.0.2.4/5060":              "192.0.2.4",
		"IPV4/TCP/127.0.0.1/35980":             "127.0.0.1",
		"IPV4/192.0.2.4/5060":                  "192.0.2.4", // transport omitted
		"ipv4/udp/198.51.100.7/5061":           "198.51.100.7",
		"IPV6/UDP/2001:db8::5/5060":            "2001:db8::5", // unbracketed
		"IPV6/TLS/[2001:db8::5]/5061":          "2001:db8::5",
		"IPV6/2001:db8:0:0:1::9/5060":          "2001:db8::1:0:0:9",
		"IPV6/UDP/::ffff:203.0.113.9/5060":     "203.0.113.9", // IPv4-mapped
		"IPV6/WSS/fe80::1%eth0/8089":           "fe80::1",
		" IPV4/WS/192.0.2.200/8088 ":           "192.0.2.200",
		"IPV6/UDP/2001:db8:ffff::ffff:1/65535": "2001:db8:ffff::ffff:1",
	}
	for in, want := range good {
		got, err := ParseRemoteAddress(in)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if got != netip.MustParseAddr(want) {
			t.Errorf("%q: got %s, want %s", in, got, want)
		}
	}
	bad := []string{
		"", "IPV4", "IPV4/UDP/192.0.2.4", "IPX/UDP/192.0.2.4/5060", "IPV4/UDP/host.example/5060",
		"IPV4/UDP/192.0.2.4/99999", "IPV4/UDP/192.0.2.4/", "192.0.2.4:5060", "IPV4/UDP/x/192.0.2.4/5060",
		"IPV4/UDP/192.0.2.4/-1", "IPV4/UDP/192.0.2.4/+5", "IPV6/UDP/2001:db8::5/port", "<unknown>",
	}
	for _, in := range bad {
		if a, err := ParseRemoteAddress(in); err == nil {
			t.Errorf("%q: parsed as %s, want an error", in, a)
		} else if !strings.HasPrefix(err.Error(), "security: ") {
			t.Errorf("%q: error %q lacks the part prefix", in, err)
		}
	}
}

func TestParsePrefix(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":            "192.0.2.7/32",
		"198.51.100.77/24":     "198.51.100.0/24",
		"2001:db8::1":          "2001:db8::1/128",
		"2001:db8::1/64":       "2001:db8::/64",
		"::ffff:192.0.2.1":     "192.0.2.1/32",
		"::ffff:192.0.2.0/120": "192.0.2.0/24",
		"[2001:db8::2]":        "2001:db8::2/128",
	} {
		got, err := ParsePrefix(in)
		if err != nil || got != netip.MustParsePrefix(want) {
			t.Errorf("%q: got %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "nope", "192.0.2.1/33", "2001:db8::/129"} {
		if _, err := ParsePrefix(in); err == nil {
			t.Errorf("%q: want an error", in)
		}
	}
}

func FuzzParseRemoteAddress(f *testing.F) {
	for _, s := range []string{"IPV4/UDP/192.0.2.4/5060", "IPV6/UDP/2001:db8::5/5060", "IPV4/192.0.2.4/1",
		"IPV6/TCP/[::1]/0", "IPV6/UDP/::ffff:1.2.3.4/5060", "IPV4//1.2.3.4/5", "ipv6/wss/fe80::1%lo/8089"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseRemoteAddress(s)
		if err != nil {
			return
		}
		if !a.IsValid() || a.Is4In6() || a.Zone() != "" {
			t.Fatalf("%q: parsed to unusable address %v", s, a)
		}
		// The address must come from the second-last field, whatever the rest holds.
		fields := strings.Split(strings.TrimSpace(s), "/")
		host := strings.Trim(fields[len(fields)-2], "[]")
		want, perr := netip.ParseAddr(host)
		if perr != nil || want.WithZone("").Unmap() != a {
			t.Fatalf("%q: got %v, but the address field reads %q", s, a, host)
		}
		// Writing it back the way Asterisk does parses to the same address.
		fam := "IPV4"
		if a.Is6() {
			fam = "IPV6"
		}
		again, err := ParseRemoteAddress(fam + "/UDP/" + a.String() + "/5060")
		if err != nil || again != a {
			t.Fatalf("%q: round trip of %v gave %v, %v", s, a, again, err)
		}
	})
}
