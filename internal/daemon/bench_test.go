package daemon_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/config"
	"github.com/odoopbx/odoopbx/internal/daemon"
	"github.com/odoopbx/odoopbx/internal/demo"
	"github.com/odoopbx/odoopbx/internal/odoo/odootest"
	"github.com/odoopbx/odoopbx/internal/sim"
)

// BenchmarkPipeline drives the whole agent with the simulator as load generator: AMI bytes in,
// through the events map, the spool and the delivery lanes, to a JSON-RPC Odoo that records every
// call. The simulator runs 40 calls/s at 10x speed: about 1,000 concurrent calls during the measurement (the metric says how many).
// It reports AMI events/s, deliveries/s, the agent's latency per delivered event (receive to Odoo's
// arrival, p50/p99) and the heap with that many calls up. One run takes ~15 s: use -benchtime=1x.
func BenchmarkPipeline(b *testing.B) {
	for range b.N {
		runPipeline(b)
	}
}

func runPipeline(b *testing.B) {
	odoo := odootest.Start(b, odootest.Options{})
	odoo.Handle("asterisk_plus.server", "agent_get_config", func(odootest.Call) odootest.Response {
		var m map[string]any
		_ = json.Unmarshal(demo.DefaultMap, &m)
		return odootest.Response{Result: m}
	})
	pbx, err := sim.New(sim.Config{
		Listen:         "127.0.0.1:0",
		Users:          map[string]string{"odoo": "odoo-secret"},
		CallsPerSecond: 40,
		TimeScale:      10,
		Seed:           7,
		Logger:         slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := pbx.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer pbx.Stop(context.Background())

	dir := b.TempDir()
	cfg := config.Default()
	cfg.StateDir, cfg.Spool.Dir = dir, filepath.Join(dir, "spool")
	host, port := splitHostPort(b, pbx.Addr())
	cfg.AMI.Host, cfg.AMI.Port = host, port
	cfg.AMI.User, cfg.AMI.Secret = "odoo", "odoo-secret"
	cfg.Odoo.URL, cfg.Odoo.DB, cfg.Odoo.User, cfg.Odoo.Password = odoo.URL(), odoo.DB(), odoo.User(), config.Secret(odoo.Password())
	ag, err := daemon.New(daemon.Options{Config: cfg, Logger: slog.New(slog.DiscardHandler), NoFirewall: true})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()

	time.Sleep(5 * time.Second) // warm up to steady state
	calls0, events0, t0 := len(odoo.Calls()), ag.AMI.Stats().EventsReceived, time.Now()
	time.Sleep(8 * time.Second)
	calls1, events1, t1 := len(odoo.Calls()), ag.AMI.Stats().EventsReceived, time.Now()
	active := pbx.Stats().ActiveCalls
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	dropped := ag.AMI.Stats().EventsDropped
	cancel()
	<-done

	var lat []time.Duration
	for _, c := range odoo.Calls()[calls0:calls1] {
		ev, ok := c.Args[0].(map[string]any)
		if !ok {
			continue
		}
		if et, ok := ev["EventTime"].(float64); ok {
			lat = append(lat, c.At.Sub(time.Unix(0, int64(et*1e9))))
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	secs := t1.Sub(t0).Seconds()
	b.ReportMetric(float64(events1-events0)/secs, "ami_events/s")
	b.ReportMetric(float64(calls1-calls0)/secs, "deliveries/s")
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50_µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99_µs")
	}
	b.ReportMetric(float64(active), "concurrent_calls")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap_MiB")
	b.ReportMetric(float64(dropped), "dropped")
}
