package nft

import (
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/google/nftables"

	"github.com/odoopbx/odoopbx/internal/security"
)

// addrRange is [start, end) in one family; toMax means it runs to the last address, which has no
// successor and so no interval-end element.
type addrRange struct {
	start netip.Addr
	end   netip.Addr
	toMax bool
}

func rangeOf(p netip.Prefix) addrRange {
	p = p.Masked()
	last := lastAddr(p)
	next := last.Next()
	if !next.IsValid() {
		return addrRange{start: p.Addr(), toMax: true}
	}
	return addrRange{start: p.Addr(), end: next}
}

// lastAddr sets every host bit of the prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr()
	if a.Is4() {
		b := a.As4()
		setHostBits(b[:], p.Bits())
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	setHostBits(b[:], p.Bits())
	return netip.AddrFrom16(b)
}

func setHostBits(b []byte, bits int) {
	for i := range b {
		switch {
		case bits >= (i+1)*8:
		case bits <= i*8:
			b[i] = 0xff
		default:
			b[i] |= 0xff >> uint(bits-i*8)
		}
	}
}

func key(a netip.Addr) []byte {
	if a.Is4() {
		k := a.As4()
		return k[:]
	}
	k := a.As16()
	return k[:]
}

// elements encodes the range: a start element (carrying the timeout) and an interval-end element.
func (r addrRange) elements(ttl time.Duration) []nftables.SetElement {
	out := []nftables.SetElement{{Key: key(r.start), Timeout: ttl}}
	if !r.toMax {
		out = append(out, nftables.SetElement{Key: key(r.end), IntervalEnd: true})
	}
	return out
}

// mergeRanges sorts ranges and joins overlapping or touching ones; the kernel refuses overlaps in
// an interval set, and access lists from Odoo may well overlap.
func mergeRanges(rs []addrRange) []addrRange {
	if len(rs) == 0 {
		return nil
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].start.Less(rs[j].start) })
	out := []addrRange{rs[0]}
	for _, r := range rs[1:] {
		cur := &out[len(out)-1]
		if cur.toMax {
			continue
		}
		if r.start.Compare(cur.end) <= 0 { // overlaps or touches
			if r.toMax {
				cur.toMax, cur.end = true, netip.Addr{}
			} else if cur.end.Less(r.end) {
				cur.end = r.end
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// intervalElements turns an access list into merged interval elements per family.
func intervalElements(prefixes []netip.Prefix) (v4, v6 []nftables.SetElement, err error) {
	var r4, r6 []addrRange
	for _, p := range prefixes {
		if !p.IsValid() {
			return nil, nil, fmt.Errorf("invalid network %v", p)
		}
		r := rangeOf(p)
		if p.Addr().Is4() {
			r4 = append(r4, r)
		} else {
			r6 = append(r6, r)
		}
	}
	for _, r := range mergeRanges(r4) {
		v4 = append(v4, r.elements(0)...)
	}
	for _, r := range mergeRanges(r6) {
		v6 = append(v6, r.elements(0)...)
	}
	return v4, v6, nil
}

// dedupeIntervals drops ban intervals that overlap an earlier kept one (a /128 inside a banned /64).
func dedupeIntervals(elems []nftables.SetElement) []nftables.SetElement {
	type pair struct {
		r    addrRange
		elem []nftables.SetElement
	}
	var pairs []pair
	for i := 0; i < len(elems); i++ {
		start := netip.AddrFrom16([16]byte(elems[i].Key))
		p := pair{r: addrRange{start: start, toMax: true}, elem: elems[i : i+1]}
		if i+1 < len(elems) && elems[i+1].IntervalEnd {
			p.r = addrRange{start: start, end: netip.AddrFrom16([16]byte(elems[i+1].Key))}
			p.elem = elems[i : i+2]
			i++
		}
		pairs = append(pairs, p)
	}
	// Widest first, so a network wins over an address inside it.
	sort.SliceStable(pairs, func(i, j int) bool {
		return pairs[i].r.start.Less(pairs[j].r.start) ||
			(pairs[i].r.start == pairs[j].r.start && (pairs[i].r.toMax || (!pairs[j].r.toMax && pairs[j].r.end.Less(pairs[i].r.end))))
	})
	var out []nftables.SetElement
	var last *addrRange
	for i := range pairs {
		r := pairs[i].r
		if last != nil && (last.toMax || r.start.Less(last.end)) {
			continue
		}
		out = append(out, pairs[i].elem...)
		last = &pairs[i].r
	}
	return out
}

// entriesFrom reads ban entries back from a set dump. Interval dumps carry start and end elements
// in no promised order, so ends are matched to starts after sorting.
func entriesFrom(elems []nftables.SetElement, interval bool) []security.BanEntry {
	var out []security.BanEntry
	if !interval {
		for _, e := range elems {
			a, ok := netip.AddrFromSlice(e.Key)
			if !ok {
				continue
			}
			out = append(out, security.BanEntry{Prefix: netip.PrefixFrom(a, a.BitLen()), TTL: ttlOf(e)})
		}
		return out
	}
	var starts []nftables.SetElement
	var ends []netip.Addr
	for _, e := range elems {
		a, ok := netip.AddrFromSlice(e.Key)
		if !ok {
			continue
		}
		if e.IntervalEnd {
			ends = append(ends, a)
		} else {
			starts = append(starts, e)
		}
	}
	sort.Slice(ends, func(i, j int) bool { return ends[i].Less(ends[j]) })
	for _, s := range starts {
		a, _ := netip.AddrFromSlice(s.Key)
		bits := 0
		i := sort.Search(len(ends), func(i int) bool { return a.Less(ends[i]) })
		if i < len(ends) {
			bits = prefixBits(a, ends[i])
		}
		out = append(out, security.BanEntry{Prefix: netip.PrefixFrom(a, bits), TTL: ttlOf(s)})
	}
	return out
}

// prefixBits finds the prefix length whose range is exactly [start, end), or the full length.
func prefixBits(start, end netip.Addr) int {
	for bits := start.BitLen(); bits >= 0; bits-- {
		p := netip.PrefixFrom(start, bits)
		if p.Masked().Addr() != start {
			break
		}
		if r := rangeOf(p); !r.toMax && r.end == end {
			return bits
		}
	}
	return start.BitLen()
}

// ttlOf is the element's time left; kernels that do not report it give its full timeout.
func ttlOf(e nftables.SetElement) time.Duration {
	if e.Expires > 0 {
		return e.Expires
	}
	return e.Timeout
}
