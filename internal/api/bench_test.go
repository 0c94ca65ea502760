package api

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
)

// BenchmarkJobToOriginate measures a click-to-call from the agent's side: the time from Odoo's
// POST of an asterisk.manager_action Originate until the action's bytes arrive at the far end of
// the (fake) AMI socket, over plain HTTP on loopback. It reports p50 and p99.
func BenchmarkJobToOriginate(b *testing.B) {
	h := newHarness(b, func(c *Config) { c.Workers, c.Queue = 16, 1000 })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	agentSide, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer agentSide.Close()
	asteriskSide, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer asteriskSide.Close()
	h.fake.Wire = agentSide
	arrived := make(chan string, 1024)
	go func() {
		r := ami.NewReader(asteriskSide)
		for {
			m, err := r.ReadMessage()
			if err != nil {
				close(arrived)
				return
			}
			arrived <- m.ActionID()
		}
	}()

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprintf("bench-%d", i)
		body := `{"fun":"asterisk.manager_action","args":[{"Action":"Originate","ActionID":"` + id +
			`","Channel":"Local/100@test","Application":"Wait","Data":"1","ChannelId":"odoo-11111111-aaaa","OtherChannelId":"odoo-11111111-bbbb"}]}`
		start := time.Now()
		r := doPost(b, client, h.url, "tok-current", "application/json", strings.NewReader(body))
		if r.status != 200 {
			b.Fatalf("POST: %d %s", r.status, r.raw)
		}
		for got := range arrived {
			if got == id {
				break
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds()), "p99-µs")
}
