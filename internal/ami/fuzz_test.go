package ami

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzReader feeds arbitrary bytes to the framer: it must never panic, never return a header with
// an LF or a trailing CR (a CR inside a line is data, not framing), and always reach EOF.
func FuzzReader(f *testing.F) {
	for _, p := range fixturePaths(f, "*.txt") {
		b := readFixture(f, p[len(fixtureDir)+1:])
		if len(b) > 8192 {
			b = b[:8192]
		}
		f.Add(b)
	}
	f.Add([]byte("Response: Follows\r\nPrivilege: Command\r\nraw\n--END COMMAND--\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReaderLimits(bytes.NewReader(data), Limits{MaxLineBytes: 256, MaxMessageBytes: 4096, MaxHeaders: 64})
		for i := 0; i <= len(data)+1; i++ {
			m, err := r.ReadMessage()
			if errors.Is(err, io.EOF) {
				return
			}
			var fe *FrameError
			if err != nil && !errors.As(err, &fe) {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			if m != nil {
				for _, h := range m.Headers {
					if bytes.ContainsAny([]byte(h.Name+h.Value), "\n") || bytes.HasSuffix([]byte(h.Value), []byte("\r")) {
						t.Fatalf("header kept CR/LF: %q", h)
					}
				}
			}
		}
		t.Fatal("reader did not reach EOF")
	})
}

// FuzzActionFromJSON: arbitrary JSON never panics, and whatever it accepts encodes to wire bytes
// that parse back to the same headers once validated.
func FuzzActionFromJSON(f *testing.F) {
	f.Add([]byte(`{"Action":"Originate","Variable":["A=1","B=2"],"Async":true,"Timeout":3000}`))
	f.Add([]byte(`{"Action":"Ping","X":"a\r\nAction: Command"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ActionFromJSON(data)
		if err != nil || ValidateAction(m) != nil {
			return
		}
		back, err := ParseMessage(m.AppendWire(nil))
		if err != nil {
			t.Fatal(err)
		}
		if back.String() != m.String() {
			t.Fatalf("round trip: %q vs %q", back, m)
		}
	})
}
