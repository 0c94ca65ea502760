// Command odoopbx-agent runs beside Asterisk and joins it to Odoo.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newApp(os.Stdout, os.Stderr).run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "odoopbx-agent:", err)
		os.Exit(exitCode(err))
	}
}
