package forwarder

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/odoopbx/odoopbx/internal/ami"
	"github.com/odoopbx/odoopbx/internal/ami/amitest"
	"github.com/odoopbx/odoopbx/internal/delivery"
)

type nopEnqueuer struct{}

func (nopEnqueuer) Enqueue(context.Context, ...delivery.Item) error { return nil }

func recordedEvents(b *testing.B) []*ami.Message {
	var all []*ami.Message
	for _, p := range []string{"02-", "05c-", "05d-", "07-", "08-"} {
		all = append(all, amitest.FixtureEvents(b, p)...)
	}
	return all
}

// benchmarkForwarder pushes the recorded calls' events through HandleBatch in batches of 64 (as
// the consumer does when the queue holds several events). One op is one event.
func benchmarkForwarder(b *testing.B, rows string) {
	events := recordedEvents(b)
	f, err := New(Config{Map: loadMap(b, rows), Enqueuer: nopEnqueuer{}, SystemName: "pbx1"})
	if err != nil {
		b.Fatal(err)
	}
	const batch = 64
	buf := make([]*ami.Message, 0, batch)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; {
		buf = buf[:0]
		for len(buf) < batch && i < b.N {
			buf = append(buf, events[i%len(events)])
			i++
		}
		f.HandleBatch(ctx, buf)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(f.enqueued.Load())/float64(b.N), "items/event")
}

// The default map of contract §3.7: most events match no row (Local/ channels, other VarSets).
func BenchmarkForwarderDefaultMap(b *testing.B) { benchmarkForwarder(b, defaultRows) }

// Worst case: every event matches one always-true row, so every event is encoded and enqueued.
func BenchmarkForwarderEveryEventMatched(b *testing.B) {
	var events []*ami.Message
	for _, p := range []string{"02-", "05c-", "05d-", "07-", "08-"} {
		events = append(events, amitest.FixtureEvents(b, p)...)
	}
	benchmarkForwarder(b, catchAllRows(events))
}

// Memory held for 1,000 concurrent calls of two channels each: the Uniqueid → Linkedid lane
// table plus the active-calls view, after Newchannel and a few state events per channel.
func BenchmarkStateAt1000Calls(b *testing.B) {
	const calls = 1000
	var msgs []*ami.Message
	for c := 0; c < calls; c++ {
		linked := fmt.Sprintf("1795627%03d.%d", c%1000, c*2)
		for leg := 0; leg < 2; leg++ {
			uid := fmt.Sprintf("1795627%03d.%d", c%1000, c*2+leg)
			channel := fmt.Sprintf("PJSIP/%d-%08x", 100+leg, c*2+leg)
			for _, ev := range []string{"Newchannel", "Newstate", "NewConnectedLine"} {
				msgs = append(msgs, ami.NewMessage("Event", ev, "Privilege", "call,all", "Channel", channel,
					"ChannelStateDesc", "Up", "CallerIDNum", "101", "CallerIDName", "Ext 101",
					"Uniqueid", uid, "Linkedid", linked))
			}
		}
	}
	rows := loadMap(b, "[]")
	b.ReportAllocs()
	var perCall float64
	for i := 0; i < b.N; i++ {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		f, err := New(Config{Map: rows, Enqueuer: nopEnqueuer{}, SystemName: "pbx1", RecentEvents: 1})
		if err != nil {
			b.Fatal(err)
		}
		for start := 0; start < len(msgs); start += 64 {
			f.HandleBatch(context.Background(), msgs[start:min(start+64, len(msgs))])
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if n, _ := f.lanes.size(); n != 2*calls || f.view.callCount() != calls {
			b.Fatalf("table %d channels, %d calls", n, f.view.callCount())
		}
		perCall = float64(after.HeapAlloc-before.HeapAlloc) / calls
		runtime.KeepAlive(f)
	}
	b.ReportMetric(perCall, "heap-bytes/call")
	b.ReportMetric(perCall*calls/1024, "heap-KiB/1000calls")
}
