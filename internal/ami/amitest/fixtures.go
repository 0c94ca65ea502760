package amitest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/odoopbx/odoopbx/internal/ami"
)

// FixtureDir finds the recorded transcripts: $ODOOPBX_FIXTURES, else shared/fixtures/ami beside
// the repository (found by walking up from the working directory to go.mod).
func FixtureDir() (string, error) {
	if dir := os.Getenv("ODOOPBX_FIXTURES"); dir != "" {
		return dir, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			fixtures := filepath.Join(dir, "..", "shared", "fixtures", "ami")
			if _, err := os.Stat(fixtures); err != nil {
				return "", fmt.Errorf("amitest: no recorded transcripts at %s: the shared/ folder must sit beside the repository", fixtures)
			}
			return fixtures, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("amitest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// ReadFixture returns the bytes of one recorded file ("05c-sip-call-101-to-ext-100.txt").
func ReadFixture(t testing.TB, name string) []byte {
	t.Helper()
	dir, err := FixtureDir()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FixtureNames lists the recorded files matching a glob pattern ("*.sent.txt"), sorted.
func FixtureNames(t testing.TB, pattern string) []string {
	t.Helper()
	dir, err := FixtureDir()
	if err != nil {
		t.Fatal(err)
	}
	paths, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no recorded transcript matches %s in %s", pattern, dir)
	}
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = filepath.Base(p)
	}
	return names
}

// Transcript parses a recorded byte stream (a server .txt, banner included, or a .sent.txt) with
// the agent's own reader.
func Transcript(data []byte) ([]*ami.Message, error) {
	r := ami.NewReader(strings.NewReader(string(data)))
	if strings.HasPrefix(string(data), "Asterisk Call Manager/") {
		if _, err := r.ReadBanner(); err != nil {
			return nil, err
		}
	}
	var out []*ami.Message
	for {
		m, err := r.ReadMessage()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
}

// FixtureMessages parses one recorded file into messages.
func FixtureMessages(t testing.TB, name string) []*ami.Message {
	t.Helper()
	msgs, err := Transcript(ReadFixture(t, name))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return msgs
}

// FixtureByPrefix parses the one server-to-client transcript whose name starts with prefix
// ("05c-"), leaving out the .sent and .client files.
func FixtureByPrefix(t testing.TB, prefix string) []*ami.Message {
	t.Helper()
	var found []string
	for _, n := range FixtureNames(t, prefix+"*.txt") {
		if !strings.Contains(n, ".sent.") && !strings.Contains(n, ".client.") {
			found = append(found, n)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one recorded transcript named %s*, found %v", prefix, found)
	}
	return FixtureMessages(t, found[0])
}

// FixtureEvents is FixtureByPrefix keeping only the events.
func FixtureEvents(t testing.TB, prefix string) []*ami.Message {
	t.Helper()
	var out []*ami.Message
	for _, m := range FixtureByPrefix(t, prefix) {
		if m.Kind() == ami.KindEvent {
			out = append(out, m)
		}
	}
	return out
}
