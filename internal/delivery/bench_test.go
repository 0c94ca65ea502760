package delivery_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/delivery"
	"github.com/odoopbx/odoopbx/internal/odoo"
	"github.com/odoopbx/odoopbx/internal/odoo/odootest"
	"github.com/odoopbx/odoopbx/internal/spool"
)

// BenchmarkThroughput measures items/s from Enqueue to the fake Odoo over HTTP: 64 lanes, 8
// workers, 4 producers, each item its own fsync'd append (group-committed).
func BenchmarkThroughput(b *testing.B) {
	for _, d := range []time.Duration{0, 50 * time.Millisecond} {
		b.Run("batch-delay="+d.String(), func(b *testing.B) { benchThroughput(b, d) })
	}
}

func benchThroughput(b *testing.B, batchDelay time.Duration) {
	srv := odootest.Start(b, odootest.Options{})
	client, err := odoo.NewJSONRPC(odoo.Options{URL: srv.URL(), DB: srv.DB(), User: srv.User(), Password: srv.Password()})
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	sp, err := spool.Open(b.TempDir(), spool.Options{MaxBatchDelay: batchDelay})
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	eng := delivery.New(delivery.Config{Spool: sp, Odoo: client, MaxParallel: 8, Logger: slog.New(slog.DiscardHandler)})
	if err := eng.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer eng.Stop(context.Background())
	if err := client.Login(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	const producers = 4
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for i := p; i < b.N; i += producers {
				it := delivery.Item{Lane: fmt.Sprintf("lane-%d", i%64), Model: model, Method: method,
					Args: json.RawMessage(fmt.Sprintf(`[{"n":%d,"Event":"Newchannel","Linkedid":"1700000000.%d"}]`, i, i%64))}
				if err := eng.Enqueue(context.Background(), it); err != nil {
					b.Error(err)
					return
				}
			}
		}(p)
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := srv.WaitCalls(ctx, b.N); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "items/s")
}

// instantOdoo answers every call at once and records when each item reached it.
type instantOdoo struct {
	mu      sync.Mutex
	arrived map[int]time.Time
	done    chan struct{}
	want    int
}

func (o *instantOdoo) ExecuteKw(ctx context.Context, m, meth string, args []any, kw map[string]any) (json.RawMessage, error) {
	now := time.Now()
	var a struct{ N int }
	_ = json.Unmarshal(args[0].(json.RawMessage), &a)
	n := a.N
	o.mu.Lock()
	o.arrived[n] = now
	if len(o.arrived) == o.want {
		close(o.done)
	}
	o.mu.Unlock()
	return json.RawMessage("true"), nil
}

// BenchmarkOverhead measures the engine's own latency per item, with an Odoo that answers
// instantly in-process: from the call to Enqueue until the engine calls Odoo (append and fsync
// included), and from Enqueue's return (the item is durable) until the call (scheduling only).
func BenchmarkOverhead(b *testing.B) {
	sp, err := spool.Open(b.TempDir(), spool.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	od := &instantOdoo{arrived: map[int]time.Time{}, done: make(chan struct{}), want: b.N}
	eng := delivery.New(delivery.Config{Spool: sp, Odoo: od, MaxParallel: 8, Logger: slog.New(slog.DiscardHandler)})
	if err := eng.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer eng.Stop(context.Background())
	called := make([]time.Time, b.N)
	returned := make([]time.Time, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		it := delivery.Item{Lane: fmt.Sprintf("lane-%d", i%16), Model: model, Method: method,
			Args: json.RawMessage(fmt.Sprintf(`[{"n":%d}]`, i))}
		called[i] = time.Now()
		if err := eng.Enqueue(context.Background(), it); err != nil {
			b.Fatal(err)
		}
		returned[i] = time.Now()
	}
	select {
	case <-od.done:
	case <-time.After(5 * time.Minute):
		b.Fatal("not every item was delivered")
	}
	b.StopTimer()
	total := make([]time.Duration, b.N)
	sched := make([]time.Duration, b.N)
	od.mu.Lock()
	for i := 0; i < b.N; i++ {
		total[i] = od.arrived[i].Sub(called[i])
		sched[i] = od.arrived[i].Sub(returned[i])
	}
	od.mu.Unlock()
	b.ReportMetric(pct(total, 50), "enqueue-to-call-p50-µs")
	b.ReportMetric(pct(total, 99), "enqueue-to-call-p99-µs")
	b.ReportMetric(pct(sched, 50), "durable-to-call-p50-µs")
	b.ReportMetric(pct(sched, 99), "durable-to-call-p99-µs")
}

func pct(d []time.Duration, p int) float64 {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := len(s) * p / 100
	if i >= len(s) {
		i = len(s) - 1
	}
	return float64(s[i].Microseconds())
}
