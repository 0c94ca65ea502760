package sim

import (
	"io"
	"net"
	"testing"
	"time"
)

// BenchmarkGenerator measures generated traffic at 300 calls per virtual second delivered to two
// reading sessions and one that never reads (which the generator must not wait for). One
// iteration is one virtual second; events/s is what the sessions were sent per wall second.
func BenchmarkGenerator(b *testing.B) {
	s := startSim(b, func(c *Config) { c.CallsPerSecond = 300; c.SessionQueue = 1 << 16 })
	for i := 0; i < 2; i++ {
		c := dial(b, s)
		c.login("on")
		go func(conn net.Conn) { _, _ = io.Copy(io.Discard, conn) }(c.conn)
	}
	slow := dial(b, s)
	slow.login("on")
	before := s.Stats().EventsSent
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		s.Advance(time.Second)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	sent := s.Stats().EventsSent - before
	b.ReportMetric(float64(sent)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(s.Stats().CallsFinished)/float64(b.N), "calls/vsec")
}
