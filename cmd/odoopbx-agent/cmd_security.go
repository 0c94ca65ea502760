package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/odoopbx/odoopbx/internal/config"
	"github.com/odoopbx/odoopbx/internal/control"
	"github.com/odoopbx/odoopbx/internal/security"
	"github.com/odoopbx/odoopbx/internal/security/nft"
)

// bansCmd lists, adds and lifts bans: through the running agent's control socket when it answers,
// else directly on security.json and the kernel's set, which the agent restores from at its next
// start.
func (a *app) bansCmd() *command {
	var asJSON bool
	var banFor string
	return &command{
		name:    "bans",
		summary: "list, add and lift IP bans (security)",
		run: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Sprintf("bans: unknown command %q (list, add, del)", args[0])}
			}
			return a.bansList(ctx, false)
		},
		subs: []*command{
			{
				name:    "list",
				usage:   "[--json]",
				summary: "show the bans with their expiry and reason",
				setup:   func(fs *flag.FlagSet) { fs.BoolVar(&asJSON, "json", false, "print JSON") },
				run: func(ctx context.Context, args []string) error {
					rest, err := trailingFlags(args, map[string]*string{}, map[string]*bool{"json": &asJSON})
					if err != nil || len(rest) > 0 {
						return usageError{"bans list: takes no arguments besides --json"}
					}
					return a.bansList(ctx, asJSON)
				},
			},
			{
				name:    "add",
				usage:   "ADDR [--for DURATION]",
				summary: "ban an address (or an IPv6 /64 when security_ipv6_prefix is 64)",
				setup: func(fs *flag.FlagSet) {
					fs.StringVar(&banFor, "for", "", "ban length: 90m, 2h or seconds (default security_banned_timeout)")
				},
				run: func(ctx context.Context, args []string) error {
					rest, err := trailingFlags(args, map[string]*string{"for": &banFor}, map[string]*bool{})
					if err != nil {
						return usageError{"bans add: " + err.Error()}
					}
					if len(rest) != 1 {
						return usageError{"bans add: give one address"}
					}
					p, err := security.ParsePrefix(rest[0])
					if err != nil {
						return usageError{err.Error()}
					}
					ttl, err := security.ParseBanDuration(banFor)
					if err != nil {
						return usageError{err.Error()}
					}
					return a.bansAdd(ctx, p, ttl, banFor)
				},
			},
			{
				name:    "del",
				usage:   "ADDR...",
				summary: "lift bans",
				run: func(ctx context.Context, args []string) error {
					if len(args) == 0 {
						return usageError{"bans del: give at least one address"}
					}
					for _, s := range args {
						if _, err := security.ParsePrefix(s); err != nil {
							return usageError{err.Error()}
						}
					}
					return a.bansDel(ctx, args)
				},
			},
		},
	}
}

// securityCmd holds maintenance of the firewall table.
func (a *app) securityCmd() *command {
	var purge bool
	return &command{
		name:    "security",
		summary: "manage the agent's nftables table",
		subs: []*command{
			{
				name:    "uninstall",
				usage:   "[--purge]",
				summary: "delete table inet odoopbx (the agent must be stopped); --purge also deletes security.json",
				setup: func(fs *flag.FlagSet) {
					fs.BoolVar(&purge, "purge", false, "also delete the saved bans (security.json)")
				},
				run: func(ctx context.Context, args []string) error {
					rest, err := trailingFlags(args, map[string]*string{}, map[string]*bool{"purge": &purge})
					if err != nil || len(rest) > 0 {
						return usageError{"security uninstall: takes no arguments besides --purge"}
					}
					return a.securityUninstall(ctx, purge)
				},
			},
		},
	}
}

// trailingFlags reads flags written after the positional arguments ("bans add 192.0.2.1 --for 2h"),
// which the flag package leaves in args.
func trailingFlags(args []string, strs map[string]*string, bools map[string]*bool) ([]string, error) {
	var rest []string
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if !strings.HasPrefix(arg, "-") || arg == "-" {
			rest = append(rest, arg)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		if p, ok := bools[name]; ok {
			b := true
			if hasValue {
				var err error
				if b, err = config.ParseBool(value); err != nil {
					return nil, fmt.Errorf("--%s: %w", name, err)
				}
			}
			*p = b
			continue
		}
		if p, ok := strs[name]; ok {
			if !hasValue {
				if i+1 >= len(args) {
					return nil, fmt.Errorf("--%s needs a value", name)
				}
				i++
				value = args[i]
			}
			*p = value
			continue
		}
		return nil, fmt.Errorf("unknown flag %s", arg)
	}
	return rest, nil
}

// securityLocal is what the offline commands need from the config.
func (a *app) securityLocal() (cfg config.Config, opts security.Options, err error) {
	cfg, err = a.loadConfig()
	if err != nil {
		return cfg, opts, err
	}
	opts, errs := security.ParseOptions(cfg.Options)
	if len(errs) > 0 {
		return cfg, opts, fmt.Errorf("security: %w", errors.Join(errs...))
	}
	return cfg, opts, nil
}

