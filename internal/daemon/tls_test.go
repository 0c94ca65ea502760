package daemon

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/odoopbx/odoopbx/internal/config"
)

func TestTLSFilesFallBackToTheStateDir(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.TLS.Cert, cfg.TLS.Key = filepath.Join(dir, "etc", "agent.crt"), filepath.Join(dir, "etc", "agent.key")
	cert, key := TLSFiles(cfg)
	if cert != filepath.Join(cfg.StateDir, "tls", "agent.crt") || key != filepath.Join(cfg.StateDir, "tls", "agent.key") {
		t.Errorf("no files at tls.*: got %s %s, want the state dir", cert, key)
	}
	if err := os.MkdirAll(filepath.Dir(cfg.TLS.Cert), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.TLS.Cert, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cert, key := TLSFiles(cfg); cert != cfg.TLS.Cert || key != cfg.TLS.Key {
		t.Errorf("tls.cert exists: got %s %s, want the configured pair", cert, key)
	}
}
