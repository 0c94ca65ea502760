package security

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/odoopbx/odoopbx/internal/ami"
)

const fixtureDir = "/work/shared/fixtures/ami"

// readFixture splits a recorded AMI stream into messages: the banner line is skipped, messages end
// at a blank CRLF line, and each line splits at the first ": " (values may contain ": ").
// A test-only reader; the agent's real parser lives in package ami.
func readFixture(t testing.TB, name string) []*ami.Message {
	t.Helper()
	path := filepath.Join(fixtureDir, name)
	if dir := os.Getenv("ODOOPBX_FIXTURES"); dir != "" {
		path = filepath.Join(dir, "ami", name)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("fixture %s not available: %v", name, err)
	}
	if i := bytes.Index(data, []byte("\r\n")); i >= 0 && bytes.HasPrefix(data, []byte("Asterisk Call Manager/")) {
		data = data[i+2:]
	}
	var out []*ami.Message
	for _, block := range strings.Split(string(data), "\r\n\r\n") {
		if strings.TrimSpace(block) == "" {
			continue
		}
		m := &ami.Message{}
		for _, line := range strings.Split(block, "\r\n") {
			name, value, ok := strings.Cut(line, ": ")
			if !ok {
				name, value, _ = strings.Cut(line, ":")
			}
			m.Add(name, strings.TrimRight(value, "\n"))
		}
		out = append(out, m)
	}
	return out
}

// securityOnly keeps the messages whose event the engine reads.
func securityOnly(ms []*ami.Message) []*ami.Message {
	var out []*ami.Message
	for _, m := range ms {
		if _, ok, _ := Classify(m); ok {
			out = append(out, m)
		}
	}
	return out
}

func messageOf(pairs ...string) *ami.Message { return ami.NewMessage(pairs...) }

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

func statSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}
