package jobs

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
	"github.com/odoopbx/odoopbx/internal/config"
)

// AMIDoer is the part of ami.Client that asterisk.manager_action needs: send one action and
// return every message of its reply (contract §4.6).
type AMIDoer interface {
	Do(ctx context.Context, action *ami.Message) ([]*ami.Message, error)
}

// Deps is what the built-in functions need from the rest of the agent.
type Deps struct {
	// AMI carries asterisk.manager_action; nil leaves that function out.
	AMI AMIDoer
	// Reload re-reads the local file, the events map, options and access lists (agent.reload_config,
	// and manager_action's ReloadEvents); nil leaves agent.reload_config out.
	Reload func(ctx context.Context) (any, error)
	// Status builds the agent.status result; nil leaves agent.status out.
	Status func(ctx context.Context) (any, error)
	// OnOriginate is told the ActionID and ChannelId of every Originate before it is sent, so the
	// forwarder can put that call's events in the right lane. Optional; it must not block.
	OnOriginate func(actionID, channelID string)
	// Config returns the current configuration; it is called once per job, so a reload that
	// changes asterisk_*_dir takes effect on the next job.
	Config func() config.Config
	// NewActionID returns a fresh unique ActionID for an action Odoo sent without one. Optional.
	NewActionID func() string
	// MaxParallelRecordings bounds recording.get_file jobs running at once (default 2): each may
	// hold a 64 MiB file, its MP3 and its base64 in memory.
	MaxParallelRecordings int
	Logger                *slog.Logger
}

// Default timeouts of the built-ins that differ from DefaultTimeout (contract §4.7).
const (
	RecordingTimeout = 120 * time.Second
	// ManagerActionTimeout covers the longest manager_action: its timeout kwarg (at most 120 s)
	// plus the OriginateResponse wait, which may last up to 180 s (contract §4.6).
	ManagerActionTimeout = 300 * time.Second
)

// Builtins returns a registry holding the functions of contract §4.5 that live outside security:
// test.ping, agent.status, agent.reload_config, asterisk.manager_action, recording.get_file,
// file.delete and the asterisk.*config functions. The lead merges security's functions into it.
func Builtins(d Deps) (*Registry, error) {
	if d.Config == nil {
		def := config.Default()
		d.Config = func() config.Config { return def }
	}
	if d.NewActionID == nil {
		d.NewActionID = newActionID
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.MaxParallelRecordings <= 0 {
		d.MaxParallelRecordings = 2
	}
	b := &builtins{deps: d, recordings: make(chan struct{}, d.MaxParallelRecordings)}
	r := NewRegistry()
	type entry struct {
		name    string
		f       Func
		aliases []string
	}
	entries := []entry{
		{"test.ping", testPing, nil},
		{"recording.get_file", b.recordingGetFile, nil},
		{"file.delete", b.fileDelete, nil},
		{"asterisk.get_config", b.getConfig, nil},
		{"asterisk.get_all_configs", b.getAllConfigs, nil},
		{"asterisk.put_config", b.putConfig, nil},
		{"asterisk.put_all_configs", b.putAllConfigs, nil},
		{"asterisk.delete_config", b.deleteConfig, nil},
	}
	if d.AMI != nil {
		entries = append(entries, entry{"asterisk.manager_action", b.managerAction, nil})
	}
	if d.Status != nil {
		entries = append(entries, entry{"agent.status", noArgs(d.Status), nil})
	}
	if d.Reload != nil {
		entries = append(entries, entry{"agent.reload_config", noArgs(d.Reload), []string{"agent_reload_config"}})
	}
	for _, e := range entries {
		if err := r.Register(e.name, e.f, e.aliases...); err != nil {
			return nil, err
		}
	}
	r.SetTimeout("recording.get_file", RecordingTimeout)
	r.SetTimeout("asterisk.manager_action", ManagerActionTimeout)
	return r, nil
}

type builtins struct {
	deps       Deps
	recordings chan struct{} // semaphore of recording.get_file reads
}

func testPing(context.Context, []json.RawMessage, map[string]json.RawMessage) (any, error) {
	return true, nil
}

// noArgs adapts a context-only function (status, reload) to a Func.
func noArgs(f func(ctx context.Context) (any, error)) Func {
	return func(ctx context.Context, _ []json.RawMessage, _ map[string]json.RawMessage) (any, error) {
		return f(ctx)
	}
}
