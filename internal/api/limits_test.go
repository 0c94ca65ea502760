package api

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
)

var amiErrNotConnected = ami.ErrNotConnected

func TestAuthLimiterWindow(t *testing.T) {
	l := newAuthLimiter()
	ip := netip.MustParseAddr("192.0.2.1")
	other := netip.MustParseAddr("192.0.2.2")
	t0 := time.Unix(1_000_000, 0)
	// Ten failures within a minute are tolerated.
	for i := range 10 {
		if l.fail(ip, t0.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("locked at failure %d", i+1)
		}
	}
	// Spread out, old failures leave the window: 61 s later ten more are still fine.
	for i := range 10 {
		if l.fail(ip, t0.Add(61*time.Second+time.Duration(i)*time.Second)) {
			t.Fatalf("locked by failures outside the window (%d)", i+1)
		}
	}
	if !l.fail(ip, t0.Add(71*time.Second)) {
		t.Fatal("the 11th failure within 60 s did not lock")
	}
	at := t0.Add(71 * time.Second)
	if !l.locked(ip, at.Add(4*time.Minute)) || l.locked(other, at) {
		t.Fatal("lock state wrong")
	}
	if l.locked(ip, at.Add(5*time.Minute)) {
		t.Fatal("still locked after 5 minutes")
	}
}

func TestAuthLimiterBounded(t *testing.T) {
	l := newAuthLimiter()
	t0 := time.Unix(1_000_000, 0)
	for i := range authMaxTracked + 100 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.fail(a, t0)
	}
	if n := len(l.entries); n > authMaxTracked {
		t.Fatalf("%d entries tracked", n)
	}
}

func TestDedupExpiry(t *testing.T) {
	d := newDedupCache()
	t0 := time.Unix(1_000_000, 0)
	e, first := d.reserve("a", t0)
	if !first {
		t.Fatal("first reserve not first")
	}
	d.settle(e, 200, []byte(`{"status":"accepted","job_id":"a"}`))
	if e2, first := d.reserve("a", t0.Add(9*time.Minute)); first || e2 != e {
		t.Fatal("repeat within 10 min not recognised")
	}
	if _, first := d.reserve("a", t0.Add(10*time.Minute)); !first {
		t.Fatal("repeat after 10 min still de-duplicated")
	}
	// Past the size bound the oldest ids go first.
	d = newDedupCache()
	for i := range dedupMaxEntries + 10 {
		d.reserve(fmt.Sprint(i), t0)
	}
	if n := d.len(); n > dedupMaxEntries+1 {
		t.Fatalf("%d entries", n)
	}
	if _, first := d.reserve("0", t0); !first {
		t.Fatal("the oldest id was kept past the bound")
	}
}

func TestCheckDepth(t *testing.T) {
	for s, ok := range map[string]bool{
		`[[[]]]`:               true,
		`[[[[]]]]`:             false,
		`["[[[[[[[["]`:         true,
		`["\"[[[[[[[[[[["]`:    true,
		`{"a":{"b":{"c":1}}}`:  true,
		`{"a":{"b":{"c":[]}}}`: false,
	} {
		if err := checkDepth([]byte(s), 3); (err == nil) != ok {
			t.Errorf("%s: err = %v", s, err)
		}
	}
}
