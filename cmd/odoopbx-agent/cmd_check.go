package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
	"github.com/odoopbx/odoopbx/internal/config"
	"github.com/odoopbx/odoopbx/internal/control"
	"github.com/odoopbx/odoopbx/internal/daemon"
	"github.com/odoopbx/odoopbx/internal/eventmap"
	"github.com/odoopbx/odoopbx/internal/odoo"
	"github.com/odoopbx/odoopbx/internal/security"
	"github.com/odoopbx/odoopbx/internal/tlsutil"
)

func (a *app) checkCmd() *command {
	return &command{
		name:    "check",
		summary: "validate the config and test each connection: one line per check, OK or FAIL with the reason",
		run: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return usageError{"check takes no arguments"}
			}
			failed := 0
			line := func(ok bool, name, format string, v ...any) {
				word := "OK  "
				if !ok {
					word = "FAIL"
					failed++
				}
				fmt.Fprintf(a.stdout, "%s %-10s %s\n", word, name, fmt.Sprintf(format, v...))
			}
			cfg, err := a.loadConfig()
			if err != nil {
				line(false, "config", "%v", err)
				return exitError{code: 1, err: errors.New("check: the config is invalid")}
			}
			line(true, "config", "read from %s", cfg.Source)
			if fi, err := os.Stat(a.configPath); err == nil && fi.Mode().Perm()&0o077 != 0 {
				line(false, "config", "%s is mode %o: it holds secrets, run chmod 600 %s", a.configPath, fi.Mode().Perm(), a.configPath)
			}
			a.checkStateDir(cfg, line)
			a.checkAMI(ctx, cfg, line)
			a.checkOdoo(ctx, cfg, line)
			a.checkTLS(cfg, line)
			a.checkSecurity(cfg, line)
			var st map[string]any
			switch err := control.Call(ctx, cfg.StateDir, "GET", "/status", nil, &st); {
			case errors.Is(err, control.ErrNoDaemon):
				fmt.Fprintf(a.stdout, "--   agent      not running (no control socket in %s)\n", cfg.StateDir)
			case err != nil:
				line(false, "agent", "the running agent did not answer: %v", err)
			default:
				b, _ := json.Marshal(map[string]any{"ami": st["ami"], "odoo": st["odoo"], "spool": st["spool"]})
				line(true, "agent", "running: %s", b)
			}
			if failed > 0 {
				return exitError{code: 1, err: fmt.Errorf("check: %d check(s) failed", failed)}
			}
			return nil
		},
	}
}

type checkLine func(ok bool, name, format string, v ...any)

func (a *app) checkStateDir(cfg config.Config, line checkLine) {
	probe := filepath.Join(cfg.StateDir, ".odoopbx-check")
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		line(false, "state_dir", "%v (the agent keeps its spool, bans and saved map there)", err)
		return
	}
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		line(false, "state_dir", "%s is not writable: %v", cfg.StateDir, err)
		return
	}
	os.Remove(probe)
	line(true, "state_dir", "%s is writable", cfg.StateDir)
}

