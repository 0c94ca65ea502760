package ami

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"testing"
	"time"
)

// callTranscripts are the recorded calls: the traffic an agent reads all day.
var callTranscripts = []string{
	"02-originate-local-call.txt",
	"05c-sip-call-101-to-ext-100.txt",
	"05d-sip-click-to-call-originate-pjsip-102.txt",
	"07-mixmonitor-call.txt",
	"08-userevent.txt",
}

// benchStream concatenates the call transcripts without their banners, prefixing every ActionID
// with prefix so the client's correlator recognises the replies as its own.
func benchStream(b *testing.B, prefix string) ([]byte, []string, int) {
	var buf bytes.Buffer
	for _, name := range callTranscripts {
		data := readFixture(b, name)
		data = data[bytes.IndexByte(data, '\n')+1:]
		buf.Write(data)
	}
	stream := buf.Bytes()
	var ids []string
	if prefix != "" {
		re := regexp.MustCompile(`ActionID: ([^\r\n]+)`)
		seen := map[string]bool{}
		stream = re.ReplaceAllFunc(stream, func(m []byte) []byte {
			id := prefix + "-A-" + string(m[len("ActionID: "):])
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
			return []byte("ActionID: " + id)
		})
	}
	n := 0
	r := NewReader(bytes.NewReader(stream))
	for {
		_, err := r.ReadMessage()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		n++
	}
	return stream, ids, n
}

// BenchmarkParse frames and parses the recorded call traffic: one op is one pass over all of it.
func BenchmarkParse(b *testing.B) {
	stream, _, n := benchStream(b, "")
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		r := NewReader(bytes.NewReader(stream))
		for {
			if _, err := r.ReadMessage(); err != nil {
				break
			}
		}
	}
	reportPerMessage(b, n, start)
}

// BenchmarkParseAndCorrelate adds what the client does with each message: ActionID correlation
// against pending actions (responses, list items, OriginateResponse) and the events queue.
func BenchmarkParseAndCorrelate(b *testing.B) {
	c := NewClient(ClientConfig{QueueSize: 1 << 20})
	stream, ids, n := benchStream(b, c.prefix)
	s := &session{role: roleEvents}
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for _, id := range ids {
			c.pending[id] = &pending{sess: s, originate: true, responded: make(chan struct{}), done: make(chan struct{})}
		}
		r := NewReader(bytes.NewReader(stream))
		for {
			m, err := r.ReadMessage()
			if err != nil {
				break
			}
			c.route(s, m)
		}
		for len(c.events) > 0 {
			<-c.events
		}
	}
	reportPerMessage(b, n, start)
}

func reportPerMessage(b *testing.B, n int, start time.Time) {
	elapsed := time.Since(start)
	b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(n*b.N), "ns/msg")
}
