package sim

import (
	"fmt"
	"net/netip"
	"time"
)

// attacker is a remote SIP client that keeps failing authentication from a public test address
// (RFC 5737 and RFC 3849 ranges, never routable).
type attacker struct {
	index    int
	addr     netip.Addr
	port     int
	attempts int
}

var attackerNets = []netip.Prefix{
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("2001:db8::/32"),
}

// attackerUsers are the account names scanners try.
var attackerUsers = []string{"admin", "1000", "100", "test", "sip", "guest", "1001", "operator"}

// AttackerAddr reports whether addr lies in one of the ranges the simulator's attackers use.
func AttackerAddr(addr netip.Addr) bool {
	for _, p := range attackerNets {
		if p.Contains(addr.Unmap()) {
			return true
		}
	}
	return false
}

func (s *Sim) attackerAddr(i int) netip.Addr {
	p := attackerNets[i%len(attackerNets)]
	b := p.Addr().AsSlice()
	if p.Addr().Is4() {
		b[3] = byte(1 + (i/len(attackerNets)*37+s.rng.IntN(37))%254)
	} else {
		b[14] = byte(i / len(attackerNets))
		b[15] = byte(1 + s.rng.IntN(254))
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func (s *Sim) startAttacker(i int) {
	a := &attacker{index: i, addr: s.attackerAddr(i), port: 5060 + s.rng.IntN(40)}
	s.at(s.seconds(0.2, 2), func() { s.attack(a) })
}

// attack plays one failed SIP registration like the 05a transcript: a wrong password for a real
// endpoint gives ChallengeSent then ChallengeResponseFailed; an unknown user gives
// InvalidAccountID, ChallengeSent and ChallengeResponseFailed with AccountID <unknown>.
func (s *Sim) attack(a *attacker) {
	a.attempts++
	fam, local := "IPV4", "IPV4/UDP/127.0.0.1/5060"
	if a.addr.Is6() {
		fam, local = "IPV6", "IPV6/UDP/::1/5060"
	}
	remote := fmt.Sprintf("%s/UDP/%s/%d", fam, a.addr, a.port)
	sessionID := fmt.Sprintf("%d-%d@%s", a.attempts, 14000+a.index, a.addr)
	nonce := fmt.Sprintf("%d/%016x%016x", s.clock.Now().Unix(), s.rng.Uint64(), s.rng.Uint64())
	digest := fmt.Sprintf("%016x%016x", s.rng.Uint64(), s.rng.Uint64())
	if a.attempts%2 == 1 {
		account := s.randomPhone().ext
		s.pjsipSecurity("ChallengeSent", "Informational", account, sessionID, local, remote, "Challenge", "")
		s.pjsipSecurity("ChallengeResponseFailed", "Error", account, sessionID, local, remote,
			"Challenge", nonce, "Response", digest, "ExpectedResponse", "")
	} else {
		user := attackerUsers[s.rng.IntN(len(attackerUsers))]
		s.pjsipSecurity("InvalidAccountID", "Error", user, sessionID, local, remote)
		s.pjsipSecurity("ChallengeSent", "Informational", unknown, sessionID, local, remote, "Challenge", "")
		s.pjsipSecurity("InvalidAccountID", "Error", user, sessionID, local, remote)
		s.pjsipSecurity("ChallengeResponseFailed", "Error", unknown, sessionID, local, remote,
			"Challenge", nonce, "Response", digest, "ExpectedResponse", "")
	}
	s.at(s.seconds(0.5, 4)+time.Duration(a.index%7)*time.Millisecond, func() { s.attack(a) })
}
