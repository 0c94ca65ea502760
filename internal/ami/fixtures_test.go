package ami

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// fixtureDir is the recorded Asterisk 22.10.1 traffic shipped beside the repository.
const fixtureDir = "../../../shared/fixtures/ami"

func fixturePaths(t testing.TB, pattern string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(fixtureDir, pattern))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no fixtures match %s in %s: the shared/ folder must sit beside the repository", pattern, fixtureDir)
	}
	sort.Strings(paths)
	return paths
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// parseStream reads the banner and every message of a server-to-client fixture.
func parseStream(t testing.TB, data []byte) (string, []*Message) {
	t.Helper()
	r := NewReader(strings.NewReader(string(data)))
	banner, err := r.ReadBanner()
	if err != nil {
		t.Fatalf("banner: %v", err)
	}
	var msgs []*Message
	for {
		m, err := r.ReadMessage()
		if errors.Is(err, io.EOF) {
			return banner, msgs
		}
		if err != nil {
			t.Fatalf("message %d: %v", len(msgs)+1, err)
		}
		msgs = append(msgs, m)
	}
}

// parseSent reads a client-to-server fixture (actions, no banner).
func parseSent(t testing.TB, data []byte) []*Message {
	t.Helper()
	r := NewReader(strings.NewReader(string(data)))
	var msgs []*Message
	for {
		m, err := r.ReadMessage()
		if errors.Is(err, io.EOF) {
			return msgs
		}
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
}
