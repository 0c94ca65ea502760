package deploy

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/odoopbx/odoopbx/internal/config"
	"github.com/odoopbx/odoopbx/internal/security"
)

// These tests keep docs/configuration.md and deploy/agent.yaml.example in step with the code: the
// keys come from the yaml tags of config.Config (by reflection on config.Default()) and from the
// option-name constants declared under internal/, so a key added to the code without documentation
// fails here.

const (
	configDocPath = "../docs/configuration.md"
	examplePath   = "agent.yaml.example"
)

// contractOptions are option names from the contract whose code may not exist yet; the ones declared
// as constants under internal/ are found by optionKeys.
var contractOptions = []string{"fagi_enabled", "fagi_listen", "fagi_port", "fagi_timeout"}

type configKey struct {
	key   string // dotted yaml path: ami.host
	value reflect.Value
}

// configKeys lists every leaf key of config.Config with its default value.
func configKeys() []configKey {
	var out []configKey
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			fv := v.Field(i)
			if fv.Kind() == reflect.Struct && !isLeafStruct(f.Type) {
				walk(fv, prefix+name+".")
				continue
			}
			out = append(out, configKey{key: prefix + name, value: fv})
		}
	}
	walk(reflect.ValueOf(config.Default()), "")
	return out
}

// isLeafStruct reports struct types that are one value in YAML (none today besides time types).
func isLeafStruct(t reflect.Type) bool {
	return t == reflect.TypeOf(time.Time{})
}

// envName is the contract's rule: ODOOPBX_ + the dotted key in upper snake case. It is written out
// here, not taken from config.EnvName, so the docs are checked against the contract too.
func envName(key string) string {
	return "ODOOPBX_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// TestConfigKeysMatchLoader makes sure the keys these tests walk are the keys the loader knows, and
// that the loader names environment variables the contract's way.
func TestConfigKeysMatchLoader(t *testing.T) {
	var walked []string
	for _, k := range configKeys() {
		walked = append(walked, k.key)
		if got := config.EnvName(k.key); got != envName(k.key) {
			t.Errorf("config.EnvName(%q) = %s, the contract says %s", k.key, got, envName(k.key))
		}
	}
	loader := config.Keys()
	sort.Strings(walked)
	sort.Strings(loader)
	if !slices.Equal(walked, loader) {
		t.Errorf("keys differ:\n tests  %v\n loader %v", walked, loader)
	}
}

// formatDefault renders a default the way the docs write it.
func formatDefault(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case config.Secret:
		return "" // never printed, and empty by default anyway
	case config.Duration:
		return shortDuration(x.D())
	case bool:
		if x {
			return "yes"
		}
		return "no"
	case []string:
		return strings.Join(x, ", ")
	}
	switch v.Kind() {
	case reflect.String:
		return v.String()
	case reflect.Int, reflect.Int64, reflect.Int32:
		return strconv.FormatInt(v.Int(), 10)
	}
	return fmt.Sprint(v.Interface())
}

// shortDuration writes 24h instead of 24h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

var optionName = regexp.MustCompile(`^(security|fagi)_[a-z0-9_]+$`)

