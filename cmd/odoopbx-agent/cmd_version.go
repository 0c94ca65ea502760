package main

import (
	"context"
	"fmt"
	"runtime"

	"github.com/odoopbx/odoopbx/internal/version"
)

func (a *app) versionCmd() *command {
	return &command{
		name:    "version",
		summary: "print the agent's version",
		run: func(ctx context.Context, args []string) error {
			fmt.Fprintf(a.stdout, "odoopbx-agent %s (%s, %s/%s)\n", version.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
