package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

var (
	mdLink    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	mdHeading = regexp.MustCompile("(?m)^#{1,6} +(.+?) *$")
	mdFence   = regexp.MustCompile("(?ms)^```.*?^```")
)

// githubAnchor is the id GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteRune('-')
		case r > 127 && (unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.IsMark(r)):
			b.WriteRune(r) // GitHub keeps letters and digits of any script, drops symbols such as →
		}
	}
	return b.String()
}

func anchorsOf(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := mdFence.ReplaceAllString(string(b), "") // "# comment" lines in code blocks are not headings
	out := map[string]bool{}
	for _, m := range mdHeading.FindAllStringSubmatch(text, -1) {
		h := strings.ReplaceAll(m[1], "`", "")
		out[githubAnchor(h)] = true
	}
	return out
}

// TestDocLinks checks every relative link in docs/ and in the top-level README.md points at an
// existing file and heading.
func TestDocLinks(t *testing.T) {
	files, err := filepath.Glob("../docs/*.md")
	if err != nil || len(files) == 0 {
		t.Fatalf("no docs found: %v", err)
	}
	files = append(files, "../README.md")
	for _, file := range files {
		base := filepath.Dir(file)
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		text := mdFence.ReplaceAllString(string(b), "")
		for _, m := range mdLink.FindAllStringSubmatch(text, -1) {
			link := m[1]
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			target, anchor, _ := strings.Cut(link, "#")
			path := file
			if target != "" {
				path = filepath.Join(base, target)
				if _, err := os.Stat(path); err != nil {
					t.Errorf("%s: link %s: %v", file, link, err)
					continue
				}
			}
			if anchor != "" && strings.HasSuffix(path, ".md") && !anchorsOf(t, path)[anchor] {
				t.Errorf("%s: link %s: no heading with anchor #%s in %s", file, link, anchor, path)
			}
		}
	}
}

func TestGithubAnchor(t *testing.T) {
	for in, want := range map[string]string{
		"1. Beside an existing Asterisk and Odoo": "1-beside-an-existing-asterisk-and-odoo",
		"AMI: authentication failed":              "ami-authentication-failed",
		"Login Already In Use / SessionLimit":     "login-already-in-use--sessionlimit",
		"Odoo → agent TLS":                        "odoo--agent-tls",
	} {
		if got := githubAnchor(in); got != want {
			t.Errorf("githubAnchor(%q) = %q, want %q", in, got, want)
		}
	}
}
