package eventmap

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// savedMap is the events_map.json file: the last RemoteConfig loaded from Odoo and when.
type savedMap struct {
	SavedAt  time.Time    `json:"saved_at"`
	Fallback bool         `json:"fallback,omitempty"`
	Config   RemoteConfig `json:"config"`
}

// save writes the snapshot's config to StatePath atomically: a temporary file in the same
// directory, synced, then renamed over the old one, so a crash leaves either map whole.
func (m *Map) save(s *Snapshot) error {
	if m.cfg.StatePath == "" {
		return nil
	}
	data, err := json.MarshalIndent(savedMap{SavedAt: s.LoadedAt, Fallback: s.Fallback, Config: s.RemoteConfig}, "", " ")
	if err != nil {
		return fmt.Errorf("eventmap: save: %w", err)
	}
	if err := writeFileAtomic(m.cfg.StatePath, data, 0o600); err != nil {
		return fmt.Errorf("eventmap: save %s: %w", m.cfg.StatePath, err)
	}
	return nil
}

// LoadSaved installs the saved map when nothing fresher is in use. A missing file is not an
// error; a corrupt one is reported and left alone (the next good load overwrites it).
func (m *Map) LoadSaved() error {
	if m.cfg.StatePath == "" {
		return nil
	}
	data, err := os.ReadFile(m.cfg.StatePath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("eventmap: read saved map: %w", err)
	}
	var saved savedMap
	if err := json.Unmarshal(data, &saved); err != nil {
		return fmt.Errorf("eventmap: saved map %s: %w", m.cfg.StatePath, err)
	}
	s := compile(saved.Config, LoadSourceDisk, saved.SavedAt)
	s.Fallback = saved.Fallback
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	if m.Current().Source == LoadSourceOdoo {
		return nil // Odoo answered first
	}
	m.publish(s)
	m.log.Info("eventmap: using the saved map until Odoo answers", "rows", len(s.rows),
		"disabled", len(s.Disabled), "saved_at", saved.SavedAt, "hash", s.MapHash)
	if m.cfg.OnChange != nil {
		m.cfg.OnChange(s)
	}
	return nil
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	// Sync the directory so the rename itself survives a power loss.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
