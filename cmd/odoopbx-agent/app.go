package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/odoopbx/odoopbx/internal/config"
)

// command is one subcommand. Commands with sub-commands (ami tail, queue dead) list them in subs and
// leave run nil.
type command struct {
	name    string
	usage   string // arguments after the command path, for --help
	summary string
	// setup declares the command's flags; run receives the arguments left after them.
	setup func(fs *flag.FlagSet)
	run   func(ctx context.Context, args []string) error
	subs  []*command
}

// app holds what every command shares: where output goes and which config file to read.
type app struct {
	stdout, stderr io.Writer
	configPath     string
	logLevel       string
}

// usageError makes main print the usage hint and exit 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// exitError carries a specific exit code (1 is the default for any other error).
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

func newApp(stdout, stderr io.Writer) *app {
	return &app{stdout: stdout, stderr: stderr}
}

// commands is the one place every subcommand is registered.
func (a *app) commands() []*command {
	return []*command{
		a.versionCmd(),
		a.checkCmd(),
		a.runCmd(),
		a.initCmd(),
		a.amiCmd(),
		a.queueCmd(),
		a.bansCmd(),
		a.securityCmd(),
		a.simCmd(),
		a.demoCmd(),
	}
}

func (a *app) run(ctx context.Context, args []string) error {
	root := &command{name: "odoopbx-agent", summary: "joins Asterisk to Odoo", subs: a.commands()}
	return a.dispatch(ctx, root, []string{root.name}, args)
}

func (a *app) dispatch(ctx context.Context, cmd *command, path []string, args []string) error {
	fs := flag.NewFlagSet(strings.Join(path, " "), flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.StringVar(&a.configPath, "config", a.configPathOrDefault(), "config file (optional when the environment gives every needed key)")
	fs.StringVar(&a.logLevel, "log-level", a.logLevelOrDefault(), "log level: debug, info, warn, error")
	if cmd.setup != nil {
		cmd.setup(fs)
	}
	fs.Usage = func() { a.printUsage(fs, cmd, path) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err.Error()}
	}
	rest := fs.Args()
	if len(cmd.subs) > 0 {
		if len(rest) == 0 {
			if cmd.run != nil {
				return cmd.run(ctx, rest)
			}
			fs.Usage()
			return usageError{fmt.Sprintf("%s: a command is required", strings.Join(path, " "))}
		}
		for _, sub := range cmd.subs {
			if sub.name == rest[0] {
				return a.dispatch(ctx, sub, append(path, sub.name), rest[1:])
			}
		}
		if rest[0] == "help" {
			fs.Usage()
			return nil
		}
		if cmd.run == nil {
			fs.Usage()
			return usageError{fmt.Sprintf("%s: unknown command %q", strings.Join(path, " "), rest[0])}
		}
	}
	return cmd.run(ctx, rest)
}

func (a *app) printUsage(fs *flag.FlagSet, cmd *command, path []string) {
	w := a.stderr
	fmt.Fprintf(w, "Usage: %s", strings.Join(path, " "))
	if len(cmd.subs) > 0 && cmd.run == nil {
		fmt.Fprint(w, " <command>")
	}
	if cmd.usage != "" {
		fmt.Fprint(w, " "+cmd.usage)
	}
	fmt.Fprintf(w, "\n\n%s\n", cmd.summary)
	if len(cmd.subs) > 0 {
		fmt.Fprintln(w, "\nCommands:")
		subs := append([]*command(nil), cmd.subs...)
		sort.Slice(subs, func(i, j int) bool { return subs[i].name < subs[j].name })
		for _, s := range subs {
			fmt.Fprintf(w, "  %-10s %s\n", s.name, s.summary)
		}
	}
	fmt.Fprintln(w, "\nFlags:")
	fs.PrintDefaults()
}

func (a *app) configPathOrDefault() string {
	if a.configPath != "" {
		return a.configPath
	}
	return config.DefaultPath
}

func (a *app) logLevelOrDefault() string {
	if a.logLevel != "" {
		return a.logLevel
	}
	return "info"
}

// logger writes text logs to stderr at the chosen level.
func (a *app) logger() *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(a.logLevel)); err != nil {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
}

// loadConfig reads the config file (if present) and the environment, and validates the result.
func (a *app) loadConfig() (config.Config, error) {
	return config.Load(a.configPath, os.Environ())
}
