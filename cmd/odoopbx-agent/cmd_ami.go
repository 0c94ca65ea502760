package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
	"github.com/odoopbx/odoopbx/internal/config"
	"github.com/odoopbx/odoopbx/internal/daemon"
)

func (a *app) amiCmd() *command {
	return &command{
		name:    "ami",
		summary: "talk to Asterisk's AMI directly (tail events, send one action)",
		subs:    []*command{a.amiTailCmd(), a.amiActionCmd()},
	}
}

// amiClient returns a client for the configured AMI that logs through the CLI's logger.
func (a *app) amiClient(cfg config.Config, events string) (*ami.Client, error) {
	if err := cfg.RequireAMI(); err != nil {
		return nil, err
	}
	tlsConf, err := daemon.AMITLS(cfg)
	if err != nil {
		return nil, err
	}
	return ami.NewClient(ami.ClientConfig{
		Address:       cfg.AMI.Address(),
		Username:      cfg.AMI.User,
		Secret:        cfg.AMI.Secret.Reveal(),
		Auth:          cfg.AMI.Auth,
		TLS:           tlsConf,
		Events:        events,
		SingleSession: true,
		PingInterval:  cfg.AMI.PingInterval.D(),
		PingTimeout:   cfg.AMI.PingTimeout.D(),
		Logger:        a.logger(),
	}), nil
}

func (a *app) amiTailCmd() *command {
	var asJSON bool
	var events string
	return &command{
		name:    "tail",
		summary: "stream events from the configured AMI until interrupted",
		setup: func(fs *flag.FlagSet) {
			fs.BoolVar(&asJSON, "json", false, "one JSON object per line; a repeated header becomes an array of strings")
			fs.StringVar(&events, "events", "on", "Events: mask to subscribe with (on, or classes such as call,security)")
		},
		run: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return usageError{"ami tail takes no arguments"}
			}
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			c, err := a.amiClient(cfg, events)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			done := make(chan struct{})
			go func() { defer close(done); c.Run(ctx) }()
			defer func() { cancel(); <-done }()
			for {
				select {
				case <-ctx.Done():
					return nil
				case m := <-c.Events():
					if asJSON {
						b, err := json.Marshal(m)
						if err != nil {
							return err
						}
						fmt.Fprintf(a.stdout, "%s\n", b)
					} else {
						fmt.Fprint(a.stdout, m.String())
					}
				}
			}
		},
	}
}

func (a *app) amiActionCmd() *command {
	var timeout time.Duration
	return &command{
		name:    "action",
		usage:   `'<json object>'`,
		summary: `send one action (e.g. '{"Action":"Ping"}') and print every message of its reply as JSON lines`,
		setup: func(fs *flag.FlagSet) {
			fs.DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for the reply (an Originate waits for its OriginateResponse on top)")
		},
		run: func(ctx context.Context, args []string) error {
			if len(args) != 1 {
				return usageError{`ami action takes one JSON object, e.g. '{"Action":"Ping"}'`}
			}
			action, err := ami.ActionFromJSON([]byte(args[0]))
			if err != nil {
				return err
			}
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			// OriginateResponse reaches only sessions with the call class; every other reply
			// arrives with events off.
			events := "off"
			if strings.EqualFold(action.Get("Action"), "Originate") {
				events = "call"
			}
			c, err := a.amiClient(cfg, events)
			if err != nil {
				return err
			}
			runCtx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { defer close(done); c.Run(runCtx) }()
			go func() { // the call's own events are not this command's business
				for {
					select {
					case <-runCtx.Done():
						return
					case <-c.Events():
					}
				}
			}()
			defer func() { cancel(); <-done }()
			actx, acancel := context.WithTimeout(ctx, timeout)
			defer acancel()
			msgs, err := c.Do(actx, action)
			if errors.Is(err, ami.ErrNotConnected) {
				return fmt.Errorf("%w to %s within %s (see the log above; `odoopbx-agent check` tests the login)", err, cfg.AMI.Address(), timeout)
			}
			if err != nil {
				return err
			}
			var failure string
			for _, m := range msgs {
				b, err := json.Marshal(m)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "%s\n", b)
				if m.IsError() && failure == "" {
					failure = m.Get("Message")
				}
			}
			if failure != "" {
				return fmt.Errorf("Asterisk answered Error: %s", failure)
			}
			return nil
		},
	}
}
