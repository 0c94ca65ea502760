package jobs

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/odoopbx/odoopbx/internal/ami/amitest"
)

// TestManagerActionRealClientReplay runs the click-to-call Originate through the real ami.Client
// against the lead's replaying fake Asterisk (recorded 05d bytes over TCP): the whole path from
// the job function to the wire and back, OriginateResponse correlation included.
func TestManagerActionRealClientReplay(t *testing.T) {
	const fixture = "05d-sip-click-to-call-originate-pjsip-102"
	got, err := os.ReadFile(filepath.Join(fixtureDir, fixture+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	sent, err := os.ReadFile(filepath.Join(fixtureDir, fixture+".sent.txt"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := amitest.Replay(got, sent)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	action := map[string]any{
		"Action": "Originate", "ActionID": "odoo-c2c", "Channel": "PJSIP/102", "Context": "from-internal",
		"Exten": "100", "Priority": 1, "CallerID": `"Odoo" <102>`, "Timeout": 20000,
		"Variable": []string{"ODOO_CALL_ID=c2c-42"}, "ChannelId": "odoo-c2c-chan",
	}
	list, channelID := originateThroughClient(t, srv.Addr(), "odoo", "odoo-secret", action)
	if msgField(t, list[1], "Response") != "Success" || msgField(t, list[1], "Reason") != "4" {
		t.Fatalf("OriginateResponse = %#v", list[1])
	}
	if channelID != "odoo-c2c-chan" {
		t.Errorf("OnOriginate got %q", channelID)
	}
	var wire []string
	for _, a := range srv.Received() {
		if a.Get("Action") == "Originate" {
			wire = append(wire, a.String())
			if a.Get("Async") != "true" || a.Get("Variable") != "ODOO_CALL_ID=c2c-42" || a.ActionID() == "odoo-c2c" {
				t.Errorf("on the wire:\n%s", a)
			}
		}
	}
	if len(wire) != 1 {
		t.Fatalf("%d Originates on the wire", len(wire))
	}
}
