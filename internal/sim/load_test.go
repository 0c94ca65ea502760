package sim

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
)

// TestManyConcurrentSessions: many sessions read the same traffic while others run actions and
// the clock moves; every events session gets every call event.
func TestManyConcurrentSessions(t *testing.T) {
	s := startSim(t, func(c *Config) { c.CallsPerSecond = 10; c.Attackers = 2 })
	const readers = 24
	clients := make([]*client, readers)
	for i := range clients {
		clients[i] = dial(t, s)
		clients[i].login("call")
		clients[i].drain("start")
	}
	counts := make([]int, readers)
	var wg sync.WaitGroup
	stepDone := make([]chan int, readers)
	for i := range clients {
		stepDone[i] = make(chan int)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for step := range stepDone[i] {
				c := clients[i]
				id := "s" + strconv.Itoa(step)
				if _, err := ami.NewMessage("Action", "Ping", "ActionID", id).WriteTo(c.conn); err != nil {
					t.Error(err)
					return
				}
				for {
					m, err := c.tryRead(10 * time.Second)
					if err != nil {
						t.Errorf("reader %d: %v", i, err)
						return
					}
					if m.ActionID() == id {
						break
					}
					counts[i]++
				}
			}
		}(i)
	}
	// Action sessions hammer the shared state while the clock runs.
	actionCtx, stopActions := context.WithCancel(context.Background())
	var actionsWG sync.WaitGroup
	for i := 0; i < 4; i++ {
		c := dial(t, s)
		c.login("off")
		actionsWG.Add(1)
		go func(i int, c *client) {
			defer actionsWG.Done()
			for n := 0; actionCtx.Err() == nil; n++ {
				id := strconv.Itoa(n)
				switch n % 3 {
				case 0:
					c.send("Action", "CoreShowChannels", "ActionID", id)
					if _, err := readUntilErr(c, func(m *ami.Message) bool { return m.Event() == "CoreShowChannelsComplete" }); err != nil {
						t.Error(err)
						return
					}
				case 1:
					c.send("Action", "Originate", "ActionID", id, "Channel", "PJSIP/10"+strconv.Itoa(1+i), "Context", "from-internal", "Exten", "100", "Async", "true")
					if _, err := readUntilErr(c, func(m *ami.Message) bool { return m.ActionID() == id }); err != nil {
						t.Error(err)
						return
					}
				default:
					c.send("Action", "Command", "ActionID", id, "Command", "core show channels")
					if _, err := readUntilErr(c, func(m *ami.Message) bool { return m.ActionID() == id }); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}(i, c)
	}
	for step := 0; step < 20; step++ {
		s.Advance(time.Second)
		for i := range stepDone {
			stepDone[i] <- step
		}
	}
	stopActions()
	actionsWG.Wait()
	for i := range stepDone {
		close(stepDone[i])
	}
	wg.Wait()
	if counts[0] < 500 {
		t.Fatalf("only %d call events in 20 s at 10 calls/s", counts[0])
	}
	for i, n := range counts {
		if n != counts[0] {
			t.Errorf("reader %d got %d events, reader 0 got %d", i, n, counts[0])
		}
	}
	if d := s.Stats().SessionsDropped; d != 0 {
		t.Errorf("%d sessions dropped", d)
	}
}

func readUntilErr(c *client, match func(*ami.Message) bool) (*ami.Message, error) {
	for {
		m, err := c.tryRead(10 * time.Second)
		if err != nil {
			return nil, err
		}
		if match(m) {
			return m, nil
		}
	}
}

// TestSlowReaderIsDroppedAndNeverBlocksTheOthers: a session that stops reading is dropped (as
// Asterisk drops a session past writetimeout) while the generator and a live session go on.
func TestSlowReaderIsDroppedAndNeverBlocksTheOthers(t *testing.T) {
	s := startSim(t, func(c *Config) {
		c.CallsPerSecond = 40
		c.SessionQueue = 2048
		c.WriteTimeout = 200 * time.Millisecond
	})
	slow := dial(t, s)
	slow.login("on")
	live := dial(t, s)
	live.login("on")
	live.drain("start")
	// Small steps keep each burst well under the live session's queue; the slow one's socket
	// buffers fill, then its queue, and it goes.
	for step := 0; step < 4000 && s.Stats().SessionsDropped == 0; step++ {
		s.Advance(50 * time.Millisecond) // must return even though slow never reads
		live.drain("step" + strconv.Itoa(step))
	}
	if s.Stats().SessionsDropped == 0 {
		t.Fatal("the session that never reads was not dropped")
	}
	// The slow client finds its connection closed after what was already sent.
	_ = slow.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err := io.Copy(io.Discard, slow.conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the dropped session is still open")
	}
	s.Advance(50 * time.Millisecond)
	if got := live.drain("after"); len(got) == 0 {
		t.Fatal("the live session stopped receiving events")
	}
	if n := s.Stats().Sessions; n != 1 {
		t.Fatalf("%d sessions left, want the live one", n)
	}
}

// TestRealTimeClock runs the clock on its own (scaled): calls finish without Advance.
func TestRealTimeClock(t *testing.T) {
	done := make(chan CallSummary, 16)
	s := startSim(t, func(c *Config) {
		c.ManualClock = false
		c.TimeScale = 500
		c.CallsPerSecond = 2
		c.OnCall = func(cs CallSummary) {
			select {
			case done <- cs:
			default:
			}
		}
	})
	select {
	case cs := <-done:
		if cs.Linkedid == "" {
			t.Fatalf("%+v", cs)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no call finished with the clock running")
	}
	if !s.Now().After(testStart) {
		t.Fatal("virtual clock did not move")
	}
}
