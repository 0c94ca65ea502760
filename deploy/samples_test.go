package deploy

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/odoopbx/odoopbx/internal/initcmd"
)

func parseSample(t *testing.T, path string) *initcmd.AstConfig {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := initcmd.ParseAstConfig(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return cfg
}

// TestManagerSampleMatchesInit: the hand-install sample must say exactly what init writes
// (contract §5.2), apart from the secret, which must be an obvious placeholder.
func TestManagerSampleMatchesInit(t *testing.T) {
	const path = "asterisk/manager.conf.d/odoopbx_agent.conf.sample"
	sample := parseSample(t, path)
	rendered, err := initcmd.ParseAstConfig(initcmd.AMIUserSpec{User: "odoopbx_agent", Secret: "s"}.Render("test", ""))
	if err != nil {
		t.Fatal(err)
	}
	got, want := sample.Section("odoopbx_agent"), rendered.Section("odoopbx_agent")
	if got == nil || want == nil {
		t.Fatalf("section [odoopbx_agent] missing (sample %v, init %v)", got != nil, want != nil)
	}
	entries := func(s *initcmd.AstSection) []string {
		var out []string
		for _, e := range s.Entries {
			if e.Key == "secret" {
				continue
			}
			out = append(out, e.Key+" = "+e.Value)
		}
		return out
	}
	if g, w := entries(got), entries(want); !slices.Equal(g, w) {
		t.Errorf("%s differs from what init writes:\n got %q\nwant %q", path, g, w)
	}
	if secret, _ := sample.Get("odoopbx_agent", "secret"); !strings.Contains(secret, "CHANGE-ME") {
		t.Errorf("%s: secret %q should be an obvious placeholder", path, secret)
	}
}

// dialplanStep is one priority: exten => pattern,priority,App(args) or same => n(label),App(args).
type dialplanStep struct {
	exten, label, app, args string
	line                    int
}

var (
	extenValue = regexp.MustCompile(`^([^,]+),(\d+|n)(?:\(([a-z_]+)\))?,([A-Za-z]+)\((.*)\)$`)
	sameValue  = regexp.MustCompile(`^n(?:\(([a-z_]+)\))?,([A-Za-z]+)\((.*)\)$`)
	gotoLabel  = regexp.MustCompile(`\?([a-z_]+)(?::([a-z_]+))?$`)
	uOption    = regexp.MustCompile(`U\(([a-z0-9-]+)\)`)
)

// balanced checks (), {} and [] nesting in an application's arguments.
func balanced(s string) bool {
	var stack []rune
	pairs := map[rune]rune{')': '(', '}': '{', ']': '['}
	for _, r := range s {
		switch r {
		case '(', '{', '[':
			stack = append(stack, r)
		case ')', '}', ']':
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				return false
			}
			stack = stack[:len(stack)-1]
		}
	}
	return len(stack) == 0 && strings.Count(s, `"`)%2 == 0
}

