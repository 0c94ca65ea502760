package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/odoopbx/odoopbx/internal/agent"
	"github.com/odoopbx/odoopbx/internal/config"
	"github.com/odoopbx/odoopbx/internal/daemon"
	"github.com/odoopbx/odoopbx/internal/sim"
)

// Options configure a demo run.
type Options struct {
	// StatusListen is the status page's address (default 127.0.0.1:48002).
	StatusListen   string
	CallsPerSecond float64
	Attackers      int
	Seed           int64
	// TimeScale speeds the simulated clock up (default 1: real time; tests use more).
	TimeScale float64
	// Duration stops the demo by itself; 0 runs until ctx ends.
	Duration time.Duration
	// Out receives the per-call lines.
	Out    io.Writer
	Logger *slog.Logger
	// StatusPage builds the status page part for the running agent; nil runs without one.
	StatusPage func(cfg config.Config, ag *daemon.Agent) (agent.Component, string, error)
}

// Run starts the simulator, the agent and the status page, prints a line per finished call, and
// stops cleanly when ctx ends or Duration passes. It needs no root, Asterisk or Odoo.
func Run(ctx context.Context, o Options) error {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.StatusListen == "" {
		o.StatusListen = "127.0.0.1:48002"
	}
	if o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}
	stateDir, err := os.MkdirTemp("", "odoopbx-demo-")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer os.RemoveAll(stateDir)

	secret := randomHex(16)
	pbx, err := sim.New(sim.Config{
		Listen:         "127.0.0.1:0",
		Users:          map[string]string{"odoopbx_agent": secret},
		CallsPerSecond: o.CallsPerSecond,
		Attackers:      o.Attackers,
		Seed:           o.Seed,
		TimeScale:      o.TimeScale,
		Logger:         o.Logger,
	})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if err := pbx.Start(ctx); err != nil {
		return fmt.Errorf("demo: simulator: %w", err)
	}
	defer pbx.Stop(context.Background())

	cfg := config.Default()
	cfg.SystemName = "demo"
	cfg.StateDir = stateDir
	cfg.Spool.Dir = filepath.Join(stateDir, "spool")
	host, port := splitAddr(pbx.Addr())
	cfg.AMI.Host, cfg.AMI.Port = host, port
	cfg.AMI.Secret = config.Secret(secret)
	cfg.API.Listen = "127.0.0.1:0"
	cfg.API.TLS = false // plain HTTP is allowed on loopback only
	cfg.API.Token = config.Secret(randomHex(16))
	cfg.Metrics.Listen = o.StatusListen
	cfg.Options["security_enabled"] = "yes"

	sink := NewSink()
	ag, err := daemon.New(daemon.Options{Config: cfg, Logger: o.Logger, Odoo: sink, NoFirewall: true})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	statusURL := ""
	if o.StatusPage != nil {
		part, url, err := o.StatusPage(cfg, ag)
		if err != nil {
			return fmt.Errorf("demo: status page: %w", err)
		}
		ag.Add(part)
		statusURL = url
	}
	pbx.OnCall(func(c sim.CallSummary) {
		fmt.Fprintf(o.Out, "%s  %-10s %-14s -> %-14s %-9s %5.0fs  %d channels, %d deliveries to Odoo\n",
			c.End.Format("15:04:05"), c.Kind, c.From, c.To, c.Disposition, c.Billsec.Seconds(), c.Channels, sink.CallDeliveries(c.Linkedid))
	})

	fmt.Fprintf(o.Out, "OdooPBX demo: simulated Asterisk on %s, %.1g calls/s, %d attackers\n", pbx.Addr(), o.CallsPerSecond, o.Attackers)
	if statusURL != "" {
		fmt.Fprintf(o.Out, "Status page: %s\n", statusURL)
	}
	fmt.Fprintln(o.Out, "Events go to an in-process Odoo stand-in. Press Ctrl-C to stop.")
	err = ag.Run(ctx)
	fmt.Fprintf(o.Out, "Stopped: %d simulated calls, %d deliveries to the Odoo stand-in.\n", pbx.Stats().CallsFinished, sink.Total())
	return err
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func splitAddr(addr string) (string, int) {
	var host string
	var port int
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			host = addr[:i]
			fmt.Sscanf(addr[i+1:], "%d", &port)
			break
		}
	}
	return host, port
}
