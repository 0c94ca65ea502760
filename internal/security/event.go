package security

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/odoopbx/odoopbx/internal/ami"
)

// Class is what an event means to the policy (contract §6.1).
type Class int

const (
	// ClassIgnored is not a security event, or one the policy does not use.
	ClassIgnored Class = iota
	// ClassFailure adds one to the source's failure count.
	ClassFailure
	// ClassSuccess clears the count and trusts the source.
	ClassSuccess
	// ClassChallenge is a ChallengeSent, used only in challenge mode.
	ClassChallenge
	// ClassInfo is logged and counted in metrics only.
	ClassInfo
)

func (c Class) String() string {
	switch c {
	case ClassFailure:
		return "failure"
	case ClassSuccess:
		return "success"
	case ClassChallenge:
		return "challenge"
	case ClassInfo:
		return "info"
	default:
		return "ignored"
	}
}

// EventAgentAuthFailed is the pseudo-event the job API and the web console feed in on a bad token.
const EventAgentAuthFailed = "AgentAuthFailed"

// securityEvents are the AMI events of class security (§2.8) plus the agent's own pseudo-event.
var securityEvents = map[string]Class{
	"invalidaccountid":        ClassFailure,
	"invalidpassword":         ClassFailure,
	"challengeresponsefailed": ClassFailure,
	"failedacl":               ClassFailure,
	"authmethodnotallowed":    ClassFailure,
	"invalidtransport":        ClassFailure,
	"requestbadformat":        ClassFailure,
	"requestnotallowed":       ClassFailure, // downgraded to info for a logged-in account below
	"agentauthfailed":         ClassFailure,
	"successfulauth":          ClassSuccess,
	"challengesent":           ClassChallenge,
	"sessionlimit":            ClassInfo,
	"memorylimit":             ClassInfo,
	"loadaveragelimit":        ClassInfo,
	"requestnotsupported":     ClassInfo,
	"unexpectedaddress":       ClassInfo,
}

// SecurityEventNames lists the AMI event names the engine reads, for the events session's mask.
func SecurityEventNames() []string {
	return []string{
		"InvalidAccountID", "InvalidPassword", "ChallengeResponseFailed", "FailedACL",
		"AuthMethodNotAllowed", "InvalidTransport", "RequestBadFormat", "RequestNotAllowed",
		"SuccessfulAuth", "ChallengeSent", "SessionLimit", "MemoryLimit", "LoadAverageLimit",
		"RequestNotSupported", "UnexpectedAddress",
	}
}

// Event is a security event reduced to what the policy needs.
type Event struct {
	Name      string
	Class     Class
	Addr      netip.Addr
	Service   string
	AccountID string
	SessionID string
}

// Classify reads an AMI message. ok is false for a message that is not a security event; err is
// set for a security event whose RemoteAddress cannot be parsed (counted and ignored).
func Classify(m *ami.Message) (ev Event, ok bool, err error) {
	name := m.Get("Event")
	class, known := securityEvents[strings.ToLower(name)]
	if !known {
		return Event{}, false, nil
	}
	ev = Event{
		Name:      name,
		Class:     class,
		Service:   m.Get("Service"),
		AccountID: m.Get("AccountID"),
		SessionID: m.Get("SessionID"),
	}
	if strings.EqualFold(name, "RequestNotAllowed") && !isAnonymous(ev.AccountID) {
		// A logged-in account asking for more than it may is a configuration matter, not an attack.
		ev.Class = ClassInfo
	}
	ev.Addr, err = ParseRemoteAddress(m.Get("RemoteAddress"))
	if err != nil {
		return ev, true, err
	}
	return ev, true, nil
}

func isAnonymous(account string) bool {
	a := strings.TrimSpace(account)
	return a == "" || a == "<unknown>"
}

// Reason is the ban reason the contract asks for: "Service Event AccountID".
func (ev Event) Reason() string {
	parts := make([]string, 0, 3)
	for _, p := range []string{ev.Service, ev.Name, ev.AccountID} {
		if p = strings.TrimSpace(p); p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, " ")
}

// AgentAuthFailedMessage builds the pseudo-event the job API (and the web console) feed to
// HandleEvent when a request carries a wrong token, so repeated guessing gets the source banned.
// service is "API" or "CONSOLE".
func AgentAuthFailedMessage(remote netip.AddrPort, service string) *ami.Message {
	a := remote.Addr().Unmap()
	family := "IPV4"
	if a.Is6() {
		family = "IPV6"
	}
	return ami.NewMessage(
		"Event", EventAgentAuthFailed,
		"Service", service,
		"AccountID", "",
		"RemoteAddress", family+"/TCP/"+a.WithZone("").String()+"/"+strconv.Itoa(int(remote.Port())),
	)
}
