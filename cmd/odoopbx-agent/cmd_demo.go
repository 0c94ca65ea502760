package main

import (
	"context"
	"flag"

	"github.com/odoopbx/odoopbx/internal/demo"
)

func (a *app) demoCmd() *command {
	o := demo.Options{}
	return &command{
		name:    "demo",
		summary: "simulated PBX + agent + status page in one process: no Asterisk, no Odoo, no root",
		setup: func(fs *flag.FlagSet) {
			fs.StringVar(&o.StatusListen, "listen", "127.0.0.1:48002", "status page address")
			fs.Float64Var(&o.CallsPerSecond, "calls-per-second", 0.5, "simulated calls started per second")
			fs.IntVar(&o.Attackers, "attackers", 2, "simulated SIP attackers (public test addresses)")
			fs.Int64Var(&o.Seed, "seed", 1, "seed of the simulated traffic (same seed, same calls)")
			fs.DurationVar(&o.Duration, "duration", 0, "stop after this long (0: run until Ctrl-C)")
		},
		run: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return usageError{"demo takes no arguments"}
			}
			o.Out = a.stdout
			if a.logLevel == "info" {
				a.logLevel = "warn" // the per-call lines are the demo's output; logs only when something is wrong
			}
			o.Logger = a.logger()
			o.StatusPage = newStatusPage
			return demo.Run(ctx, o)
		},
	}
}