// offline opens security.json and, when reachable, the kernel's table.
func (a *app) offline(cfg config.Config, opts security.Options) (security.Offline, func()) {
	off := security.Offline{StatePath: filepath.Join(cfg.StateDir, security.StateFile), Options: opts}
	b, err := nft.New(nft.Config{IPv6Prefix: opts.IPv6Prefix, Logger: a.logger()})
	if err != nil {
		fmt.Fprintf(a.stderr, "warning: %v; only %s is changed, the agent applies it at its next start\n", err, off.StatePath)
		return off, func() {}
	}
	off.Backend = b
	return off, func() { b.Close() }
}

func (a *app) bansList(ctx context.Context, asJSON bool) error {
	cfg, opts, err := a.securityLocal()
	if err != nil {
		return err
	}
	var list security.BanList
	err = control.Call(ctx, cfg.StateDir, "GET", security.RouteBans, nil, &list)
	source := "agent"
	if errors.Is(err, control.ErrNoDaemon) {
		off := security.Offline{StatePath: filepath.Join(cfg.StateDir, security.StateFile), Options: opts}
		list.Bans, err = off.List()
		source = off.StatePath + " (agent not running)"
	}
	if err != nil {
		return err
	}
	if list.Bans == nil {
		list.Bans = []security.BanView{}
	}
	if asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(list.Bans)
	}
	if len(list.Bans) == 0 {
		fmt.Fprintf(a.stdout, "no bans (%s)\n", source)
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tEXPIRES IN\tEXPIRES AT (UTC)\tOFFENCES\tREASON")
	for _, b := range list.Bans {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", b.Address, (time.Duration(b.ExpiresIn) * time.Second).String(), b.ExpiresAt, b.Offences, b.Reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "%d bans (%s)\n", len(list.Bans), source)
	return nil
}

func (a *app) bansAdd(ctx context.Context, p netip.Prefix, ttl time.Duration, forText string) error {
	cfg, opts, err := a.securityLocal()
	if err != nil {
		return err
	}
	var v security.BanView
	err = control.Call(ctx, cfg.StateDir, "POST", security.RouteBans, security.BanRequest{Address: security.FormatPrefix(p), For: forText}, &v)
	if errors.Is(err, control.ErrNoDaemon) {
		off, done := a.offline(cfg, opts)
		defer done()
		v, err = off.Ban(ctx, p, ttl, "manual (cli)")
		if err != nil && v.Address != "" {
			fmt.Fprintf(a.stderr, "warning: saved in %s, but the firewall was not changed: %v\n", off.StatePath, err)
			err = nil
		}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "banned %s for %s (until %s UTC)\n", v.Address, time.Duration(v.ExpiresIn)*time.Second, v.ExpiresAt)
	return nil
}

func (a *app) bansDel(ctx context.Context, addrs []string) error {
	cfg, opts, err := a.securityLocal()
	if err != nil {
		return err
	}
	q := url.Values{"address": addrs}
	var res security.UnbanResult
	err = control.Call(ctx, cfg.StateDir, "DELETE", security.RouteBans+"?"+q.Encode(), nil, &res)
	if errors.Is(err, control.ErrNoDaemon) {
		res, err = security.UnbanResult{}, nil
		off, done := a.offline(cfg, opts)
		defer done()
		for _, s := range addrs {
			p, _ := security.ParsePrefix(s)
			found, uerr := off.Unban(ctx, p)
			if uerr != nil {
				err = errors.Join(err, uerr)
			}
			if found {
				res.Removed = append(res.Removed, security.FormatPrefix(p))
			} else {
				res.NotFound = append(res.NotFound, security.FormatPrefix(p))
			}
		}
	}
	for _, s := range res.Removed {
		fmt.Fprintf(a.stdout, "unbanned %s\n", s)
	}
	for _, s := range res.NotFound {
		fmt.Fprintf(a.stdout, "%s was not banned\n", s)
	}
	return err
}

func (a *app) securityUninstall(ctx context.Context, purge bool) error {
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	err = control.Call(ctx, cfg.StateDir, "GET", security.RouteBans, nil, nil)
	if !errors.Is(err, control.ErrNoDaemon) {
		return errors.New("security: the agent is running and would recreate the table; stop it first, or set security_enabled: no (which removes the table)")
	}
	b, err := nft.New(nft.Config{Logger: a.logger()})
	if err != nil {
		return err
	}
	defer b.Close()
	if err := b.Remove(ctx); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "removed table inet %s\n", nft.TableName)
	if purge {
		path := filepath.Join(cfg.StateDir, security.StateFile)
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("security: %w", err)
		}
		fmt.Fprintf(a.stdout, "deleted %s\n", path)
	}
	return nil
}
