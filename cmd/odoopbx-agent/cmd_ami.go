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

// failureOf says why a reply message is a failure, or "": an error response (with the CLI's own
// output when a Command failed, since its Message only says "Command output follows") or a failed
// OriginateResponse.
func failureOf(m *ami.Message) string {
	switch {
	case m.IsError():
		msg := m.Get("Message")
		if out := m.Get("content"); out != "" {
			msg = out
		}
		return "Asterisk answered Error: " + msg
	case strings.EqualFold(m.Event(), "OriginateResponse") && strings.EqualFold(m.Get("Response"), "Failure"):
		return fmt.Sprintf("the call was not placed: OriginateResponse Failure, Reason %s (%s)", m.Get("Reason"), originateReason(m.Get("Reason")))
	}
	return ""
}

// originateReason explains Asterisk's OriginateResponse Reason codes (contract §2.10).
func originateReason(code string) string {
	switch code {
	case "0":
		return "no such extension, or the channel could not be reached"
	case "1":
		return "hung up"
	case "3":
		return "no answer before Timeout"
	case "4":
		return "answered"
	case "5":
		return "busy"
	case "8":
		return "congestion"
	}
	return "unknown reason"
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
			// A refused login is final for a one-shot command: retrying only raises more security
			// events on the PBX.
			refused := make(chan struct{})
			go func() {
				for st := range c.Watch(actx) {
					if st == ami.StateAuthFailed {
						close(refused)
						acancel()
						return
					}
				}
			}()
			msgs, err := c.Do(actx, action)
			select {
			case <-refused:
				return fmt.Errorf("%s refused the login of %s: check ami.user, ami.secret and the user's permit/deny in manager.conf", cfg.AMI.Address(), cfg.AMI.User)
			default:
			}
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
				if failure == "" {
					failure = failureOf(m)
				}
			}
			if failure != "" {
				return errors.New(failure)
			}
			return nil
		},
	}
}
