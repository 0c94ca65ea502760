package nft

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
	"github.com/odoopbx/odoopbx/internal/control"
	"github.com/odoopbx/odoopbx/internal/security"
)

// sipAttack is the event Asterisk 22 sent for a wrong SIP password (fixture 05a), from addr.
func sipAttack(addr netip.Addr, port int) *ami.Message {
	fam := "IPV4"
	if addr.Is6() {
		fam = "IPV6"
	}
	return ami.NewMessage(
		"Event", "ChallengeResponseFailed", "Privilege", "security,all",
		"EventTV", "2026-11-25T17:21:55.760+0000", "Severity", "Error", "Service", "PJSIP",
		"EventVersion", "1", "AccountID", "101", "SessionID", "1-14787@127.0.0.1",
		"LocalAddress", fam+"/UDP/192.0.2.2/5060", "RemoteAddress", fmt.Sprintf("%s/UDP/%s/%d", fam, addr, port),
		"Challenge", "1795627315/a1e45fb7138b7b4856b39094d5f2fc83", "Response", "210db4fae69c0546b963fb539a66a42a",
		"ExpectedResponse", "")
}

func startEngine(t testing.TB, b *Backend, stateDir string, opts map[string]string) *security.Engine {
	t.Helper()
	o, errs := security.ParseOptions(opts)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	e, err := security.New(security.Config{Options: o, Backend: b, StatePath: filepath.Join(stateDir, security.StateFile),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Stop(context.Background()) })
	return e
}

// TestEndToEnd is the "done when": with security on, a source failing SIP auth past the
// threshold is dropped by the kernel, for IPv4 and IPv6; the control socket lists the ban with its
// expiry and reason, and lifting it lets the source through again.
func TestEndToEnd(t *testing.T) {
	l := newLab(t)
	b := l.backend(t, 128)
	sink := l.udpSink(t, 5060)
	dir := t.TempDir()
	e := startEngine(t, b, dir, map[string]string{"security_enabled": "yes", "security_ports_udp": "5060"})
	srv := control.NewServer(control.SocketPath(dir), slog.New(slog.DiscardHandler))
	e.Mount(srv)
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(context.Background())

	for _, tc := range []struct{ src, dst string }{{"192.0.2.1", "192.0.2.2"}, {"2001:db8::1", "2001:db8::2"}} {
		src := netip.MustParseAddr(tc.src)
		if !l.passes(t, sink, tc.src, tc.dst, 5060) {
			t.Fatalf("%s: blocked before any failure", tc.src)
		}
		for i := 0; i < 4; i++ {
			e.HandleEvent(sipAttack(src, 5071+i))
		}
		if !l.passes(t, sink, tc.src, tc.dst, 5060) {
			t.Fatalf("%s: blocked below the threshold", tc.src)
		}
		start := time.Now()
		e.HandleEvent(sipAttack(src, 5080))
		deadline := time.Now().Add(5 * time.Second)
		for {
			ok, err := b.Contains(context.Background(), netip.PrefixFrom(src, src.BitLen()))
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not in the kernel's set 5 s after the fifth failure", tc.src)
			}
			time.Sleep(100 * time.Microsecond)
		}
		t.Logf("%s: event to kernel set in %s", tc.src, time.Since(start))
		if !l.dropped(t, sink, tc.src, tc.dst, 5060) {
			t.Errorf("%s: delivered after the ban", tc.src)
		}
	}

	var list security.BanList
	if err := control.Call(context.Background(), dir, "GET", security.RouteBans, nil, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Bans) != 2 || !list.Available {
		t.Fatalf("listed %+v", list)
	}
	for _, v := range list.Bans {
		if v.ExpiresIn < 3590 || v.ExpiresIn > 3600 || v.Reason != "PJSIP ChallengeResponseFailed 101" {
			t.Errorf("ban %+v", v)
		}
	}
	var res security.UnbanResult
	if err := control.Call(context.Background(), dir, "DELETE", security.RouteBans+"?address=192.0.2.1&address=2001:db8::1", nil, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 2 {
		t.Fatalf("unban %+v", res)
	}
	if !l.passes(t, sink, "192.0.2.1", "192.0.2.2", 5060) || !l.passes(t, sink, "2001:db8::1", "2001:db8::2", 5060) {
		t.Error("still dropped after bans del")
	}
}

// TestRestartKeepsProtection: the table stays when the agent stops, and the next start restores
// the saved bans with their remaining time.
func TestRestartKeepsProtection(t *testing.T) {
	l := newLab(t)
	b := l.backend(t, 128)
	sink := l.udpSink(t, 5060)
	dir := t.TempDir()
	opts := map[string]string{"security_enabled": "yes", "security_ports_udp": "5060"}
	e := startEngine(t, b, dir, opts)
	if _, err := e.Ban(context.Background(), netip.MustParsePrefix("192.0.2.1/32"), time.Hour, "test"); err != nil {
		t.Fatal(err)
	}
	if err := e.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !l.dropped(t, sink, "192.0.2.1", "192.0.2.2", 5060) {
		t.Fatal("protection lifted when the agent stopped")
	}
	// Wipe the table to show the restart really restores from security.json.
	if err := b.Remove(context.Background()); err != nil {
		t.Fatal(err)
	}
	startEngine(t, b, dir, opts)
	list, err := b.List(context.Background())
	if err != nil || len(list) != 1 || list[0].TTL < 59*time.Minute {
		t.Fatalf("restored %+v %v", list, err)
	}
	if !l.dropped(t, sink, "192.0.2.1", "192.0.2.2", 5060) {
		t.Error("restored ban not enforced")
	}
}

// TestFlushedTableIsReinstalled: after someone deletes the table under the running agent, the next
// ban puts the whole table back with every ban.
func TestFlushedTableIsReinstalled(t *testing.T) {
	l := newLab(t)
	b := l.backend(t, 128)
	sink := l.udpSink(t, 5060)
	e := startEngine(t, b, t.TempDir(), map[string]string{"security_enabled": "yes", "security_ports_udp": "5060"})
	if _, err := e.Ban(context.Background(), netip.MustParsePrefix("192.0.2.3/32"), time.Hour, "x"); err != nil {
		t.Fatal(err)
	}
	other, err := New(Config{NetNS: int(l.serverNS)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Remove(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		e.HandleEvent(sipAttack(netip.MustParseAddr("192.0.2.1"), 5071+i))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		list, _ := b.List(context.Background())
		if len(list) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("table not reinstalled with both bans: %+v", list)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !l.dropped(t, sink, "192.0.2.1", "192.0.2.2", 5060) || !l.dropped(t, sink, "192.0.2.3", "192.0.2.2", 5060) {
		t.Error("bans not enforced after the reinstall")
	}
}
