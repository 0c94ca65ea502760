package security

import (
	"os"
	"testing"

	"github.com/odoopbx/odoopbx/internal/ami"
	"github.com/odoopbx/odoopbx/internal/ami/amitest"
)

// readFixture parses a recorded AMI stream with the agent's own reader.
func readFixture(t testing.TB, name string) []*ami.Message {
	t.Helper()
	return amitest.FixtureMessages(t, name)
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
