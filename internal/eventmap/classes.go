package eventmap

import (
	"sort"
	"strings"
)

// eventClasses maps an AMI event name (lower case) to the manager.conf read class that carries
// it. It was generated from the <managerEvent> documentation in the Asterisk source (the
// managerEventInstance class="EVENT_FLAG_*" attributes of the 22.x tree) and checked against the
// Privilege headers of the recorded fixtures. Two corrections to the documentation: CEL events
// travel with class call (cel_manager sends them with EVENT_FLAG_CALL; there is no "cel" read
// class), and ChannelTalkingStart/Stop are documented with the typo EVENT_FLAG_CLASS but sent with
// EVENT_FLAG_CALL. Events named "command" are list items of actions; they never reach the events
// session, but the class is right.
var eventClasses = map[string]string{
	"agentcalled":                "agent",
	"agentcomplete":              "agent",
	"agentconnect":               "agent",
	"agentdump":                  "agent",
	"agentlogin":                 "agent",
	"agentlogoff":                "agent",
	"agentringnoanswer":          "agent",
	"agents":                     "agent",
	"agentscomplete":             "agent",
	"agiexecend":                 "agi",
	"agiexecstart":               "agi",
	"alarm":                      "system",
	"alarmclear":                 "system",
	"aoc-d":                      "aoc",
	"aoc-e":                      "aoc",
	"aoc-s":                      "aoc",
	"aordetail":                  "command",
	"aorlist":                    "command",
	"aorlistcomplete":            "command",
	"asyncagiend":                "agi",
	"asyncagiexec":               "agi",
	"asyncagistart":              "agi",
	"attendedtransfer":           "call",
	"authdetail":                 "command",
	"authlist":                   "command",
	"authlistcomplete":           "command",
	"authmethodnotallowed":       "security",
	"blindtransfer":              "call",
	"bridgecreate":               "call",
	"bridgedestroy":              "call",
	"bridgeenter":                "call",
	"bridgeinfochannel":          "command",
	"bridgeinfocomplete":         "command",
	"bridgeleave":                "call",
	"bridgemerge":                "call",
	"bridgevideosourceupdate":    "call",
	"cdr":                        "cdr",
	"cel":                        "call",
	"challengeresponsefailed":    "security",
	"challengesent":              "security",
	"channeltalkingstart":        "call",
	"channeltalkingstop":         "call",
	"chanspystart":               "call",
	"chanspystop":                "call",
	"confbridgeend":              "call",
	"confbridgejoin":             "call",
	"confbridgeleave":            "call",
	"confbridgelist":             "reporting",
	"confbridgelistrooms":        "reporting",
	"confbridgemute":             "call",
	"confbridgerecord":           "call",
	"confbridgestart":            "call",
	"confbridgestoprecord":       "call",
	"confbridgetalking":          "call",
	"confbridgeunmute":           "call",
	"contactlist":                "command",
	"contactlistcomplete":        "command",
	"contactstatus":              "system",
	"contactstatusdetail":        "command",
	"coreshowchannel":            "call",
	"coreshowchannelmapcomplete": "call",
	"coreshowchannelscomplete":   "call",
	"dahdichannel":               "call",
	"deadlockstart":              "system",
	"devicestatechange":          "call",
	"dialbegin":                  "call",
	"dialend":                    "call",
	"dialstate":                  "call",
	"dndstate":                   "system",
	"dtmfbegin":                  "dtmf",
	"dtmfend":                    "dtmf",
	"endpointdetail":             "command",
	"endpointdetailcomplete":     "command",
	"endpointlist":               "command",
	"endpointlistcomplete":       "command",
	"extensionstatus":            "call",
	"failedacl":                  "security",
	"faxsession":                 "reporting",
	"faxsessionscomplete":        "call",
	"faxsessionsentry":           "reporting",
	"faxstats":                   "reporting",
	"faxstatus":                  "call",
	"flash":                      "call",
	"fullybooted":                "system",
	"hangup":                     "call",
	"hanguphandlerpop":           "dialplan",
	"hanguphandlerpush":          "dialplan",
	"hanguphandlerrun":           "dialplan",
	"hanguprequest":              "call",
	"hold":                       "call",
	"identifydetail":             "command",
	"inboundregistrationdetail":  "command",
	"inboundsubscriptiondetail":  "command",
	"invalidaccountid":           "security",
	"invalidpassword":            "security",
	"invalidtransport":           "security",
	"jabberstatus":               "user",
	"load":                       "system",
	"loadaveragelimit":           "security",
	"localbridge":                "call",
	"localoptimizationbegin":     "call",
	"localoptimizationend":       "call",
	"logchannel":                 "system",
	"mcid":                       "call",
	"meetmeend":                  "call",
	"meetmejoin":                 "call",
	"meetmeleave":                "call",
	"meetmelist":                 "call",
	"meetmelistrooms":            "call",
	"meetmemute":                 "call",
	"meetmetalking":              "call",
	"meetmetalkrequest":          "call",
	"memorylimit":                "security",
	"messagewaiting":             "call",
	"minivoicemail":              "call",
	"mixmonitormute":             "call",
	"mixmonitorstart":            "call",
	"mixmonitorstop":             "call",
	"mobilestatus":               "system",
	"musiconholdstart":           "call",
	"musiconholdstop":            "call",
	"mwiget":                     "reporting",
	"mwigetcomplete":             "reporting",
	"newaccountcode":             "call",
	"newcallerid":                "call",
	"newchannel":                 "call",
	"newconnectedline":           "call",
	"newexten":                   "dialplan",
	"newstate":                   "call",
	"originateresponse":          "call",
	"outboundregistrationdetail": "command",
	"outboundsubscriptiondetail": "command",
	"parkedcall":                 "call",
	"parkedcallgiveup":           "call",
	"parkedcallswap":             "call",
	"parkedcalltimeout":          "call",
	"peerstatus":                 "system",
	"pickup":                     "call",
	"pjsipmaintenancestatus":     "system",
	"presencestatechange":        "call",
	"presencestatus":             "call",
	"queuecallerabandon":         "agent",
	"queuecallerjoin":            "agent",
	"queuecallerleave":           "agent",
	"queueentry":                 "agent",
	"queuememberadded":           "agent",
	"queuememberpause":           "agent",
	"queuememberpenalty":         "agent",
	"queuememberremoved":         "agent",
	"queuememberringinuse":       "agent",
	"queuememberstatus":          "agent",
	"queueparams":                "agent",
	"receivefax":                 "call",
	"registry":                   "system",
	"reload":                     "system",
	"rename":                     "call",
	"requestbadformat":           "security",
	"requestnotallowed":          "security",
	"requestnotsupported":        "security",
	"resourcelistdetail":         "command",
	"rtcpreceived":               "reporting",
	"rtcpsent":                   "reporting",
	"sendfax":                    "call",
	"sessionlimit":               "security",
	"shutdown":                   "system",
	"softhanguprequest":          "call",
	"spanalarm":                  "system",
	"spanalarmclear":             "system",
	"status":                     "call",
	"statuscomplete":             "call",
	"successfulauth":             "security",
	"transportdetail":            "command",
	"unexpectedaddress":          "security",
	"unhold":                     "call",
	"unload":                     "system",
	"unparkedcall":               "call",
	"userevent":                  "user",
	"varset":                     "dialplan",
	"voicemailpasswordchange":    "user",
	"wink":                       "call",
}

