package initcmd

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// setting is one key init writes into agent.yaml. config.Config is not marshalled on purpose: its
// Secret type prints "***", and a re-run must keep every key init does not manage.
type setting struct {
	// Key is dotted: "ami.secret".
	Key   string
	Value any // string, int or bool
	// Secret values are masked in dry runs.
	Secret bool
	// KeepExisting leaves a value already in the file alone (feature flags not given this time).
	KeepExisting bool
}

// configHeader heads a config file init creates.
const configHeader = "odoopbx-agent configuration (contract Appendix A).\n" +
	"Written by `odoopbx-agent init`; re-running init updates the keys it manages and keeps the others."

// MergeConfig applies settings to an existing YAML file (nil or empty for a new one) and returns the
// new file. Comments and keys it does not set are kept. A file that is not YAML, or whose root or a
// parent of a setting is not a mapping, is an error and nothing is changed.
func MergeConfig(existing []byte, settings []setting, maskSecrets bool) ([]byte, error) {
	var doc yaml.Node
	if len(bytes.TrimSpace(existing)) > 0 {
		if err := yaml.Unmarshal(existing, &doc); err != nil {
			return nil, fmt.Errorf("it is not valid YAML: %w", err)
		}
	}
	// yaml.v3 drops a file of nothing but comments; it is written back in front of the new keys.
	var keepText []byte
	if doc.Kind == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode}
		keepText = bytes.TrimRight(existing, "\n")
	}
	if len(doc.Content) == 0 {
		doc.Content = []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}
		if len(bytes.TrimSpace(existing)) == 0 {
			doc.HeadComment = configHeader
		}
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		*root = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", HeadComment: root.HeadComment}
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("its top level is not a mapping of keys")
	}
	for _, s := range settings {
		value := s.Value
		if s.Secret && maskSecrets {
			value = "***"
		}
		if err := setPath(root, strings.Split(s.Key, "."), scalarNode(value), s.KeepExisting); err != nil {
			return nil, fmt.Errorf("key %s: %w", s.Key, err)
		}
	}
	var out bytes.Buffer
	if len(bytes.TrimSpace(keepText)) > 0 {
		out.Write(keepText)
		out.WriteString("\n")
	}
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return out.Bytes(), nil
}

func setPath(mapping *yaml.Node, path []string, value *yaml.Node, keepExisting bool) error {
	for i := 0; i+1 < len(mapping.Content); i += 2 {
		if mapping.Content[i].Value != path[0] {
			continue
		}
		current := mapping.Content[i+1]
		if len(path) > 1 {
			if current.Kind == yaml.ScalarNode && current.Tag == "!!null" {
				*current = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", HeadComment: current.HeadComment, LineComment: current.LineComment}
			}
			if current.Kind != yaml.MappingNode {
				return fmt.Errorf("%s is not a mapping", path[0])
			}
			return setPath(current, path[1:], value, keepExisting)
		}
		if keepExisting {
			return nil
		}
		value.HeadComment, value.LineComment, value.FootComment = current.HeadComment, current.LineComment, current.FootComment
		mapping.Content[i+1] = value
		return nil
	}
	key := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: path[0]}
	if len(path) == 1 {
		mapping.Content = append(mapping.Content, key, value)
		return nil
	}
	child := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	mapping.Content = append(mapping.Content, key, child)
	return setPath(child, path[1:], value, keepExisting)
}

// scalarNode writes strings double-quoted, so no value (a password starting with "*", "yes", a
// token of digits) is ever read back as another type or as YAML syntax.
func scalarNode(v any) *yaml.Node {
	switch x := v.(type) {
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(x)}
	case int:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(x)}
	default:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: fmt.Sprint(x), Style: yaml.DoubleQuotedStyle}
	}
}
