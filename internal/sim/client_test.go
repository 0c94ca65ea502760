package sim

import (
	"context"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
)

// TestRealAMIClientAgainstTheSimulator drives the simulator with the agent's own ami.Client: MD5
// login on both sessions, Ping, an async Originate correlated with its OriginateResponse (which
// only the events session sees), and generated events flowing.
func TestRealAMIClientAgainstTheSimulator(t *testing.T) {
	s := startSim(t, func(c *Config) {
		c.ManualClock = false
		c.TimeScale = 20
		c.CallsPerSecond = 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := ami.NewClient(ami.ClientConfig{Address: s.Addr(), Username: "odoo", Secret: "odoo-secret", Events: "on"})
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = cl.Run(ctx) }()
	defer func() { cancel(); <-runDone }()
	for st := range cl.Watch(ctx) {
		if st == ami.StateConnected {
			break
		}
	}
	if cl.State() != ami.StateConnected {
		t.Fatalf("state %v", cl.State())
	}
	msgs, err := cl.Do(ctx, ami.NewMessage("Action", "Ping"))
	if err != nil || len(msgs) != 1 || msgs[0].Get("Ping") != "Pong" {
		t.Fatalf("ping: %v %v", msgs, err)
	}
	msgs, err = cl.Do(ctx, ami.NewMessage("Action", "Originate", "ActionID", "odoo-c2c-7", "Channel", "PJSIP/102",
		"Context", "from-internal", "Exten", "101", "Priority", "1", "CallerID", `"Odoo" <102>`, "Timeout", "20000",
		"Async", "true", "Variable", "ODOO_CALL_ID=c2c-7"))
	if err != nil {
		t.Fatalf("originate: %v", err)
	}
	if len(msgs) != 2 || msgs[0].Get("Message") != "Originate successfully queued" || msgs[1].Event() != "OriginateResponse" ||
		msgs[1].Get("Reason") != "4" || msgs[1].ActionID() != "odoo-c2c-7" {
		t.Fatalf("originate reply: %v", msgs)
	}
	seen := map[string]bool{}
	for !(seen["Newchannel"] && seen["Hangup"] && seen["Cdr"]) {
		select {
		case m := <-cl.Events():
			seen[m.Event()] = true
		case <-ctx.Done():
			t.Fatalf("events seen: %v", seen)
		}
	}
}