// classOrder is the order of classes in an Events: mask, so equal masks compare equal.
var classOrder = []string{"call", "system", "dialplan", "user", "agent", "cdr", "security", "reporting", "dtmf", "agi", "aoc", "command"}

// SyntheticEvents are produced by the agent itself, never by Asterisk, so they need no class.
var SyntheticEvents = map[string]bool{"agentchannelssnapshot": true}

// EventClass returns the AMI read class of an event name (compared case-insensitively).
func EventClass(name string) (string, bool) {
	c, ok := eventClasses[strings.ToLower(name)]
	return c, ok
}

// EventsMask returns the Events: value for the events session (contract §2.9): the union of the
// classes of the named events, plus call (always, for originate correlation) and security when
// security is on. A name missing from the table gives "on", because an event the agent cannot
// place must still arrive. Synthetic events are skipped.
func EventsMask(names []string, securityOn bool) string {
	need := map[string]bool{"call": true}
	if securityOn {
		need["security"] = true
	}
	for _, name := range names {
		lower := strings.ToLower(strings.TrimSpace(name))
		if lower == "" || SyntheticEvents[lower] {
			continue
		}
		c, ok := eventClasses[lower]
		if !ok {
			return "on"
		}
		need[c] = true
	}
	out := make([]string, 0, len(need))
	for _, c := range classOrder {
		if need[c] {
			out = append(out, c)
			delete(need, c)
		}
	}
	rest := make([]string, 0, len(need))
	for c := range need {
		rest = append(rest, c)
	}
	sort.Strings(rest)
	return strings.Join(append(out, rest...), ",")
}
