package nft

import (
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/odoopbx/odoopbx/internal/security"
)

func ruleset(bans ...security.BanEntry) security.Ruleset {
	return security.Ruleset{
		PortsTCP: []uint16{5060, 5061},
		PortsUDP: []uint16{5060},
		Allow:    []netip.Prefix{pfx("192.0.2.3"), pfx("2001:db8::3")},
		Bans:     bans,
	}
}

func TestBanDropsIPv4AndIPv6AndAllowWins(t *testing.T) {
	l := newLab(t)
	b := l.backend(t, 128)
	sink := l.udpSink(t, 5060)
	open := l.udpSink(t, 5070)
	if err := b.Install(ctx(t), ruleset()); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{"192.0.2.1", "2001:db8::1"} {
		dst := "192.0.2.2"
		if strings.Contains(src, ":") {
			dst = "2001:db8::2"
		}
		if !l.passes(t, sink, src, dst, 5060) {
			t.Fatalf("%s: not delivered before any ban", src)
		}
		if err := b.Ban(ctx(t), pfx(src), time.Hour); err != nil {
			t.Fatal(err)
		}
		if !l.dropped(t, sink, src, dst, 5060) {
			t.Errorf("%s: delivered to a guarded port while banned", src)
		}
		if !l.passes(t, open, src, dst, 5070) {
			t.Errorf("%s: an unguarded port was blocked too", src)
		}
	}
	// An allow-listed address passes even when banned: allow returns before the ban rules.
	for _, src := range []string{"192.0.2.3", "2001:db8::3"} {
		dst := "192.0.2.2"
		if strings.Contains(src, ":") {
			dst = "2001:db8::2"
		}
		if err := b.Ban(ctx(t), pfx(src), time.Hour); err != nil {
			t.Fatal(err)
		}
		if !l.passes(t, sink, src, dst, 5060) {
			t.Errorf("%s: allow-listed address dropped", src)
		}
	}
	if l.tcpConnects(t, "192.0.2.1", "192.0.2.2", 5061) {
		t.Error("banned address completed a TCP handshake on a guarded port")
	}
	if err := b.Unban(ctx(t), pfx("192.0.2.1")); err != nil {
		t.Fatal(err)
	}
	if !l.passes(t, sink, "192.0.2.1", "192.0.2.2", 5060) {
		t.Error("unbanned address still dropped")
	}
	if err := b.Unban(ctx(t), pfx("192.0.2.1")); err != nil {
		t.Errorf("unban of an absent entry: %v", err)
	}
}

