package admin

import (
	"context"
	"time"

	"github.com/odoopbx/odoopbx/internal/agent"
)

// sampleStatus is a realistic status: AMI up, Odoo up, three calls, events, a queue with a dead
// letter and two bans (one hostile-looking value to check escaping).
func sampleStatus(now time.Time) Status {
	return Status{
		Version: "0.9.0", SystemName: "pbx-paris-01", Uptime: 3*time.Hour + 12*time.Minute,
		AMI: AMIStatus{State: "connected", Address: "127.0.0.1:5038", AMIVersion: "11.0.0", AsteriskVersion: "22.10.1",
			Since: now.Add(-3 * time.Hour)},
		Odoo: OdooStatus{State: "ok", URL: "https://erp.example.com", DB: "prod", Since: now.Add(-3 * time.Hour)},
		Calls: []Call{
			{Linkedid: "1795627163.0", From: "+12125550142", To: "101 Alice Martin", Direction: "inbound", State: "up", Started: now.Add(-4*time.Minute - 12*time.Second), Channels: 2},
			{Linkedid: "1795627301.7", From: "104", To: "+33155501234", Direction: "outbound", State: "ringing", Started: now.Add(-9 * time.Second), Channels: 2},
			{Linkedid: "1795627322.11", From: "102", To: "106", Direction: "internal", State: "up", Started: now.Add(-47 * time.Second), Channels: 2},
		},
		Events: []Event{
			{Time: now.Add(-1 * time.Second), Name: "Newstate", Summary: "PJSIP/104-0000000c Ringing", Uniqueid: "1795627301.8"},
			{Time: now.Add(-2 * time.Second), Name: "DialBegin", Summary: "PJSIP/104-0000000b → PJSIP/trunk-00000003", Uniqueid: "1795627301.7"},
			{Time: now.Add(-9 * time.Second), Name: "Newchannel", Summary: "PJSIP/104-0000000b from 104 to +33155501234"},
			{Time: now.Add(-31 * time.Second), Name: "ChallengeResponseFailed", Summary: "<script>alert(1)</script> IPV4/UDP/203.0.113.7/5071"},
			{Time: now.Add(-47 * time.Second), Name: "BridgeEnter", Summary: "PJSIP/106-0000000a joined 3f2a…"},
			{Time: now.Add(-62 * time.Second), Name: "Hangup", Summary: "PJSIP/103-00000009 Normal Clearing (16)"},
		},
		Queue: QueueStatus{Depth: 3, InFlight: 1, Dead: 1, Bytes: 18432, Delivered: 12873},
		Bans: []Ban{
			{Address: "203.0.113.7", Reason: "5 failed SIP authentications in 60 s", Source: "ChallengeResponseFailed", Since: now.Add(-20 * time.Minute), Expires: now.Add(40 * time.Minute)},
			{Address: "2001:db8::5", Reason: "banned from Odoo", Source: "odoo", Since: now.Add(-26 * time.Hour)},
		},
		SecurityEnabled: true,
	}
}

func sampleHealth(amiOK bool) func() map[string]agent.Health {
	return func() map[string]agent.Health {
		ami := agent.Health{OK: true, State: "connected", Detail: map[string]any{"reconnects": 1, "events_dropped": 0}}
		if !amiOK {
			ami = agent.Health{OK: false, State: "disconnected", Detail: map[string]any{"last_error": "connection refused"}}
		}
		return map[string]agent.Health{
			"ami":       ami,
			"forwarder": {OK: true, State: "running", Detail: map[string]any{"queue_depth": 3, "dead": 1}},
			"api":       {OK: true, State: "running"},
			"security":  {OK: true, State: "running", Detail: map[string]any{"bans": 2}},
		}
	}
}

func sampleSource() StatusSource {
	return StatusFunc(func(ctx context.Context) Status { return sampleStatus(time.Now()) })
}
