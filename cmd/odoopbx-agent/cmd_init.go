package main

import (
	"context"
	"errors"
	"flag"
	"strings"

	"github.com/odoopbx/odoopbx/internal/initcmd"
)

// sanList is a repeatable --tls-san flag; each use may also hold a comma-separated list.
type sanList []string

func (s *sanList) String() string { return strings.Join(*s, ",") }

func (s *sanList) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*s = append(*s, part)
		}
	}
	return nil
}

func (a *app) initCmd() *command {
	var (
		opts  initcmd.Options
		sans  sanList
		flags *flag.FlagSet
	)
	return &command{
		name:    "init",
		usage:   "<odoo-url> [flags]",
		summary: "set up AMI, TLS and the one-time handshake with Odoo, and write the config (run as root)",
		setup: func(fs *flag.FlagSet) {
			flags = fs
			fs.StringVar(&opts.DB, "db", "", "Odoo database name")
			fs.IntVar(&opts.ServerID, "server-id", 0, "id of the PBX server record in Odoo")
			fs.StringVar(&opts.SystemName, "system-name", "", "SystemName of this Asterisk, sent to Odoo and written as system_name")
			fs.StringVar(&opts.AgentURL, "agent-url", "", "URL Odoo uses to reach this agent, e.g. https://pbx.example.com:48000")
			fs.StringVar(&opts.AMIUser, "ami-user", initcmd.DefaultAMIUser, "AMI user to create")
			fs.BoolVar(&opts.SkipAMISetup, "skip-ami-setup", false, "leave manager.conf and the AMI user alone")
			fs.StringVar(&opts.AsteriskBinary, "asterisk", initcmd.DefaultAsteriskBinary, "the asterisk binary, for asterisk -rx")
			fs.StringVar(&opts.AsteriskEtcDir, "asterisk-etc", initcmd.DefaultAsteriskEtc, "Asterisk's configuration directory")
			fs.StringVar(&opts.TLSDir, "tls-dir", initcmd.DefaultTLSDir, "directory of the agent's TLS key and certificate")
			fs.Var(&sans, "tls-san", "extra DNS name or IP for the agent's certificate (repeatable, or comma-separated)")
			fs.StringVar(&opts.CAFile, "ca-file", "", "PEM file of a private CA that signs Odoo's certificate")
			fs.BoolVar(&opts.Insecure, "insecure", false, "do not verify Odoo's TLS certificate (not recommended)")
			fs.BoolVar(&opts.AMIWriteCommand, "ami-write-command", false, "give the AMI user the command write class (CLI commands over AMI)")
			fs.BoolVar(&opts.EnableConsole, "enable-console", false, "write console.enabled: yes for the web CLI (planned; not in this release)")
			fs.BoolVar(&opts.EnableConfSync, "enable-conf-sync", false, "allow Odoo to read and write Asterisk's config files (conf.*_enabled)")
			fs.BoolVar(&opts.Force, "force", false, "rewrite an existing AMI user file")
			fs.BoolVar(&opts.DryRun, "dry-run", false, "show what init would write and run, and change nothing")
		},
		run: func(ctx context.Context, args []string) error {
			if len(args) == 0 {
				return usageError{"init: the Odoo URL is required, e.g. odoopbx-agent init https://odoo.example.com --db prod"}
			}
			opts.OdooURL = args[0]
			// The flag package stops at the first argument, so flags written after the URL are parsed here.
			if len(args) > 1 {
				if err := flags.Parse(args[1:]); err != nil {
					if errors.Is(err, flag.ErrHelp) {
						return nil
					}
					return usageError{err.Error()}
				}
				if rest := flags.Args(); len(rest) > 0 {
					return usageError{"init: unexpected argument " + rest[0]}
				}
			}
			opts.ConfigPath = a.configPathOrDefault()
			opts.TLSSANs = sans
			opts.FileOwner = initcmd.DefaultFileOwner
			err := initcmd.Run(ctx, opts, initcmd.Deps{
				Out:           a.stdout,
				AMILogin:      initcmd.AMILogin,
				NewOdooClient: initcmd.JSONRPCClient,
			})
			if errors.Is(err, initcmd.ErrStopped) {
				// The FAIL line already said what to do; exit 1 without repeating it at length.
				return exitError{code: 1, err: err}
			}
			return err
		},
	}
}