func TestBanExpires(t *testing.T) {
	l := newLab(t)
	b := l.backend(t, 128)
	sink := l.udpSink(t, 5060)
	if err := b.Install(ctx(t), ruleset()); err != nil {
		t.Fatal(err)
	}
	if err := b.Ban(ctx(t), pfx("192.0.2.1"), 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if !l.dropped(t, sink, "192.0.2.1", "192.0.2.2", 5060) {
		t.Fatal("delivered while banned")
	}
	time.Sleep(1600 * time.Millisecond)
	if !l.passes(t, sink, "192.0.2.1", "192.0.2.2", 5060) {
		t.Error("still dropped after the ban's timeout")
	}
	if ok, err := b.Contains(ctx(t), pfx("192.0.2.1")); err != nil || ok {
		t.Errorf("expired entry still listed: %v %v", ok, err)
	}
}

func TestBanExtendRestartsTimeout(t *testing.T) {
	l := newLab(t)
	b := l.backend(t, 128)
	if err := b.Install(ctx(t), ruleset()); err != nil {
		t.Fatal(err)
	}
	if err := b.Ban(ctx(t), pfx("198.51.100.9"), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := b.Ban(ctx(t), pfx("198.51.100.9"), time.Hour); err != nil {
		t.Fatal(err)
	}
	list, err := b.List(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].TTL < 59*time.Minute {
		t.Fatalf("after extending, want one entry with about an hour left, got %+v", list)
	}
}

func TestInstallRestoresAndIsIdempotent(t *testing.T) {
	l := newLab(t)
	b := l.backend(t, 128)
	sink := l.udpSink(t, 5060)
	bans := []security.BanEntry{{Prefix: pfx("192.0.2.1"), TTL: time.Hour}, {Prefix: pfx("2001:db8::1"), TTL: 30 * time.Minute}}
	for i := 0; i < 2; i++ {
		if err := b.Install(ctx(t), ruleset(bans...)); err != nil {
			t.Fatalf("install %d: %v", i, err)
		}
	}
	list, err := b.List(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Prefix != pfx("192.0.2.1") || list[1].Prefix != pfx("2001:db8::1") {
		t.Fatalf("restored bans: %+v", list)
	}
	if list[1].TTL > 30*time.Minute || list[1].TTL < 29*time.Minute {
		t.Errorf("restored IPv6 ban has %s left, want about 30m", list[1].TTL)
	}
	if !l.dropped(t, sink, "2001:db8::1", "2001:db8::2", 5060) {
		t.Error("restored IPv6 ban not enforced")
	}
}

func TestLargeRestoreIsChunked(t *testing.T) {
	l := newLab(t)
	b := l.backend(t, 128)
	var bans []security.BanEntry
	base := netip.MustParseAddr("198.51.0.0").As4()
	for i := 0; i < 5000; i++ {
		a := base
		a[2], a[3] = byte(i>>8), byte(i)
		bans = append(bans, security.BanEntry{Prefix: netip.PrefixFrom(netip.AddrFrom4(a), 32), TTL: time.Hour})
	}
	for i := 0; i < 3000; i++ {
		a := netip.MustParseAddr("2001:db8:5::").As16()
		a[14], a[15] = byte(i>>8), byte(i)
		bans = append(bans, security.BanEntry{Prefix: netip.PrefixFrom(netip.AddrFrom16(a), 128), TTL: time.Hour})
	}
	if err := b.Install(ctx(t), ruleset(bans...)); err != nil {
		t.Fatal(err)
	}
	list, err := b.List(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(bans) {
		t.Fatalf("kernel holds %d bans, want %d", len(list), len(bans))
	}
}

func TestIPv6NetworkBans(t *testing.T) {
	l := newLab(t)
	b := l.backend(t, 64)
	sink := l.udpSink(t, 5060)
	if err := b.Install(ctx(t), ruleset(security.BanEntry{Prefix: pfx("2001:db8:0:7::5"), TTL: time.Hour})); err != nil {
		t.Fatal(err)
	}
	if err := b.Ban(ctx(t), pfx("2001:db8::/64"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := b.Ban(ctx(t), pfx("2001:db8::/64"), 2*time.Hour); err != nil {
		t.Fatalf("extending a /64 ban: %v", err)
	}
	if !l.dropped(t, sink, "2001:db8::1", "2001:db8::2", 5060) {
		t.Error("address inside a banned /64 delivered")
	}
	if !l.passes(t, sink, "2001:db8:0:1::1", "2001:db8:0:1::2", 5060) {
		t.Error("address outside the banned /64 dropped")
	}
	list, err := b.List(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	want := map[netip.Prefix]bool{pfx("2001:db8::/64"): true, pfx("2001:db8:0:7::5/128"): true}
	if len(list) != 2 || !want[list[0].Prefix] || !want[list[1].Prefix] {
		t.Fatalf("listed %+v", list)
	}
	if err := b.Unban(ctx(t), pfx("2001:db8::/64")); err != nil {
		t.Fatal(err)
	}
	if !l.passes(t, sink, "2001:db8::1", "2001:db8::2", 5060) {
		t.Error("still dropped after unbanning the /64")
	}
}

func TestDenyListAndOverlaps(t *testing.T) {
	l := newLab(t)
	b := l.backend(t, 128)
	sink := l.udpSink(t, 5060)
	if err := b.Install(ctx(t), ruleset()); err != nil {
		t.Fatal(err)
	}
	deny := []netip.Prefix{pfx("192.0.2.0/25"), pfx("192.0.2.0/24"), pfx("192.0.2.1"), pfx("2001:db8::/48"), pfx("0.0.0.0/0")}
	if err := b.SetAccessLists(ctx(t), []netip.Prefix{pfx("192.0.2.3")}, deny); err != nil {
		t.Fatal(err)
	}
	if !l.dropped(t, sink, "192.0.2.1", "192.0.2.2", 5060) {
		t.Error("deny-listed address delivered")
	}
	if !l.dropped(t, sink, "2001:db8::1", "2001:db8::2", 5060) {
		t.Error("deny-listed IPv6 network delivered")
	}
	if !l.passes(t, sink, "192.0.2.3", "192.0.2.2", 5060) {
		t.Error("allow-listed address inside a denied network dropped")
	}
	if err := b.SetAccessLists(ctx(t), nil, nil); err != nil {
		t.Fatal(err)
	}
	if !l.passes(t, sink, "192.0.2.1", "192.0.2.2", 5060) {
		t.Error("still dropped after the deny list was emptied")
	}
}

// TestOtherTablesUntouched checks that install, ban and remove change nothing outside inet odoopbx.
func TestOtherTablesUntouched(t *testing.T) {
	l := newLab(t)
	b := l.backend(t, 128)
	out, err := exec.Command("ip", "netns", "exec", l.server, "nft", "add table inet other; add set inet other s { type ipv4_addr; }; add element inet other s { 203.0.113.5 }; add chain inet other c { type filter hook input priority 0; policy accept; }").CombinedOutput()
	if err != nil {
		t.Skipf("nft command not usable: %v %s", err, out)
	}
	before := listOther(t, l)
	if err := b.Install(ctx(t), ruleset()); err != nil {
		t.Fatal(err)
	}
	if err := b.Ban(ctx(t), pfx("203.0.113.5"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := b.Remove(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := b.Remove(ctx(t)); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	if after := listOther(t, l); after != before {
		t.Fatalf("table inet other changed:\n%s\n---\n%s", before, after)
	}
	tables, err := b.conn.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if tb.Name == TableName && tb.Family == nftables.TableFamilyINet {
			t.Fatal("table inet odoopbx still present after Remove")
		}
	}
	if err := b.Ban(ctx(t), pfx("203.0.113.6"), time.Hour); err == nil {
		t.Error("ban without the table succeeded")
	}
}

func listOther(t *testing.T, l *lab) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", l.server, "nft", "list", "table", "inet", "other").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list: %v %s", err, out)
	}
	return string(out)
}
