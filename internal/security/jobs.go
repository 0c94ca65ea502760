package security

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/odoopbx/odoopbx/internal/config"
	"github.com/odoopbx/odoopbx/internal/jobs"
)

// JobFuncs returns the security.* job functions and their legacy aliases (contract §4.5).
func (e *Engine) JobFuncs() map[string]jobs.Func {
	m := map[string]jobs.Func{
		"security.list_bans":               e.jobListBans,
		"security.ban":                     e.jobBan,
		"security.unban":                   e.jobUnban,
		"security.set_access_lists":        e.jobSetAccessLists,
		"security.status":                  e.jobStatus,
		"asterisk.get_banned":              e.jobListBans,
		"asterisk.remove_banned_addresses": e.jobUnban,
		"asterisk.update_access_rules":     e.jobSetAccessLists,
	}
	for name, f := range m {
		m[name] = e.guard(f)
	}
	return m
}

// guard answers disabled while security is off and maps engine errors to job error codes.
func (e *Engine) guard(f jobs.Func) jobs.Func {
	return func(ctx context.Context, args []json.RawMessage, kwargs map[string]json.RawMessage) (any, error) {
		if !e.enabled.Load() {
			msg := "security is off (set security_enabled: yes)"
			if _, errs := e.options(); len(errs) > 0 {
				msg = "security is off because of a bad option: " + errors.Join(errs...).Error()
			}
			return nil, jobs.Errorf(jobs.CodeDisabled, "%s", msg)
		}
		res, err := f(ctx, args, kwargs)
		if err != nil {
			var je *jobs.Error
			switch {
			case errors.As(err, &je):
			case errors.Is(err, ErrDisabled):
				err = jobs.Errorf(jobs.CodeDisabled, "%s", err.Error())
			case errors.Is(err, ErrNeverBanned), errors.Is(err, ErrInvalidBan):
				err = jobs.Errorf(jobs.CodeInvalidArgs, "%s", err.Error())
			default:
				err = jobs.Errorf(jobs.CodeInternal, "%s", err.Error())
			}
			return nil, err
		}
		return res, nil
	}
}

func (e *Engine) jobListBans(context.Context, []json.RawMessage, map[string]json.RawMessage) (any, error) {
	return e.ListBans()
}

func (e *Engine) jobStatus(context.Context, []json.RawMessage, map[string]json.RawMessage) (any, error) {
	return e.Status(), nil
}

// jobBan is security.ban(address, timeout=seconds, comment=text).
func (e *Engine) jobBan(ctx context.Context, args []json.RawMessage, kwargs map[string]json.RawMessage) (any, error) {
	if len(args) < 1 {
		return nil, jobs.Errorf(jobs.CodeInvalidArgs, "security.ban needs an address")
	}
	var addr string
	if err := json.Unmarshal(args[0], &addr); err != nil {
		return nil, jobs.Errorf(jobs.CodeInvalidArgs, "security.ban: the address must be a string")
	}
	p, err := ParsePrefix(addr)
	if err != nil {
		return nil, jobs.Errorf(jobs.CodeInvalidArgs, "%s", err.Error())
	}
	var ttl time.Duration
	if raw, ok := kwargs["timeout"]; ok {
		if ttl, err = parseTimeoutArg(raw); err != nil {
			return nil, jobs.Errorf(jobs.CodeInvalidArgs, "security.ban: timeout: %s", err.Error())
		}
	}
	var comment string
	if raw, ok := kwargs["comment"]; ok && string(raw) != "null" && string(raw) != "false" {
		if err := json.Unmarshal(raw, &comment); err != nil {
			return nil, jobs.Errorf(jobs.CodeInvalidArgs, "security.ban: comment must be a string")
		}
	}
	reason := "manual"
	if comment = strings.TrimSpace(comment); comment != "" {
		reason = "manual: " + comment
	}
	v, err := e.Ban(ctx, p, ttl, reason)
	if err != nil {
		return nil, err
	}
	return map[string]any{"banned": v.Address, "expires_in": v.ExpiresIn}, nil
}