func (a *app) checkAMI(ctx context.Context, cfg config.Config, line checkLine) {
	if err := cfg.RequireAMI(); err != nil {
		line(false, "ami", "%v", err)
		return
	}
	c, err := a.amiClient(cfg, "off")
	if err != nil {
		line(false, "ami", "%v", err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	watch := c.Watch(ctx)
	for {
		select {
		case st := <-watch:
			switch st {
			case ami.StateConnected:
				msgs, err := c.Do(ctx, ami.NewMessage("Action", "CoreSettings"))
				if err != nil || len(msgs) == 0 || msgs[0].IsError() {
					line(false, "ami", "logged in to %s as %s, but CoreSettings failed: %v %v (grant read=system)", cfg.AMI.Address(), cfg.AMI.User, err, firstMessage(msgs))
					return
				}
				line(true, "ami", "logged in to %s as %s: Asterisk %s, AMI %s", cfg.AMI.Address(), cfg.AMI.User, msgs[0].Get("AsteriskVersion"), c.Version())
				return
			case ami.StateAuthFailed:
				line(false, "ami", "%s refused the login of %s: check ami.secret and the user's permit/deny in manager.conf.d", cfg.AMI.Address(), cfg.AMI.User)
				return
			}
		case <-ctx.Done():
			line(false, "ami", "no AMI session with %s within 5s: is Asterisk running with manager.conf enabled = yes?", cfg.AMI.Address())
			return
		}
	}
}

func firstMessage(msgs []*ami.Message) string {
	if len(msgs) == 0 {
		return ""
	}
	return msgs[0].Get("Message")
}

func (a *app) checkOdoo(ctx context.Context, cfg config.Config, line checkLine) {
	if err := cfg.RequireOdoo(); err != nil {
		line(false, "odoo", "%v", err)
		return
	}
	client, err := odoo.NewJSONRPC(odoo.Options{
		URL: cfg.Odoo.URL, DB: cfg.Odoo.DB, User: cfg.Odoo.User, Password: cfg.Odoo.Password.Reveal(),
		CAFile: cfg.Odoo.CAFile, InsecureSkipVerify: cfg.Odoo.InsecureSkipVerify,
		ConnectTimeout: cfg.Odoo.ConnectTimeout.D(), Timeout: 10 * time.Second, Logger: a.logger(),
	})
	if err != nil {
		line(false, "odoo", "%v", err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	raw, err := client.ExecuteKw(ctx, "asterisk_plus.server", "agent_get_config", nil, nil)
	if err != nil {
		hint := ""
		switch odoo.KindOf(err) {
		case odoo.KindAuth:
			hint = " (check odoo.user and odoo.password; `odoopbx-agent init` writes them)"
		case odoo.KindMissingMethod:
			hint = " (is the asterisk_plus addon installed and up to date?)"
		}
		line(false, "odoo", "%s: %v%s", cfg.Odoo.URL, err, hint)
		return
	}
	var rc eventmap.RemoteConfig
	if err := json.Unmarshal(raw, &rc); err != nil {
		line(false, "odoo", "agent_get_config answered something unexpected: %v", err)
		return
	}
	line(true, "odoo", "%s db %s as %s: server %d, %d events map rows", cfg.Odoo.URL, cfg.Odoo.DB, cfg.Odoo.User, rc.ServerID, len(rc.EventsMap))
	var broken []string
	for _, row := range rc.EventsMap {
		if _, err := eventmap.CompileCondition(row.Name, row.Condition); err != nil {
			broken = append(broken, fmt.Sprintf("row %d (%s): %v", row.ID, row.Name, err))
		}
	}
	if len(broken) > 0 {
		line(false, "map", "%d condition(s) do not compile and their rows are disabled: %s", len(broken), strings.Join(broken, "; "))
	}
}

func (a *app) checkTLS(cfg config.Config, line checkLine) {
	if cfg.API.Token == "" {
		line(true, "api", "off: no api.token (Odoo cannot send jobs until `odoopbx-agent init` sets one)")
		return
	}
	if !cfg.API.TLS {
		line(true, "api", "plain HTTP on %s (loopback only)", cfg.API.Listen)
		return
	}
	cert, key := daemon.TLSFiles(cfg)
	_, fp, err := tlsutil.Load(cert, key)
	if errors.Is(err, os.ErrNotExist) {
		line(true, "tls", "no certificate at %s yet: the agent generates a self-signed one in %s at start", cfg.TLS.Cert, filepath.Dir(cert))
		return
	}
	if err != nil {
		line(false, "tls", "%v", err)
		return
	}
	line(true, "tls", "%s sha256 fingerprint %s (Odoo pins it)", cert, fp)
}

func (a *app) checkSecurity(cfg config.Config, line checkLine) {
	opts, errs := security.ParseOptions(cfg.Options)
	if len(errs) > 0 {
		line(false, "security", "local options invalid, security stays off: %v", errors.Join(errs...))
		return
	}
	if !opts.Enabled {
		fmt.Fprintln(a.stdout, "--   security   off locally (Odoo's agent_options may turn it on)")
		return
	}
	line(true, "security", "on: ban after %d failures in %s for %s", opts.MaxRetry, opts.FindTime, opts.BannedTimeout)
}
