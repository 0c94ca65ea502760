package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/odoopbx/odoopbx/internal/daemon"
)

func (a *app) runCmd() *command {
	return &command{
		name:    "run",
		summary: "run the agent: AMI to Odoo forwarding, the job API, security (the systemd service runs this)",
		run: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return usageError{"run takes no arguments"}
			}
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			if err := cfg.RequireAMI(); err != nil {
				return err
			}
			if err := cfg.RequireOdoo(); err != nil {
				return err
			}
			log := a.logger()
			ag, err := daemon.New(daemon.Options{
				Config: cfg,
				Reread: a.loadConfig,
				Logger: log,
			})
			if err != nil {
				return err
			}
			if adm, err := daemon.NewAdmin(ag, log); err != nil {
				return err
			} else if adm != nil {
				ag.Add(adm)
			}
			// SIGHUP reloads the local file, the events map, options and access lists.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for {
					select {
					case <-ctx.Done():
						return
					case <-hup:
						res, err := ag.Reload(ctx)
						log.Info("agent: reloaded on SIGHUP", "events", res.Events, "options", res.Options, "errors", res.Errors, "err", err)
					}
				}
			}()
			return ag.Run(ctx)
		},
	}
}
