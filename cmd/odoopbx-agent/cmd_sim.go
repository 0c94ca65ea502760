package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/odoopbx/odoopbx/internal/sim"
)

// simCmd runs the PBX simulator: an AMI server with generated traffic, for demos, benchmarks and
// trying the agent without Asterisk.
func (a *app) simCmd() *command {
	var (
		listen    string
		cps       float64
		attackers int
		seed      int64
		user      string
		secret    string
		timeScale float64
		quiet     bool
	)
	return &command{
		name:    "sim",
		summary: "run a simulated Asterisk PBX (AMI server with generated calls)",
		setup: func(fs *flag.FlagSet) {
			fs.StringVar(&listen, "listen", sim.DefaultListen, "AMI listen address")
			fs.Float64Var(&cps, "calls-per-second", 0.5, "generated calls per second (0 for none)")
			fs.IntVar(&attackers, "attackers", 0, "SIP attackers failing authentication from test addresses")
			fs.Int64Var(&seed, "seed", 1, "random seed: the same seed replays the same calls")
			fs.StringVar(&user, "user", "odoo", "AMI username")
			fs.StringVar(&secret, "secret", "odoo-secret", "AMI secret")
			fs.Float64Var(&timeScale, "time-scale", 1, "virtual seconds per real second")
			fs.BoolVar(&quiet, "quiet", false, "do not print finished calls")
		},
		run: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Sprintf("sim: unexpected argument %q", args[0])}
			}
			if user == "" || secret == "" {
				return usageError{"sim: --user and --secret must not be empty"}
			}
			cfg := sim.Config{
				Listen: listen, Users: map[string]string{user: secret}, CallsPerSecond: cps,
				Attackers: attackers, Seed: seed, TimeScale: timeScale, Logger: a.logger(),
			}
			if !quiet {
				cfg.OnCall = func(c sim.CallSummary) {
					fmt.Fprintf(a.stdout, "%s  %-10s %-14s -> %-14s %-9s %5ds%s\n", c.End.Format(time.TimeOnly), c.Kind,
						c.From, c.To, c.Disposition, int(c.Billsec.Seconds()), recordingNote(c.Recording))
				}
			}
			s, err := sim.New(cfg)
			if err != nil {
				return err
			}
			if err := s.Start(ctx); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "simulated Asterisk %s (AMI %s) listening on %s, user %q\n", sim.AsteriskVersion, sim.AMIVersion, s.Addr(), user)
			<-ctx.Done()
			stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return s.Stop(stopCtx)
		},
	}
}

func recordingNote(path string) string {
	if path == "" {
		return ""
	}
	return "  rec " + path
}
