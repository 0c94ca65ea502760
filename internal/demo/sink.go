// Package demo runs OdooPBX with no Asterisk and no Odoo: the PBX simulator, the agent and its
// status page in one process, with events delivered to an in-process Odoo stand-in.
package demo

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"sync"
)

// DefaultMap is the events map asterisk_plus ships (contract §3.7), as agent_get_config returns it.
//
//go:embed default_map.json
var DefaultMap []byte

// Sink stands in for Odoo: it answers agent_get_config with the default map and accepts every
// other call, counting deliveries per method and per call (Linkedid).
type Sink struct {
	mu       sync.Mutex
	byMethod map[string]int
	byCall   map[string]int
	total    int
}

// NewSink returns an empty sink.
func NewSink() *Sink {
	return &Sink{byMethod: map[string]int{}, byCall: map[string]int{}}
}

// ExecuteKw implements odoo.Client.
func (s *Sink) ExecuteKw(ctx context.Context, model, method string, args []any, kwargs map[string]any) (json.RawMessage, error) {
	if model == "asterisk_plus.server" && method == "agent_get_config" {
		return DefaultMap, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total++
	s.byMethod[model+"."+method]++
	if len(args) > 0 {
		if call := linkedid(args[0]); call != "" {
			s.byCall[call]++
		}
	}
	return json.RawMessage("true"), nil
}

func linkedid(arg any) string {
	var ev map[string]any
	switch v := arg.(type) {
	case map[string]any:
		ev = v
	case json.RawMessage:
		if json.Unmarshal(v, &ev) != nil {
			return ""
		}
	case []byte:
		if json.Unmarshal(v, &ev) != nil {
			return ""
		}
	default:
		b, err := json.Marshal(v)
		if err != nil || json.Unmarshal(b, &ev) != nil {
			return ""
		}
	}
	for _, k := range []string{"Linkedid", "Uniqueid"} {
		if s, ok := ev[k].(string); ok && s != "" {
			return s
		}
	}
	return ""
}

// CallDeliveries is how many deliveries reached the sink for one call.
func (s *Sink) CallDeliveries(linkedid string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byCall[linkedid]
}

// Total is every delivery so far.
func (s *Sink) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// ByMethod is a copy of the per-method counts.
func (s *Sink) ByMethod() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.byMethod))
	for k, v := range s.byMethod {
		out[k] = v
	}
	return out
}

// String summarises the deliveries.
func (s *Sink) String() string {
	return fmt.Sprintf("%d deliveries", s.Total())
}