// parseTimeoutArg accepts seconds as a number or a numeric string, or a Go duration ("2h").
func parseTimeoutArg(raw json.RawMessage) (time.Duration, error) {
	s := strings.TrimSpace(string(raw))
	if s == "null" || s == "false" || s == "0" {
		return 0, nil
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err == nil {
		if f < 0 {
			return 0, fmt.Errorf("%v is negative", f)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	var str string
	if err := json.Unmarshal(raw, &str); err != nil {
		return 0, fmt.Errorf("%s is not a number of seconds", s)
	}
	d, err := config.ParseDuration(str)
	if err != nil {
		return 0, err
	}
	return d.D(), nil
}

// jobUnban is security.unban(addresses) with a list, or a single address.
func (e *Engine) jobUnban(ctx context.Context, args []json.RawMessage, _ map[string]json.RawMessage) (any, error) {
	var addrs []string
	for _, a := range args {
		var list []string
		if err := json.Unmarshal(a, &list); err == nil {
			addrs = append(addrs, list...)
			continue
		}
		var one string
		if err := json.Unmarshal(a, &one); err != nil {
			return nil, jobs.Errorf(jobs.CodeInvalidArgs, "security.unban wants a list of addresses")
		}
		addrs = append(addrs, one)
	}
	if len(addrs) == 0 {
		return nil, jobs.Errorf(jobs.CodeInvalidArgs, "security.unban needs at least one address")
	}
	prefixes := make([]netip.Prefix, 0, len(addrs))
	for _, a := range addrs {
		p, err := ParsePrefix(a)
		if err != nil {
			return nil, jobs.Errorf(jobs.CodeInvalidArgs, "%s", err.Error())
		}
		prefixes = append(prefixes, p)
	}
	removed, notFound, err := e.Unban(ctx, prefixes)
	if err != nil {
		return nil, err
	}
	if removed == nil {
		removed = []string{}
	}
	if notFound == nil {
		notFound = []string{}
	}
	return map[string]any{"removed": removed, "not_found": notFound}, nil
}

// accessRuleArg is one rule as Odoo sends it: {address, access_type, comment}, or the legacy
// {address, netmask, address_type} (address_type carrying allow/deny when access_type is absent).
type accessRuleArg struct {
	Address     string          `json:"address"`
	AccessType  string          `json:"access_type"`
	Comment     any             `json:"comment"`
	Netmask     json.RawMessage `json:"netmask"`
	AddressType string          `json:"address_type"`
}

// ParseAccessRules reads set_access_lists' argument into allow and deny lists; any bad entry fails
// the whole call, so a replacement is all or nothing.
func ParseAccessRules(raw []json.RawMessage) (allow, deny []AccessRule, err error) {
	var rules []accessRuleArg
	for _, a := range raw {
		var list []accessRuleArg
		if err := json.Unmarshal(a, &list); err == nil {
			rules = append(rules, list...)
			continue
		}
		var one accessRuleArg
		if err := json.Unmarshal(a, &one); err != nil {
			return nil, nil, fmt.Errorf("rules must be a list of {address, access_type, comment}")
		}
		rules = append(rules, one)
	}
	for i, r := range rules {
		kind := strings.ToLower(strings.TrimSpace(r.AccessType))
		if kind == "" {
			kind = strings.ToLower(strings.TrimSpace(r.AddressType))
		}
		if kind != "allow" && kind != "deny" {
			return nil, nil, fmt.Errorf("rule %d (%q): access_type must be allow or deny", i+1, r.Address)
		}
		addr := strings.TrimSpace(r.Address)
		if mask := netmaskOf(r.Netmask); mask != "" && !strings.Contains(addr, "/") {
			bits, err := maskBits(mask, addr)
			if err != nil {
				return nil, nil, fmt.Errorf("rule %d (%q): %w", i+1, r.Address, err)
			}
			addr += "/" + strconv.Itoa(bits)
		}
		p, err := ParsePrefix(addr)
		if err != nil {
			return nil, nil, fmt.Errorf("rule %d: %w", i+1, err)
		}
		comment, _ := r.Comment.(string) // Odoo sends false for an empty field
		rule := AccessRule{Prefix: p, Comment: comment}
		if kind == "allow" {
			allow = append(allow, rule)
		} else {
			deny = append(deny, rule)
		}
	}
	return allow, deny, nil
}

func netmaskOf(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.TrimSpace(s)
	}
	var n int
	if json.Unmarshal(raw, &n) == nil {
		return strconv.Itoa(n)
	}
	return "" // false or null: no netmask
}

// maskBits reads a prefix length ("24") or a dotted IPv4 mask ("255.255.255.0").
func maskBits(mask, addr string) (int, error) {
	if n, err := strconv.Atoi(strings.TrimPrefix(mask, "/")); err == nil {
		limit := 32
		if strings.Contains(addr, ":") {
			limit = 128
		}
		if n < 0 || n > limit {
			return 0, fmt.Errorf("netmask %q is out of range", mask)
		}
		return n, nil
	}
	m, err := netip.ParseAddr(mask)
	if err != nil || !m.Is4() {
		return 0, fmt.Errorf("netmask %q is not a prefix length or a dotted mask", mask)
	}
	b := m.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	ones := 0
	for v&0x80000000 != 0 {
		ones++
		v <<= 1
	}
	if v != 0 {
		return 0, fmt.Errorf("netmask %q is not contiguous", mask)
	}
	return ones, nil
}

func (e *Engine) jobSetAccessLists(ctx context.Context, args []json.RawMessage, _ map[string]json.RawMessage) (any, error) {
	allow, deny, err := ParseAccessRules(args)
	if err != nil {
		return nil, jobs.Errorf(jobs.CodeInvalidArgs, "security.set_access_lists: %s", err.Error())
	}
	if err := e.SetAccessLists(ctx, allow, deny); err != nil {
		return nil, err
	}
	return map[string]int{"allow": len(allow), "deny": len(deny)}, nil
}
