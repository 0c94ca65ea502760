package sim

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// scheduler is the simulator's virtual clock: every step of every simulated call is an item due at
// a virtual time. Items run one at a time in (time, insertion) order, so a seed gives the same
// sequence whatever the machine's speed. In real-time mode a goroutine maps virtual time onto the
// wall clock (scaled); in manual mode only Advance moves time, which lets tests run in milliseconds.
type scheduler struct {
	mu      sync.Mutex
	now     time.Time // virtual
	items   itemHeap
	seq     uint64
	wake    chan struct{}
	running sync.Mutex // held while an item runs, so Advance and the loop never run items together
}

type item struct {
	at  time.Time
	seq uint64
	fn  func()
}

type itemHeap []*item

func (h itemHeap) Len() int { return len(h) }
func (h itemHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h itemHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *itemHeap) Push(x any)   { *h = append(*h, x.(*item)) }
func (h *itemHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return it
}

func newScheduler(start time.Time) *scheduler {
	return &scheduler{now: start, wake: make(chan struct{}, 1)}
}

// Now is the current virtual time.
func (s *scheduler) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now
}

// after schedules fn at now+d (virtual). It may be called from inside a running item.
func (s *scheduler) after(d time.Duration, fn func()) {
	s.mu.Lock()
	s.seq++
	heap.Push(&s.items, &item{at: s.now.Add(d), seq: s.seq, fn: fn})
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// pending is the number of scheduled items.
func (s *scheduler) pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)
}

// popDue removes and returns the earliest item due at or before limit, moving the clock to it.
func (s *scheduler) popDue(limit time.Time) *item {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.items) == 0 || s.items[0].at.After(limit) {
		return nil
	}
	it := heap.Pop(&s.items).(*item)
	if it.at.After(s.now) {
		s.now = it.at
	}
	return it
}

// advance runs every item due within d of now, including items those items schedule, then sets
// the clock to now+d.
func (s *scheduler) advance(d time.Duration) {
	s.running.Lock()
	defer s.running.Unlock()
	target := s.Now().Add(d)
	for {
		it := s.popDue(target)
		if it == nil {
			break
		}
		it.fn()
	}
	s.mu.Lock()
	if target.After(s.now) {
		s.now = target
	}
	s.mu.Unlock()
}

// run drives the clock in real time until ctx is done: virtual time moves scale times faster than
// the wall clock. When the loop falls behind it runs late items at once (their virtual time stays
// exact, so the sequence does not change).
func (s *scheduler) run(ctx context.Context, scale float64) {
	realStart := time.Now()
	virtStart := s.Now()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		virtNow := virtStart.Add(time.Duration(float64(time.Since(realStart)) * scale))
		s.running.Lock()
		ran := 0
		for ran < 4096 {
			it := s.popDue(virtNow)
			if it == nil {
				break
			}
			it.fn()
			ran++
		}
		s.mu.Lock()
		if virtNow.After(s.now) {
			s.now = virtNow
		}
		var wait time.Duration = time.Hour
		if len(s.items) > 0 {
			wait = time.Duration(float64(s.items[0].at.Sub(virtNow)) / scale)
		}
		s.mu.Unlock()
		s.running.Unlock()
		if ran == 4096 {
			wait = 0
		}
		if wait <= 0 {
			select {
			case <-ctx.Done():
				return
			default:
			}
			continue
		}
		if wait < time.Millisecond {
			wait = time.Millisecond
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
			timer.Stop() // Go 1.23+: no stale tick is delivered after Stop
		case <-timer.C:
		}
	}
}
