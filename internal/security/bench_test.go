package security

import (
	"net/netip"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// policyWith returns a policy holding n bans, half IPv4 from 198.18.0.0/15 (RFC 2544
// benchmarking) and half IPv6 from 2001:db8::/32.
func policyWith(b *testing.B, n int) *Policy {
	o := testOptions()
	o.IgnorePrivate = false
	p := NewPolicy(o, nil)
	for i := 0; i < n; i++ {
		var a netip.Addr
		if i%2 == 0 {
			a = netip.AddrFrom4([4]byte{198, 18 + byte(i>>17&1), byte(i >> 9), byte(i >> 1)})
		} else {
			k := netip.MustParseAddr("2001:db8:1::").As16()
			k[12], k[13], k[14], k[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
			a = netip.AddrFrom16(k)
		}
		if _, err := p.Ban(netip.PrefixFrom(a, a.BitLen()), time.Hour, "PJSIP ChallengeResponseFailed 101", t0); err != nil {
			b.Fatal(err)
		}
	}
	return p
}

func heap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkPolicyWith100kBans: the engine's memory per ban (reported as B-per-ban, history
// included), and the cost of one failure event from a new source at that size (per op).
func BenchmarkPolicyWith100kBans(b *testing.B) {
	before := heap()
	p := policyWith(b, 100000)
	after := heap()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := netip.MustParseAddr("2001:db8:2::").As16()
		k[12], k[13], k[14], k[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		p.Observe(Event{Name: "InvalidAccountID", Class: ClassFailure, Addr: netip.AddrFrom16(k), Service: "PJSIP"}, t0)
	}
	b.StopTimer()
	runtime.KeepAlive(p)
	b.ReportMetric(float64(after-before)/100000, "B-per-ban") // after the loop: ResetTimer drops metrics
}

// BenchmarkSaveStateWith100kBans: one state save at 100,000 bans (export under the lock, reported
// as export-ms, then format and write with fsync, per op); file size as file-MB.
func BenchmarkSaveStateWith100kBans(b *testing.B) {
	p := policyWith(b, 100000)
	path := filepath.Join(b.TempDir(), StateFile)
	start := time.Now()
	x := p.Export(t0)
	exportTime := time.Since(start)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := SaveState(path, p.Export(t0).State(t0)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(exportTime.Microseconds())/1000, "export-ms")
	if len(x.Bans) != 100000 {
		b.Fatalf("exported %d bans", len(x.Bans))
	}
	st, err := LoadState(path)
	if err != nil || len(st.Bans) != 100000 {
		b.Fatalf("%v %d", err, len(st.Bans))
	}
	if fi, err := statSize(path); err == nil {
		b.ReportMetric(float64(fi)/1e6, "file-MB")
	}
}
