package app

import (
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/xueliang/xl/internal/cli"
	"github.com/xueliang/xl/internal/logging"
)

const defaultConfigPath = "configs/agent.yaml"

// Command is the xl-agent command line.
func Command() *cobra.Command {
	root := &cobra.Command{
		Use:   "xl-agent",
		Short: "Xueliang edge agent: analyses camera streams and publishes alerts with evidence",
	}
	logCfg := func(c *Config) logging.Config { return c.Log }
	run := cli.WithConfig(&cobra.Command{
		Use:   "run",
		Short: "Analyse the configured cameras and publish alerts",
		Args:  cobra.NoArgs,
	}, defaultConfigPath, LoadConfig, logCfg, func(cmd *cobra.Command, cfg *Config, log *slog.Logger) error {
		a, err := New(cfg, cli.ConfigPath(cmd), log)
		if err != nil {
			return err
		}
		return a.Run(cmd.Context())
	})
	var count, cameras, batch int
	var interval time.Duration
	selftest := cli.WithConfig(&cobra.Command{
		Use:   "selftest",
		Short: "Send synthetic 'selftest' alerts through the outbox to central and wait until they are acknowledged",
		Args:  cobra.NoArgs,
	}, defaultConfigPath, LoadConfig, logCfg, func(cmd *cobra.Command, cfg *Config, log *slog.Logger) error {
		return SelfTest(cmd.Context(), cfg, count, cameras, batch, interval, cmd.OutOrStdout(), log)
	})
	selftest.Flags().IntVar(&count, "count", 10, "alerts to send (0: only drain the outbox)")
	selftest.Flags().IntVar(&cameras, "cameras", 1, "spread the alerts over this many camera IDs")
	selftest.Flags().IntVar(&batch, "batch", 1, "alerts written to the outbox per transaction (one fsync each)")
	selftest.Flags().DurationVar(&interval, "interval", 100*time.Millisecond, "time between batches")
	root.AddCommand(run, selftest,
		cli.CheckConfigCommand(defaultConfigPath, func(p string) error { _, err := LoadConfig(p); return err }),
		cli.VersionCommand("xl-agent"))
	return root
}
