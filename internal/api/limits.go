package api

import (
	"net/netip"
	"sync"
	"time"
)

// Auth lockout of contract §4.1: more than authMaxFailures failures within authWindow from one
// IP lock it out for authLockout.
const (
	authMaxFailures = 10
	authWindow      = 60 * time.Second
	authLockout     = 5 * time.Minute
	// authMaxTracked bounds the table, so a spray from many addresses cannot grow it without end.
	authMaxTracked = 65536
)

// authLimiter counts authentication failures per source IP.
type authLimiter struct {
	mu        sync.Mutex
	entries   map[netip.Addr]*authEntry
	lastSweep time.Time
}

type authEntry struct {
	failures    []time.Time // within the window, oldest first
	lockedUntil time.Time
}

func newAuthLimiter() *authLimiter {
	return &authLimiter{entries: map[netip.Addr]*authEntry{}}
}

// locked reports whether ip is locked out at now.
func (l *authLimiter) locked(ip netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.entries[ip]
	return ok && now.Before(e.lockedUntil)
}

// fail records a failure and reports whether it locked ip out.
func (l *authLimiter) fail(ip netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.entries[ip]
	if !ok {
		if len(l.entries) >= authMaxTracked && now.Sub(l.lastSweep) >= time.Second {
			// A full sweep costs the table's size: at most once a second, so a spray from many
			// addresses cannot make every failure pay for it.
			l.sweep(now)
			l.lastSweep = now
		}
		if len(l.entries) >= authMaxTracked {
			// Still full of live entries: forget one that is not locked out rather than grow.
			for k, v := range l.entries {
				if !now.Before(v.lockedUntil) {
					delete(l.entries, k)
					break
				}
			}
		}
		if len(l.entries) >= authMaxTracked {
			return false // every tracked address is locked out; the security engine still sees the failure
		}
		e = &authEntry{}
		l.entries[ip] = e
	}
	kept := e.failures[:0]
	for _, t := range e.failures {
		if now.Sub(t) < authWindow {
			kept = append(kept, t)
		}
	}
	e.failures = append(kept, now)
	if len(e.failures) > authMaxFailures {
		e.lockedUntil = now.Add(authLockout)
		e.failures = e.failures[:0]
		return true
	}
	return false
}

// sweep drops entries with no recent failure and no lockout; the caller holds mu.
func (l *authLimiter) sweep(now time.Time) {
	for k, e := range l.entries {
		recent := len(e.failures) > 0 && now.Sub(e.failures[len(e.failures)-1]) < authWindow
		if !recent && !now.Before(e.lockedUntil) {
			delete(l.entries, k)
		}
	}
}

// Job id de-duplication (contract §4.2): a repeat within dedupWindow gets the first reply back.
const (
	dedupWindow = 10 * time.Minute
	// dedupMaxEntries bounds memory; past it the oldest ids are forgotten early.
	dedupMaxEntries = 100000
)

// dedupEntry is the first request of a job id: ready closes once its reply is known.
type dedupEntry struct {
	id      string
	created time.Time
	ready   chan struct{}
	status  int
	reply   []byte // nil when the first request was refused (queue full)
}

type dedupCache struct {
	mu      sync.Mutex
	entries map[string]*dedupEntry
	order   []*dedupEntry // by creation, for expiry
}

func newDedupCache() *dedupCache {
	return &dedupCache{entries: map[string]*dedupEntry{}}
}

// reserve returns the entry for id and whether this request is the first within the window.
func (d *dedupCache) reserve(id string, now time.Time) (*dedupEntry, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expire(now)
	if e, ok := d.entries[id]; ok {
		return e, false
	}
	e := &dedupEntry{id: id, created: now, ready: make(chan struct{})}
	d.entries[id] = e
	d.order = append(d.order, e)
	return e, true
}

// settle records the first reply; repeats waiting on the entry get it.
func (d *dedupCache) settle(e *dedupEntry, status int, reply []byte) {
	d.mu.Lock()
	e.status, e.reply = status, reply
	d.mu.Unlock()
	close(e.ready)
}

// drop forgets a first request that was refused, so a retry may run.
func (d *dedupCache) drop(e *dedupEntry) {
	d.mu.Lock()
	if d.entries[e.id] == e {
		delete(d.entries, e.id)
	}
	d.mu.Unlock()
	close(e.ready)
}

// result returns the settled reply of e; ok is false when it was dropped.
func (d *dedupCache) result(e *dedupEntry) (status int, reply []byte, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return e.status, e.reply, e.reply != nil
}

// expire drops entries past the window, and the oldest beyond the size bound; caller holds mu.
func (d *dedupCache) expire(now time.Time) {
	n := 0
	for n < len(d.order) && (now.Sub(d.order[n].created) >= dedupWindow || len(d.order)-n > dedupMaxEntries) {
		if e := d.order[n]; d.entries[e.id] == e {
			delete(d.entries, e.id)
		}
		d.order[n] = nil
		n++
	}
	// Reslicing is amortised: append reallocates with only the live tail once capacity runs out.
	d.order = d.order[n:]
}

func (d *dedupCache) len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.entries)
}
