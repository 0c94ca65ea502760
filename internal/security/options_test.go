package security

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseOptionsDefaults(t *testing.T) {
	o, errs := ParseOptions(nil)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	if o.Enabled || o.MaxRetry != 5 || o.FindTime != 600*time.Second || o.BannedTimeout != time.Hour ||
		o.RecidiveFactor != 2 || o.MaxBannedTimeout != 7*24*time.Hour || o.TrustedMaxRetry != 20 ||
		o.AuthenticatedTimeout != 7*24*time.Hour || o.ChallengeTimeout != 0 || !o.IgnorePrivate ||
		o.IPv6Prefix != 128 || o.RemoveOnExit {
		t.Fatalf("defaults differ from contract §6.1: %+v", o)
	}
	if !reflect.DeepEqual(o.PortsTCP, []uint16{5038, 5039, 5060, 5061, 8088, 8089, 48000, 48001}) ||
		!reflect.DeepEqual(o.PortsUDP, []uint16{5060, 5061}) {
		t.Fatalf("default ports: %v %v", o.PortsTCP, o.PortsUDP)
	}
}

func TestParseOptionsValues(t *testing.T) {
	o, errs := ParseOptions(map[string]string{
		"security_enabled":            " Yes ",
		"security_maxretry":           "3",
		"security_findtime":           "5m",
		"security_banned_timeout":     "7200",
		"security_recidive_factor":    "1.5",
		"security_max_banned_timeout": "86400",
		"security_ignore_private":     "off",
		"security_ignore":             "198.51.100.0/24, 2001:db8::1",
		"security_ipv6_prefix":        "64",
		"security_ports_tcp":          "5060,10000-10002",
		"security_ports_udp":          "5062 5060",
		"security_challenge_timeout":  "0.5",
		"fagi_timeout":                "whatever", // not ours
	})
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	if !o.Enabled || o.MaxRetry != 3 || o.FindTime != 5*time.Minute || o.BannedTimeout != 2*time.Hour ||
		o.RecidiveFactor != 1.5 || o.MaxBannedTimeout != 24*time.Hour || o.IgnorePrivate || o.IPv6Prefix != 64 ||
		o.ChallengeTimeout != 500*time.Millisecond {
		t.Fatalf("%+v", o)
	}
	if !reflect.DeepEqual(o.Ignore, []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8::1/128")}) {
		t.Errorf("ignore: %v", o.Ignore)
	}
	if !reflect.DeepEqual(o.PortsTCP, []uint16{5060, 10000, 10001, 10002}) || !reflect.DeepEqual(o.PortsUDP, []uint16{5060, 5062}) {
		t.Errorf("ports: %v %v", o.PortsTCP, o.PortsUDP)
	}
}

// "no" must mean no (upstream defect 6), and every bad value keeps security off with a named error.
func TestParseOptionsBadValuesKeepSecurityOff(t *testing.T) {
	if o, _ := ParseOptions(map[string]string{"security_enabled": "no"}); o.Enabled {
		t.Fatal(`"no" enabled security`)
	}
	bad := map[string]string{
		"security_maxretry":           "five",
		"security_findtime":           "-3",
		"security_banned_timeout":     "0",
		"security_recidive_factor":    "0.5",
		"security_ignore_private":     "maybe",
		"security_ignore":             "10.0.0.0/33",
		"security_ipv6_prefix":        "48",
		"security_ports_tcp":          "5060,70000",
		"security_ports_udp":          "5061-5060",
		"security_trusted_maxretry":   "0",
		"security_remove_on_exit":     "2",
		"security_max_banned_timeout": "soon",
	}
	for key, val := range bad {
		o, errs := ParseOptions(map[string]string{"security_enabled": "yes", key: val})
		if o.Enabled {
			t.Errorf("%s=%q: security left on", key, val)
		}
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), key) {
			t.Errorf("%s=%q: errors %v", key, val, errs)
		}
	}
	_, errs := ParseOptions(map[string]string{"security_banned_timeout": "7200", "security_max_banned_timeout": "3600"})
	if len(errs) != 1 {
		t.Errorf("max shorter than base: %v", errs)
	}
}
