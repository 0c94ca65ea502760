package initcmd

import (
	"fmt"
	"strings"
)

// AstConfig is one Asterisk configuration file, parsed without following its includes: the
// sections in file order and every #include/#tryinclude with the section it sits in.
type AstConfig struct {
	Sections []*AstSection
	Includes []AstInclude
}

// AstSection is a [name] block. Asterisk allows the same name more than once; each occurrence is
// its own AstSection.
type AstSection struct {
	Name string
	// Template is set by [name](!): a template never becomes a live section itself.
	Template bool
	// Inherits lists the templates named in [name](tpl1,tpl2); "+" (append to an earlier section)
	// is kept here as well.
	Inherits []string
	Entries  []AstEntry
	Line     int
}

// AstEntry is key = value or key => value.
type AstEntry struct {
	Key, Value string
	// Object is true for "=>" (an object definition in chan_* and extensions.conf).
	Object bool
	Line   int
}

// AstInclude is a #include or #tryinclude directive.
type AstInclude struct {
	Path string
	// Try is #tryinclude: a missing file is not an error for Asterisk.
	Try bool
	// Section is the section the directive sits in ("" before the first one).
	Section string
	Line    int
}

// Get returns the last value of key (case-insensitive, like Asterisk's option lookup) in the
// non-template sections named section, and whether it was found.
func (c *AstConfig) Get(section, key string) (string, bool) {
	var value string
	found := false
	for _, s := range c.Sections {
		if s.Template || !strings.EqualFold(s.Name, section) {
			continue
		}
		for _, e := range s.Entries {
			if strings.EqualFold(e.Key, key) {
				value, found = e.Value, true
			}
		}
	}
	return value, found
}

// Section returns the first non-template section named name, or nil.
func (c *AstConfig) Section(name string) *AstSection {
	for _, s := range c.Sections {
		if !s.Template && s.Name == name {
			return s
		}
	}
	return nil
}

// ParseAstConfig parses Asterisk's configuration syntax: ";" comments (with "\;" for a literal
// semicolon) and ";-- ... --;" block comments, [section] headers with optional (!) / (tpl,...)
// options, key = value and key => value lines, and #include / #tryinclude (quoted or not). Other
// directives such as #exec are ignored. An option line before any section, an unterminated block
// comment or a malformed header is an error naming the line, as it is for Asterisk.
func ParseAstConfig(data []byte) (*AstConfig, error) {
	cfg := &AstConfig{}
	var current *AstSection
	inBlockComment := false
	blockStart := 0
	lines := strings.Split(string(data), "\n")
	for i, raw := range lines {
		lineNo := i + 1
		line := strings.TrimSuffix(raw, "\r")
		line, inBlockComment = stripComments(line, inBlockComment)
		if inBlockComment && blockStart == 0 {
			blockStart = lineNo
		} else if !inBlockComment {
			blockStart = 0
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		switch {
		case line[0] == '#':
			directive, arg := splitDirective(line[1:])
			switch strings.ToLower(directive) {
			case "include", "tryinclude":
				if arg == "" {
					return nil, fmt.Errorf("line %d: #%s needs a file name", lineNo, directive)
				}
				section := ""
				if current != nil {
					section = current.Name
				}
				cfg.Includes = append(cfg.Includes, AstInclude{
					Path: arg, Try: strings.EqualFold(directive, "tryinclude"), Section: section, Line: lineNo,
				})
			}
		case line[0] == '[':
			section, err := parseSectionHeader(line, lineNo)
			if err != nil {
				return nil, err
			}
			cfg.Sections = append(cfg.Sections, section)
			current = section
		default:
			entry, err := parseEntry(line, lineNo)
			if err != nil {
				return nil, err
			}
			if current == nil {
				return nil, fmt.Errorf("line %d: %q is outside any [section]", lineNo, entry.Key)
			}
			current.Entries = append(current.Entries, entry)
		}
	}
	if inBlockComment {
		return nil, fmt.Errorf("line %d: block comment ;-- is never closed with --;", blockStart)
	}
	return cfg, nil
}

// stripComments removes comments from one line, given whether a block comment is open at its
// start, and reports whether one is still open at its end. "\;" is a literal semicolon.
func stripComments(line string, inBlock bool) (string, bool) {
	var out strings.Builder
	for i := 0; i < len(line); i++ {
		if inBlock {
			if strings.HasPrefix(line[i:], "--;") {
				inBlock = false
				i += 2
			}
			continue
		}
		c := line[i]
		if c == '\\' && i+1 < len(line) && line[i+1] == ';' {
			out.WriteByte(';')
			i++
			continue
		}
		if c == ';' {
			if strings.HasPrefix(line[i:], ";--") {
				inBlock = true
				i += 2
				continue
			}
			break
		}
		out.WriteByte(c)
	}
	return out.String(), inBlock
}

// splitDirective splits "include \"x.conf\"" into ("include", "x.conf"), dropping quotes or <>.
func splitDirective(s string) (string, string) {
	s = strings.TrimSpace(s)
	end := strings.IndexAny(s, " \t\"<")
	if end < 0 {
		return s, ""
	}
	name, arg := s[:end], strings.TrimSpace(s[end:])
	if len(arg) >= 2 && ((arg[0] == '"' && arg[len(arg)-1] == '"') || (arg[0] == '<' && arg[len(arg)-1] == '>')) {
		arg = arg[1 : len(arg)-1]
	}
	return name, strings.TrimSpace(arg)
}

func parseSectionHeader(line string, lineNo int) (*AstSection, error) {
	end := strings.IndexByte(line, ']')
	if end < 0 {
		return nil, fmt.Errorf("line %d: section header %q has no closing ]", lineNo, line)
	}
	name := strings.TrimSpace(line[1:end])
	if name == "" {
		return nil, fmt.Errorf("line %d: empty section name", lineNo)
	}
	section := &AstSection{Name: name, Line: lineNo}
	rest := strings.TrimSpace(line[end+1:])
	if rest == "" {
		return section, nil
	}
	if rest[0] != '(' || rest[len(rest)-1] != ')' {
		return nil, fmt.Errorf("line %d: unexpected %q after [%s] (options are written (!) or (template))", lineNo, rest, name)
	}
	for _, opt := range strings.Split(rest[1:len(rest)-1], ",") {
		opt = strings.TrimSpace(opt)
		switch opt {
		case "":
		case "!":
			section.Template = true
		default:
			section.Inherits = append(section.Inherits, opt)
		}
	}
	return section, nil
}

func parseEntry(line string, lineNo int) (AstEntry, error) {
	eq := strings.IndexByte(line, '=')
	if eq < 0 {
		return AstEntry{}, fmt.Errorf("line %d: %q is not key = value", lineNo, line)
	}
	entry := AstEntry{Key: strings.TrimSpace(line[:eq]), Line: lineNo}
	value := line[eq+1:]
	if strings.HasPrefix(value, ">") {
		entry.Object = true
		value = value[1:]
	}
	entry.Value = strings.TrimSpace(value)
	if entry.Key == "" {
		return AstEntry{}, fmt.Errorf("line %d: %q has no key before =", lineNo, line)
	}
	return entry, nil
}

// astTrue is Asterisk's ast_true: yes, true, y, t, 1 and on, in any case.
func astTrue(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "yes", "true", "y", "t", "1", "on":
		return true
	}
	return false
}
