package app

import (
	"bufio"
	"fmt"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/xueliang/xl/central/internal/broker"
	"github.com/xueliang/xl/internal/cli"
	"github.com/xueliang/xl/internal/logging"
)

const defaultConfigPath = "configs/central.yaml"

// Command is the xl-central command line.
func Command() *cobra.Command {
	root := &cobra.Command{
		Use:   "xl-central",
		Short: "Xueliang command centre: receives alerts from edge agents, stores them and serves the console",
	}
	serve := cli.WithConfig(&cobra.Command{
		Use:   "serve",
		Short: "Run the command centre (broker, intake, API, console)",
		Args:  cobra.NoArgs,
	}, defaultConfigPath, LoadConfig, func(c *Config) logging.Config { return c.Log },
		func(cmd *cobra.Command, cfg *Config, log *slog.Logger) error {
			c, err := New(cmd.Context(), cfg, log)
			if err != nil {
				return err
			}
			return c.Run(cmd.Context())
		})
	passwd := &cobra.Command{
		Use:   "passwd",
		Short: "Read a password on standard input and print its bcrypt hash for broker.users",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
			if err != nil && line == "" {
				return fmt.Errorf("read password: %w", err)
			}
			h, err := broker.HashPassword([]byte(strings.TrimRight(line, "\r\n")))
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), h)
			return nil
		},
	}
	root.AddCommand(serve, passwd, userCommand(), auditCommand(), routeCommand(),
		cli.CheckConfigCommand(defaultConfigPath, func(p string) error { _, err := LoadConfig(p); return err }),
		cli.VersionCommand("xl-central"))
	return root
}
