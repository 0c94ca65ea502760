package jobs

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
)

// TestLiveOriginateLocal originates a Local channel on a real Asterisk through the real
// ami.Client and checks that the OriginateResponse is correlated into the job's result.
// ODOOPBX_TEST_AMI=host:port, ODOOPBX_TEST_AMI_USER / ODOOPBX_TEST_AMI_SECRET for the login,
// ODOOPBX_TEST_AMI_CHANNEL for the channel (default Local/100@test, as in the fixtures).
func TestLiveOriginateLocal(t *testing.T) {
	addr := os.Getenv("ODOOPBX_TEST_AMI")
	if addr == "" {
		t.Skip("ODOOPBX_TEST_AMI is not set: no live Asterisk to originate on")
	}
	user := os.Getenv("ODOOPBX_TEST_AMI_USER")
	if user == "" {
		user = "odoopbx_agent"
	}
	channel := os.Getenv("ODOOPBX_TEST_AMI_CHANNEL")
	if channel == "" {
		channel = "Local/100@test"
	}
	action := map[string]any{
		"Action": "Originate", "ActionID": "odoo-live-1", "Channel": channel,
		"Application": "Wait", "Data": 1, "Timeout": 10000, "ChannelId": "odoo-live-chan-1",
	}
	list, channelID := originateThroughClient(t, addr, user, os.Getenv("ODOOPBX_TEST_AMI_SECRET"), action)
	if channelID != "odoo-live-chan-1" {
		t.Errorf("OnOriginate got %q", channelID)
	}
	t.Logf("OriginateResponse: Response %v, Reason %v, Uniqueid %v", msgField(t, list[1], "Response"), msgField(t, list[1], "Reason"), msgField(t, list[1], "Uniqueid"))
}

// originateThroughClient connects a real ami.Client, runs the Originate through
// asterisk.manager_action and checks the correlation: [response, OriginateResponse], the caller's
// ActionID in both. It returns the two messages and the ChannelId OnOriginate was given.
func originateThroughClient(t *testing.T, addr, user, secret string, action map[string]any) ([]any, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	client := ami.NewClient(ami.ClientConfig{Address: addr, Username: user, Secret: secret, Events: "call,system"})
	runDone := make(chan error, 1)
	go func() { runDone <- client.Run(ctx) }()
	defer func() { cancel(); <-runDone }()
	for client.State() != ami.StateConnected {
		if ctx.Err() != nil || client.State() == ami.StateAuthFailed {
			t.Fatalf("AMI at %s not connected (state %s)", addr, client.State())
		}
		time.Sleep(20 * time.Millisecond)
	}
	var mu sync.Mutex
	var channelID string
	r := mustRegistry(t, Deps{AMI: client, OnOriginate: func(_, ch string) { mu.Lock(); channelID = ch; mu.Unlock() }})
	res, err := call(t, r, "asterisk.manager_action", []any{action}, nil)
	if err != nil {
		var re *ResultError
		if !errors.As(err, &re) || re.Code != CodeAMIError {
			t.Fatalf("originate: %v", err)
		}
		res = re.Result // an OriginateResponse Failure still has to be correlated
	}
	list, ok := asJSON(t, res).([]any)
	if !ok || len(list) != 2 {
		t.Fatalf("result = %#v", asJSON(t, res))
	}
	if msgField(t, list[0], "Response") != "Success" || msgField(t, list[1], "Event") != "OriginateResponse" {
		t.Fatalf("result = %#v", list)
	}
	for _, m := range list {
		if msgField(t, m, "ActionID") != action["ActionID"] {
			t.Errorf("ActionID not restored: %#v", m)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return list, channelID
}
