package security

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/odoopbx/odoopbx/internal/config"
)

// Options are the security_* options (contract §6.1, §6.5), from Odoo's agent_options merged with
// the local ones.
type Options struct {
	Enabled bool
	// MaxRetry failures within FindTime ban an address.
	MaxRetry int
	FindTime time.Duration
	// BannedTimeout is the first ban's length; each new ban within RepeatWindow of the previous
	// one's end is RecidiveFactor times longer, up to MaxBannedTimeout.
	BannedTimeout    time.Duration
	RecidiveFactor   float64
	MaxBannedTimeout time.Duration
	// TrustedMaxRetry replaces MaxRetry for addresses that authenticated successfully within
	// AuthenticatedTimeout.
	TrustedMaxRetry      int
	AuthenticatedTimeout time.Duration
	// ChallengeTimeout, when not zero, counts a ChallengeSent not followed by SuccessfulAuth
	// within it as one failure.
	ChallengeTimeout time.Duration
	IgnorePrivate    bool
	Ignore           []netip.Prefix
	// IPv6Prefix is 128 (ban the address) or 64 (ban its /64).
	IPv6Prefix   int
	PortsTCP     []uint16
	PortsUDP     []uint16
	RemoveOnExit bool
}

// Option keys.
const (
	OptEnabled              = "security_enabled"
	OptMaxRetry             = "security_maxretry"
	OptFindTime             = "security_findtime"
	OptBannedTimeout        = "security_banned_timeout"
	OptRecidiveFactor       = "security_recidive_factor"
	OptMaxBannedTimeout     = "security_max_banned_timeout"
	OptTrustedMaxRetry      = "security_trusted_maxretry"
	OptAuthenticatedTimeout = "security_authenticated_timeout"
	OptChallengeTimeout     = "security_challenge_timeout"
	OptIgnorePrivate        = "security_ignore_private"
	OptIgnore               = "security_ignore"
	OptIPv6Prefix           = "security_ipv6_prefix"
	OptPortsTCP             = "security_ports_tcp"
	OptPortsUDP             = "security_ports_udp"
	OptRemoveOnExit         = "security_remove_on_exit"
)

// DefaultOptions are the contract's defaults (§6.1, §6.2), with security off.
func DefaultOptions() Options {
	return Options{
		MaxRetry:             5,
		FindTime:             600 * time.Second,
		BannedTimeout:        3600 * time.Second,
		RecidiveFactor:       2,
		MaxBannedTimeout:     604800 * time.Second,
		TrustedMaxRetry:      20,
		AuthenticatedTimeout: 604800 * time.Second,
		IgnorePrivate:        true,
		IPv6Prefix:           128,
		PortsTCP:             []uint16{5038, 5039, 5060, 5061, 8088, 8089, 48000, 48001},
		PortsUDP:             []uint16{5060, 5061},
	}
}

// ParseOptions reads the security_* keys of opts over the defaults; other keys are ignored. Every
// bad value is reported, and when there is any error the result has Enabled false (contract §6.5:
// the feature stays off and the errors show in agent.status).
func ParseOptions(opts map[string]string) (Options, []error) {
	o := DefaultOptions()
	var errs []error
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys) // stable error order
	for _, key := range keys {
		raw := opts[key]
		var err error
		switch strings.ToLower(strings.TrimSpace(key)) {
		case OptEnabled:
			o.Enabled, err = config.ParseBool(raw)
		case OptIgnorePrivate:
			o.IgnorePrivate, err = config.ParseBool(raw)
		case OptRemoveOnExit:
			o.RemoveOnExit, err = config.ParseBool(raw)
		case OptMaxRetry:
			o.MaxRetry, err = parseCount(raw)
		case OptTrustedMaxRetry:
			o.TrustedMaxRetry, err = parseCount(raw)
		case OptFindTime:
			o.FindTime, err = parseSeconds(raw, false)
		case OptBannedTimeout:
			o.BannedTimeout, err = parseSeconds(raw, false)
		case OptMaxBannedTimeout:
			o.MaxBannedTimeout, err = parseSeconds(raw, false)
		case OptAuthenticatedTimeout:
			o.AuthenticatedTimeout, err = parseSeconds(raw, true)
		case OptChallengeTimeout:
			o.ChallengeTimeout, err = parseSeconds(raw, true)
		case OptRecidiveFactor:
			o.RecidiveFactor, err = parseFactor(raw)
		case OptIgnore:
			o.Ignore, err = parsePrefixList(raw)
		case OptIPv6Prefix:
			o.IPv6Prefix, err = parseIPv6Prefix(raw)
		case OptPortsTCP:
			o.PortsTCP, err = parsePorts(raw)
		case OptPortsUDP:
			o.PortsUDP, err = parsePorts(raw)
		default:
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("security: option %s: %w", key, err))
		}
	}
	if o.MaxBannedTimeout < o.BannedTimeout && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("security: option %s (%s) is shorter than %s (%s)",
			OptMaxBannedTimeout, o.MaxBannedTimeout, OptBannedTimeout, o.BannedTimeout))
	}
	if len(errs) > 0 {
		o.Enabled = false
	}
	return o, errs
}

func parseCount(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 || n > 1000000 {
		return 0, fmt.Errorf("%q is not a whole number from 1 to 1000000", s)
	}
	return n, nil
}

// parseSeconds accepts a number of seconds ("600", "0.5") or a Go duration ("10m").
func parseSeconds(s string, zeroOK bool) (time.Duration, error) {
	d, err := config.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d.D() == 0 && !zeroOK {
		return 0, fmt.Errorf("%q must be more than zero", s)
	}
	if d.D() > 10*365*24*time.Hour {
		return 0, fmt.Errorf("%q is longer than ten years", s)
	}
	return d.D(), nil
}

func parseFactor(s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f < 1 || f > 100 {
		return 0, fmt.Errorf("%q is not a number from 1 to 100", s)
	}
	return f, nil
}

func parseIPv6Prefix(s string) (int, error) {
	switch strings.TrimPrefix(strings.TrimSpace(s), "/") {
	case "", "128":
		return 128, nil
	case "64":
		return 64, nil
	}
	return 0, fmt.Errorf("%q is not 128 or 64", s)
}

// splitList splits on commas and white space, as Odoo's text fields and YAML strings both occur.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == ';'
	})
}

func parsePrefixList(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range splitList(s) {
		p, err := ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or CIDR network", f)
		}
		out = append(out, p)
	}
	return out, nil
}

// parsePorts reads "5060,5061" or ranges "10000-10010" (at most 1024 ports in all).
func parsePorts(s string) ([]uint16, error) {
	seen := map[uint16]bool{}
	var out []uint16
	for _, f := range splitList(s) {
		lo, hi, isRange := strings.Cut(f, "-")
		a, err := strconv.ParseUint(lo, 10, 16)
		if err != nil || a == 0 {
			return nil, fmt.Errorf("%q is not a port from 1 to 65535", f)
		}
		b := a
		if isRange {
			b, err = strconv.ParseUint(hi, 10, 16)
			if err != nil || b < a {
				return nil, fmt.Errorf("%q is not a port range like 10000-10010", f)
			}
		}
		for p := a; p <= b; p++ {
			if !seen[uint16(p)] {
				seen[uint16(p)] = true
				out = append(out, uint16(p))
			}
			if len(out) > 1024 {
				return nil, fmt.Errorf("more than 1024 ports listed")
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}
