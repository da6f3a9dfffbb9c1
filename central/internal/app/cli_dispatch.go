package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/xueliang/xl/central/internal/audit"
	"github.com/xueliang/xl/central/internal/routing"
	"github.com/xueliang/xl/internal/cli"
	"github.com/xueliang/xl/internal/logging"
	"github.com/xueliang/xl/internal/wire"
)

// auditCommand is `xl-central audit verify`.
func auditCommand() *cobra.Command {
	parent := &cobra.Command{Use: "audit", Short: "Inspect the audit log"}
	verify := cli.WithConfig(&cobra.Command{
		Use:   "verify",
		Short: "Verify the audit hash chain in the store; exits 1 at the first edited, deleted or reordered entry",
		Args:  cobra.NoArgs,
	}, defaultConfigPath, LoadConfig, func(c *Config) logging.Config { return c.Log },
		func(cmd *cobra.Command, cfg *Config, _ *slog.Logger) error {
			st, err := openStore(cmd.Context(), cfg.Store, true)
			if err != nil {
				return err
			}
			defer st.Close()
			n, head, err := st.VerifyAudit(cmd.Context())
			var ve *audit.VerifyError
			if errors.As(err, &ve) {
				return fmt.Errorf("audit chain broken at seq %d (%s): %s", ve.Seq, ve.Reason, ve.Detail)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "audit: %d entries verify; head seq %d hash %s\n", n, n, head)
			return nil
		})
	parent.AddCommand(verify)
	return parent
}

// routeCommand is `xl-central route test`.
func routeCommand() *cobra.Command {
	parent := &cobra.Command{Use: "route", Short: "Try the routing rules"}
	var alertPath, atFlag string
	test := cli.WithConfig(&cobra.Command{
		Use:   "test",
		Short: "Route an alert (JSON, the wire format) with the configured rules and show the decision and why",
		Args:  cobra.NoArgs,
	}, defaultConfigPath, LoadConfig, func(c *Config) logging.Config { return c.Log },
		func(cmd *cobra.Command, cfg *Config, _ *slog.Logger) error {
			if alertPath == "" {
				return errors.New("--alert FILE is required")
			}
			body, err := os.ReadFile(alertPath)
			if err != nil {
				return err
			}
			var a wire.Alert
			if err := json.Unmarshal(body, &a); err != nil {
				return fmt.Errorf("%s: %w", alertPath, err)
			}
			at := a.DetectedAt
			if atFlag != "" {
				if at, err = time.Parse(time.RFC3339, atFlag); err != nil {
					return fmt.Errorf("--at: %w", err)
				}
			}
			if at.IsZero() {
				at = time.Now()
			}
			r, err := routing.New(&cfg.Routing)
			if err != nil {
				return err
			}
			printDecision(cmd, r.Route(&a, at))
			return nil
		})
	test.Flags().StringVar(&alertPath, "alert", "", "alert JSON file")
	test.Flags().StringVar(&atFlag, "at", "", "route as at this time (RFC 3339); default: the alert's detected_at")
	parent.AddCommand(test)
	return parent
}

func printDecision(cmd *cobra.Command, d routing.Decision) {
	w := cmd.OutOrStdout()
	if d.Matched {
		fmt.Fprintf(w, "rule:        %s\n", d.Rule)
	} else {
		fmt.Fprintf(w, "rule:        (none: the duty officer decides)\n")
	}
	fmt.Fprintf(w, "grid:        %s\n", d.Grid)
	if d.Lead != "" {
		fmt.Fprintf(w, "lead:        %s\n", d.Lead)
	}
	for _, s := range d.Support {
		fmt.Fprintf(w, "support:     %s\n", s)
	}
	if d.SLAProfile != "" {
		fmt.Fprintf(w, "sla profile: %s\n", d.SLAProfile)
	}
	switch {
	case !d.Matched:
	case d.Auto:
		fmt.Fprintf(w, "dispatch:    auto\n")
	case d.AutoAfter > 0:
		fmt.Fprintf(w, "dispatch:    manual, auto after %s\n", d.AutoAfter)
	default:
		fmt.Fprintf(w, "dispatch:    manual\n")
	}
	fmt.Fprintln(w, "why:")
	for _, line := range d.Why {
		fmt.Fprintf(w, "  - %s\n", line)
	}
}
