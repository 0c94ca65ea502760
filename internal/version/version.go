// Package version holds the agent's version, stamped at build time with
// -ldflags "-X github.com/odoopbx/odoopbx/internal/version.Version=v1.2.3".
package version

// Version is the agent's version; "dev" for an unstamped build.
var Version = "dev"

// UserAgent is sent on every HTTP request the agent makes (contract §1.3).
func UserAgent() string { return "odoopbx-agent/" + Version }
