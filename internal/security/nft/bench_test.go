package nft

import (
	"context"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/odoopbx/odoopbx/internal/security"
)

// inSet polls the kernel for one element of one set through its own connection (b is a second
// backend on the same namespace, so the poll never holds the engine's backend lock).
func inSet(b *Backend, name string, key []byte) (bool, error) {
	elems, err := b.conn.GetSetElements(&nftables.Set{Table: b.table, Name: name})
	if err != nil {
		return false, err
	}
	for _, e := range elems {
		if string(e.Key) == string(key) {
			return true, nil
		}
	}
	return false, nil
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p)]
}

// BenchmarkEventToKernel measures the time from the threshold-crossing security event handed to
// HandleEvent until the address is present in the kernel's ban set (IPv4 and IPv6 alternately).
// The figure includes the polling of the set, a few tens of microseconds.
func BenchmarkEventToKernel(b *testing.B) {
	l := newLab(b)
	fw := l.backend(b, 128)
	e := startEngine(b, fw, b.TempDir(), map[string]string{"security_enabled": "yes"})
	poll := l.backend(b, 128)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var src netip.Addr
		set := setBan4
		if i%2 == 0 {
			src = netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + (i/2)%250)})
		} else {
			a := netip.MustParseAddr("2001:db8:beef::").As16()
			a[12], a[13], a[14], a[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
			src, set = netip.AddrFrom16(a), setBan6
		}
		for j := 0; j < 4; j++ {
			e.HandleEvent(sipAttack(src, 5071+j))
		}
		// Let the four uncounted events through the queue before the clock starts.
		for e.Status().Counters.Failures < int64(5*i+4) {
			time.Sleep(20 * time.Microsecond)
		}
		start := time.Now()
		e.HandleEvent(sipAttack(src, 5080))
		for {
			ok, err := inSet(poll, set, src.AsSlice())
			if err != nil {
				b.Fatal(err)
			}
			if ok {
				break
			}
			if time.Since(start) > 5*time.Second {
				b.Fatalf("%s not banned after 5 s", src)
			}
			time.Sleep(20 * time.Microsecond) // leave the CPU to the engine between polls
		}
		lat = append(lat, time.Since(start))
		b.StopTimer()
		if _, _, err := e.Unban(context.Background(), []netip.Prefix{netip.PrefixFrom(src, src.BitLen())}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(percentile(lat, 0.50).Microseconds()), "p50-µs")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds()), "p99-µs")
	b.ReportMetric(0, "ns/op")
}

// bigBanList is n bans, half IPv4 from the benchmarking range 198.18.0.0/15 (RFC 2544) and half
// IPv6 from the documentation range 2001:db8::/32.
func bigBanList(n int) []security.BanEntry {
	out := make([]security.BanEntry, 0, n)
	for i := 0; i < n/2; i++ {
		a := netip.AddrFrom4([4]byte{198, 18 + byte(i>>16&1), byte(i >> 8), byte(i)})
		out = append(out, security.BanEntry{Prefix: netip.PrefixFrom(a, 32), TTL: time.Hour})
	}
	for i := 0; i < n-n/2; i++ {
		a := netip.MustParseAddr("2001:db8:1::").As16()
		a[12], a[13], a[14], a[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		out = append(out, security.BanEntry{Prefix: netip.PrefixFrom(netip.AddrFrom16(a), 128), TTL: time.Hour})
	}
	return out
}

// BenchmarkBanWith100kBans loads 100,000 bans into the kernel (reported as load-ms and list-ms,
// the time to read them all back), then measures one more ban at that size per op.
func BenchmarkBanWith100kBans(b *testing.B) {
	l := newLab(b)
	fw := l.backend(b, 128)
	bans := bigBanList(100000)
	start := time.Now()
	if err := fw.Install(context.Background(), security.Ruleset{PortsUDP: []uint16{5060}, Bans: bans}); err != nil {
		b.Fatal(err)
	}
	load := time.Since(start)
	start = time.Now()
	list, err := fw.List(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	listTime := time.Since(start)
	if len(list) != len(bans) {
		b.Fatalf("kernel holds %d, want %d", len(list), len(bans))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a := netip.MustParseAddr("2001:db8:2::").As16()
		a[12], a[13], a[14], a[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		if err := fw.Ban(context.Background(), netip.PrefixFrom(netip.AddrFrom16(a), 128), time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(load.Milliseconds()), "load-ms")
	b.ReportMetric(float64(listTime.Milliseconds()), "list-ms")
}

// BenchmarkEngineStartWith100kBans measures an agent start that restores 100,000 saved bans: read
// security.json, rebuild the policy, install the table.
func BenchmarkEngineStartWith100kBans(b *testing.B) {
	l := newLab(b)
	fw := l.backend(b, 128)
	dir := b.TempDir()
	now := time.Now()
	st := &security.State{Version: 1}
	for _, e := range bigBanList(100000) {
		st.Bans = append(st.Bans, security.StateBan{Address: security.FormatPrefix(e.Prefix), Created: now, Expires: now.Add(time.Hour), Reason: "PJSIP ChallengeResponseFailed 101", Offences: 1})
	}
	if err := security.SaveState(filepath.Join(dir, security.StateFile), st); err != nil {
		b.Fatal(err)
	}
	o, _ := security.ParseOptions(map[string]string{"security_enabled": "yes"})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e, err := security.New(security.Config{Options: o, Backend: fw, StatePath: filepath.Join(dir, security.StateFile), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		if err := e.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if n := e.Status().Bans; n != 100000 {
			b.Fatalf("restored %d bans", n)
		}
		_ = e.Stop(context.Background())
		b.StartTimer()
	}
}
