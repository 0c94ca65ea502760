package main

import (
	"errors"
	"fmt"

	"github.com/odoopbx/odoopbx/internal/agent"
	"github.com/odoopbx/odoopbx/internal/config"
	"github.com/odoopbx/odoopbx/internal/daemon"
)

// newStatusPage builds the admin listener (status page, /healthz, /metrics) for the demo.
func newStatusPage(cfg config.Config, ag *daemon.Agent) (agent.Component, string, error) {
	srv, err := daemon.NewAdmin(ag, nil)
	if err != nil {
		return nil, "", err
	}
	if srv == nil {
		return nil, "", errors.New("metrics.listen is not set")
	}
	return srv, fmt.Sprintf("http://%s/", cfg.Metrics.Listen), nil
}
