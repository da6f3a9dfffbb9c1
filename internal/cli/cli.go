// Package cli holds the cobra pieces both binaries share.
package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/xueliang/xl/internal/logging"
	"github.com/xueliang/xl/internal/version"
)

// VersionCommand prints the build's version.
func VersionCommand(binary string) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), version.String(binary))
		},
	}
}

// CheckConfigCommand validates a configuration file with load and prints
// every problem; it exits non-zero when the file is invalid.
func CheckConfigCommand(defaultPath string, load func(path string) error) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "check-config [--config FILE]",
		Short: "Validate a configuration file and print every error in it",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				path = args[0]
			}
			if err := load(path); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: OK\n", path)
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", defaultPath, "configuration file")
	return cmd
}

// Execute runs root with SIGINT and SIGTERM cancelling its context, prints
// the error of a failed command and returns the process exit code.
func Execute(root *cobra.Command, args []string, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root.SilenceUsage = true
	root.SilenceErrors = true
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", root.Name(), err)
		return 1
	}
	return 0
}

// Configured is a command body that needs the loaded configuration and the
// logger it configures.
type Configured[C any] func(cmd *cobra.Command, cfg *C, log *slog.Logger) error

// WithConfig adds --config to cmd and makes its RunE load that file with
// load, build the logger from it with logCfg, and call run.
func WithConfig[C any](cmd *cobra.Command, defaultPath string, load func(string) (*C, error), logCfg func(*C) logging.Config, run Configured[C]) *cobra.Command {
	path := cmd.Flags().StringP("config", "c", defaultPath, "configuration file")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := load(*path)
		if err != nil {
			return err
		}
		lc := logCfg(cfg)
		log, lv := logging.New(lc, os.Stderr)
		// SIGUSR1: debug logs; SIGUSR2: back to the configured level.
		configured, _ := logging.ParseLevel(lc.Level)
		defer logging.FollowSignals(lv, configured, log)()
		return run(cmd, cfg, log)
	}
	return cmd
}

// ConfigPath is the --config value of a command made with WithConfig.
func ConfigPath(cmd *cobra.Command) string {
	p, _ := cmd.Flags().GetString("config")
	return p
}