// TestDialplanSample lints extensions_odoopbx.conf.sample: Asterisk's config syntax (parsed by
// initcmd's parser), balanced expressions, known applications, existing Gosub/U() targets and
// GotoIf labels, subroutines that Return, the CURL timeout, failure codes and token before CURL(),
// no AGI() (the agent has no FastAGI server in this release, so a call through it would fail), and
// a relative MixMonitor file (so it lands in the monitor dir).
func TestDialplanSample(t *testing.T) {
	const path = "asterisk/extensions_odoopbx.conf.sample"
	cfg := parseSample(t, path)
	known := []string{"NoOp", "Set", "GotoIf", "Goto", "Return", "MixMonitor", "UserEvent", "Gosub", "Dial", "Hangup"}

	contexts := map[string][]dialplanStep{}
	for _, sec := range cfg.Sections {
		if !strings.HasPrefix(sec.Name, "odoopbx-") {
			t.Errorf("%s:%d: context [%s] should be named odoopbx-* so including the file changes nothing", path, sec.Line, sec.Name)
		}
		var steps []dialplanStep
		exten := ""
		for _, e := range sec.Entries {
			if !e.Object {
				t.Errorf("%s:%d: %s = %s: dialplan lines use =>", path, e.Line, e.Key, e.Value)
				continue
			}
			var st dialplanStep
			switch e.Key {
			case "exten":
				m := extenValue.FindStringSubmatch(e.Value)
				if m == nil {
					t.Errorf("%s:%d: cannot read %q as pattern,priority,App(args)", path, e.Line, e.Value)
					continue
				}
				exten = m[1]
				st = dialplanStep{exten: exten, label: m[3], app: m[4], args: m[5], line: e.Line}
			case "same":
				m := sameValue.FindStringSubmatch(e.Value)
				if m == nil || exten == "" {
					t.Errorf("%s:%d: cannot read %q as n[(label)],App(args) after an exten", path, e.Line, e.Value)
					continue
				}
				st = dialplanStep{exten: exten, label: m[1], app: m[2], args: m[3], line: e.Line}
			default:
				t.Errorf("%s:%d: unexpected %s =>", path, e.Line, e.Key)
				continue
			}
			if !slices.Contains(known, st.app) {
				t.Errorf("%s:%d: application %s is not one the sample is meant to use (typo?)", path, st.line, st.app)
			}
			if !balanced(st.args) {
				t.Errorf("%s:%d: unbalanced brackets or quotes in %s(%s)", path, st.line, st.app, st.args)
			}
			steps = append(steps, st)
		}
		contexts[sec.Name] = steps
	}
	for _, want := range []string{"odoopbx-caller-name", "odoopbx-record", "odoopbx-answered", "odoopbx-inbound"} {
		if len(contexts[want]) == 0 {
			t.Errorf("%s: context [%s] is missing or empty", path, want)
		}
	}

	subroutines := map[string]bool{}
	for name, steps := range contexts {
		labels := map[string]bool{}
		for _, st := range steps {
			if st.label != "" {
				labels[st.label] = true
			}
		}
		curlSafe := map[string]bool{}
		for _, st := range steps {
			switch st.app {
			case "Gosub":
				target := strings.Split(st.args, ",")
				if len(target) != 3 || target[1] != "s" || target[2] != "1" {
					t.Errorf("%s:%d: Gosub(%s): use Gosub(context,s,1)", path, st.line, st.args)
				}
				subroutines[target[0]] = true
			case "Dial":
				for _, m := range uOption.FindAllStringSubmatch(st.args, -1) {
					subroutines[m[1]] = true
				}
			case "GotoIf":
				m := gotoLabel.FindStringSubmatch(st.args)
				if m == nil {
					t.Errorf("%s:%d: GotoIf(%s): expected ?label", path, st.line, st.args)
					continue
				}
				for _, l := range m[1:] {
					if l != "" && !labels[l] {
						t.Errorf("%s:%d: GotoIf jumps to label %q, which [%s] does not define", path, st.line, l, name)
					}
				}
			case "Set":
				if strings.HasPrefix(st.args, "CURLOPT(httptimeout)=") {
					curlSafe["timeout"] = true
				}
				if strings.HasPrefix(st.args, "CURLOPT(failurecodes)=") && strings.Contains(st.args, "403") {
					curlSafe["failurecodes"] = true
				}
				if strings.HasPrefix(st.args, "CURLOPT(httpheader)=x-security-token: ") {
					curlSafe["token"] = true
				}
				if strings.Contains(st.args, "${CURL(") {
					if !curlSafe["timeout"] || !curlSafe["token"] {
						t.Errorf("%s:%d: CURL() before CURLOPT(httptimeout) and the x-security-token header", path, st.line)
					}
					// Odoo answers a wrong token with 403 and the body "forbidden"; without failurecodes
					// CURL() would return that text as the caller's name.
					if !curlSafe["failurecodes"] {
						t.Errorf("%s:%d: CURL() before CURLOPT(failurecodes) listing 403", path, st.line)
					}
					if !strings.Contains(st.args, "/asterisk_plus/get_") {
						t.Errorf("%s:%d: CURL() to %s, expected an /asterisk_plus/get_* endpoint", path, st.line, st.args)
					}
				}
			case "AGI":
				t.Errorf("%s:%d: AGI(%s): the agent has no FastAGI server in this release; keep FastAGI lines commented out and marked planned", path, st.line, st.args)
			case "MixMonitor":
				if strings.HasPrefix(st.args, "/") {
					t.Errorf("%s:%d: MixMonitor(%s): use a relative file so it lands in the monitor directory", path, st.line, st.args)
				}
			}
		}
	}
	for sub := range subroutines {
		steps, ok := contexts[sub]
		if !ok {
			t.Errorf("%s: [%s] is called as a subroutine but does not exist", path, sub)
			continue
		}
		if steps[0].exten != "s" {
			t.Errorf("%s: subroutine [%s] must start at extension s", path, sub)
		}
		if last := steps[len(steps)-1]; last.app != "Return" {
			t.Errorf("%s: subroutine [%s] must end with Return(), ends with %s", path, sub, last.app)
		}
	}
}