// optionKeys finds the security_* and fagi_* option names declared as string constants in the
// non-test Go files under internal/, plus contractOptions. A file that does not parse (someone is
// editing it) is skipped.
func optionKeys(t *testing.T) []string {
	t.Helper()
	seen := map[string]bool{}
	for _, k := range contractOptions {
		seen[k] = true
	}
	fset := token.NewFileSet()
	err := filepath.WalkDir("../internal", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Logf("skipping %s: %v", path, err)
			return nil
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				for _, val := range spec.(*ast.ValueSpec).Values {
					lit, ok := val.(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue
					}
					if s, err := strconv.Unquote(lit.Value); err == nil && optionName.MatchString(s) {
						seen[s] = true
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// docRow is one row of a key table in configuration.md: | `key` | `ENV` | default | meaning |
type docRow struct{ env, def, meaning string }

var docRowLine = regexp.MustCompile("^\\|\\s*`([a-z0-9_.]+)`\\s*\\|\\s*`(ODOOPBX_[A-Z0-9_]+)`\\s*\\|([^|]*)\\|([^|]*)\\|\\s*$")

func readDocRows(t *testing.T) map[string]docRow {
	t.Helper()
	b, err := os.ReadFile(configDocPath)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]docRow{}
	for i, line := range strings.Split(string(b), "\n") {
		m := docRowLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if _, dup := rows[m[1]]; dup {
			t.Errorf("%s:%d: key %s is documented twice", configDocPath, i+1, m[1])
		}
		rows[m[1]] = docRow{env: m[2], def: strings.TrimSpace(m[3]), meaning: strings.TrimSpace(m[4])}
	}
	if len(rows) == 0 {
		t.Fatalf("%s: no key rows found (format: | `key` | `ODOOPBX_KEY` | default | meaning |)", configDocPath)
	}
	return rows
}

func TestConfigurationDocListsEveryKey(t *testing.T) {
	rows := readDocRows(t)
	known := map[string]bool{}
	for _, k := range configKeys() {
		known[k.key] = true
		row, ok := rows[k.key]
		if !ok {
			t.Errorf("%s: key %s (%s) is missing; add a row | `%s` | `%s` | default | meaning |",
				configDocPath, k.key, envName(k.key), k.key, envName(k.key))
			continue
		}
		if row.env != envName(k.key) {
			t.Errorf("%s: key %s: environment variable is %s, want %s", configDocPath, k.key, row.env, envName(k.key))
		}
		if row.meaning == "" {
			t.Errorf("%s: key %s has no explanation", configDocPath, k.key)
		}
		// system_name defaults to the host name, which differs per machine.
		if def := formatDefault(k.value); def != "" && k.key != "system_name" && !strings.Contains(row.def, "`"+def+"`") {
			t.Errorf("%s: key %s: default column %q does not show the code's default `%s`", configDocPath, k.key, row.def, def)
		}
	}
	for _, opt := range optionKeys(t) {
		known[opt] = true
		row, ok := rows[opt]
		if !ok {
			t.Errorf("%s: option %s (%s) is missing", configDocPath, opt, envName(opt))
			continue
		}
		if row.env != envName(opt) {
			t.Errorf("%s: option %s: environment variable is %s, want %s", configDocPath, opt, row.env, envName(opt))
		}
	}
	for key := range rows {
		if !known[key] {
			t.Errorf("%s: documents %s, which is neither a config key nor a known option (stale row?)", configDocPath, key)
		}
	}
}

// decommented turns the example's commented-out settings ("#key: v", "#  key: v") into YAML and
// leaves prose ("# text") as comments.
var settingLine = regexp.MustCompile(`^#((?:  )*[a-z][a-z0-9_]*:(?:\s.*)?)$`)

func decommented(b []byte) []byte {
	var out bytes.Buffer
	for _, line := range strings.Split(string(b), "\n") {
		if m := settingLine.FindStringSubmatch(line); m != nil {
			line = m[1]
		}
		out.WriteString(line + "\n")
	}
	return out.Bytes()
}

func flattenYAML(prefix string, m map[string]any, out map[string]any) {
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			flattenYAML(prefix+k+".", sub, out)
			continue
		}
		out[prefix+k] = v
	}
}

func TestAgentYAMLExampleShowsEveryKeyWithItsDefault(t *testing.T) {
	raw, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	doc := decommented(raw)
	var tree map[string]any
	if err := yaml.Unmarshal(doc, &tree); err != nil {
		t.Fatalf("%s with its settings uncommented is not YAML: %v", examplePath, err)
	}
	present := map[string]any{}
	flattenYAML("", tree, present)

	options := map[string]string{}
	var settings bytes.Buffer
	for key, v := range present {
		if optionName.MatchString(key) {
			options[key] = fmt.Sprint(v)
		}
	}
	// The non-option part must decode strictly into config.Config: no unknown or mistyped key.
	for _, line := range strings.Split(string(doc), "\n") {
		if k, _, ok := strings.Cut(line, ":"); ok && optionName.MatchString(k) {
			continue
		}
		settings.WriteString(line + "\n")
	}
	var got config.Config
	dec := yaml.NewDecoder(&settings)
	dec.KnownFields(true)
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("%s: settings do not decode into config.Config: %v", examplePath, err)
	}
	gotV := reflect.ValueOf(got)

	// The agent's own loader must accept the example with everything uncommented.
	tmp := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(tmp, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, err := config.Load(tmp, nil)
	if err != nil {
		t.Fatalf("config.Load rejects %s with its settings uncommented: %v", examplePath, err)
	}
	for key, v := range options {
		if loaded.Options[key] != v {
			t.Errorf("config.Load: option %s = %q, want %q", key, loaded.Options[key], v)
		}
	}

	for _, k := range configKeys() {
		if _, ok := present[k.key]; !ok {
			t.Errorf("%s: key %s is missing (add a commented line with its default)", examplePath, k.key)
			continue
		}
		if !bytes.Contains(raw, []byte(envName(k.key))) {
			t.Errorf("%s: key %s: its environment variable %s is not mentioned", examplePath, k.key, envName(k.key))
		}
		if k.key == "system_name" {
			continue // an example value; the default is the host name
		}
		v := fieldByKey(gotV, k.key)
		if !reflect.DeepEqual(v.Interface(), k.value.Interface()) && !(isEmpty(v) && isEmpty(k.value)) {
			t.Errorf("%s: key %s shows %v, but the default is %v", examplePath, k.key, v.Interface(), k.value.Interface())
		}
	}
	for _, opt := range optionKeys(t) {
		if _, ok := options[opt]; !ok {
			t.Errorf("%s: option %s is missing", examplePath, opt)
		}
		if !bytes.Contains(raw, []byte(envName(opt))) {
			t.Errorf("%s: option %s: its environment variable %s is not mentioned", examplePath, opt, envName(opt))
		}
	}
	for key := range present {
		if optionName.MatchString(key) && !slices.Contains(optionKeys(t), key) {
			t.Errorf("%s: option %s is not known to the code", examplePath, key)
		}
	}

	// The security values shown must be the security package's defaults.
	secOpts := map[string]string{}
	for k, v := range options {
		if strings.HasPrefix(k, "security_") {
			secOpts[k] = v
		}
	}
	parsed, errs := security.ParseOptions(secOpts)
	if len(errs) > 0 {
		t.Fatalf("%s: security options do not parse: %v", examplePath, errs)
	}
	if want := security.DefaultOptions(); !reflect.DeepEqual(parsed, want) {
		t.Errorf("%s: security options shown differ from security.DefaultOptions():\n got %+v\nwant %+v", examplePath, parsed, want)
	}
}

func fieldByKey(v reflect.Value, key string) reflect.Value {
	for _, part := range strings.Split(key, ".") {
		t := v.Type()
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			if name == part {
				v = v.Field(i)
				break
			}
		}
	}
	return v
}

func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Slice, reflect.Map:
		return v.Len() == 0
	}
	return v.IsZero()
}

func TestDecommentedKeepsProse(t *testing.T) {
	in := "# The host: explained\n#ami:\n#  host: 127.0.0.1\n  # ami.port (X)\n#   odd: indent\n"
	want := "# The host: explained\nami:\n  host: 127.0.0.1\n  # ami.port (X)\n#   odd: indent\n\n"
	if got := string(decommented([]byte(in))); got != want {
		t.Errorf("decommented:\n%q\nwant\n%q", got, want)
	}
}
