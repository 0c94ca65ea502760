package api

import (
	"github.com/odoopbx/odoopbx/internal/config"
)

// FromConfig fills the Config fields that come from the agent's local configuration (api.*,
// tls.*, jobs.*, odoo.notify_method). The caller adds Functions, Enqueuer, OnAuthFailure, Logger
// and Registerer.
func FromConfig(c config.Config) Config {
	return Config{
		Listen:       c.API.Listen,
		TLS:          c.API.TLS,
		CertFile:     c.TLS.Cert,
		KeyFile:      c.TLS.Key,
		Tokens:       []config.Secret{c.API.Token, c.API.TokenNext},
		AllowFrom:    c.API.AllowFrom,
		MaxBodyBytes: c.API.MaxBodyBytes,
		Workers:      c.Jobs.Workers,
		Queue:        c.Jobs.Queue,
		NotifyMethod: c.Odoo.NotifyMethod,
	}
}
