package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/xueliang/xl/central/internal/audit"
	"github.com/xueliang/xl/central/internal/routing"
	"github.com/xueliang/xl/central/internal/store"
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
	parent.AddCommand(test, replayCommand())
	return parent
}

// replayCommand is `xl-central route replay`: the stored alerts of a
// period routed with the configured rules and with a proposed
// configuration's, and what would change.
func replayCommand() *cobra.Command {
	var since time.Duration
	var proposedPath string
	var show int
	cmd := cli.WithConfig(&cobra.Command{
		Use:   "replay --proposed FILE [--since 24h]",
		Short: "Route stored alerts with the current and a proposed configuration and show what would change",
		Long: "Reads the alerts stored since --since ago, routes each with the configuration in use and with\n" +
			"the routing of --proposed (another central.yaml), and prints, for each camera, type and zone, the\n" +
			"first alert whose rule, agencies, SLA profile or dispatch mode would differ; then a summary.\n" +
			"Nothing is changed.",
		Args: cobra.NoArgs,
	}, defaultConfigPath, LoadConfig, func(c *Config) logging.Config { return c.Log },
		func(cmd *cobra.Command, cfg *Config, _ *slog.Logger) error {
			if proposedPath == "" {
				return errors.New("--proposed FILE is required")
			}
			proposed, err := LoadConfig(proposedPath)
			if err != nil {
				return fmt.Errorf("proposed: %w", err)
			}
			cur, err := routing.New(&cfg.Routing)
			if err != nil {
				return err
			}
			next, err := routing.New(&proposed.Routing)
			if err != nil {
				return fmt.Errorf("proposed: %w", err)
			}
			st, err := openStore(cmd.Context(), cfg.Store, true)
			if err != nil {
				return err
			}
			defer st.Close()
			res, err := replay(cmd.Context(), st, cur, next, time.Now().Add(-since))
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			for i, c := range res.changes {
				if i == show {
					fmt.Fprintf(w, "… %d more\n", len(res.changes)-show)
					break
				}
				fmt.Fprintf(w, "%s %s %s/%s (alert %s):\n  now:      %s\n  proposed: %s\n", c.at.In(shanghai()).Format("2006-01-02 15:04"),
					c.camera, c.typ, c.zone, c.alertID, c.now, c.proposed)
			}
			fmt.Fprintf(w, "replayed %d alerts of %d cameras/types/zones since %s: %d alerts of %d would route differently\n",
				res.alerts, res.keys, time.Now().Add(-since).In(shanghai()).Format("2006-01-02 15:04"), res.differ, len(res.changes))
			return nil
		})
	cmd.Flags().DurationVar(&since, "since", 24*time.Hour, "how far back to replay")
	cmd.Flags().StringVar(&proposedPath, "proposed", "", "the proposed configuration file (its routing section is used)")
	cmd.Flags().IntVar(&show, "show", 50, "differences to print")
	return cmd
}

type replayChange struct {
	at                         time.Time
	alertID, camera, typ, zone string
	now, proposed              string
}

type replayResult struct {
	alerts, keys, differ int
	changes              []replayChange // the first differing alert of each key
}

// shanghai is the console's and the rules' time zone.
func shanghai() *time.Location {
	if loc, err := time.LoadLocation(routing.TimeZone); err == nil {
		return loc
	}
	return time.FixedZone("CST", 8*3600)
}

// describeRoute is a decision in one line.
func describeRoute(d routing.Decision) string {
	if !d.Matched {
		return "duty officer (no rule)"
	}
	s := fmt.Sprintf("rule %s → lead %s", d.Rule, d.Lead)
	if len(d.Support) > 0 {
		s += fmt.Sprintf(", support %s", strings.Join(d.Support, "+"))
	}
	s += ", sla " + d.SLAProfile
	switch {
	case d.Auto:
		s += ", auto"
	case d.AutoAfter > 0:
		s += ", manual then auto after " + d.AutoAfter.String()
	default:
		s += ", manual"
	}
	return s
}

// replay routes every alert stored since since, oldest first, with both
// routers.
func replay(ctx context.Context, st Store, cur, next *routing.Router, since time.Time) (replayResult, error) {
	var res replayResult
	var recs []store.AlertRecord
	f := store.AlertFilter{Since: since, Limit: 1000}
	for {
		page, err := st.ListAlerts(ctx, f)
		if err != nil {
			return res, err
		}
		recs = append(recs, page...)
		if len(page) < f.Limit {
			break
		}
		last := page[len(page)-1]
		f.Before = &store.Cursor{DetectedAt: last.Alert.DetectedAt, Seq: last.Seq}
	}
	slices.Reverse(recs) // oldest first
	type key struct{ camera, typ, zone string }
	keys, shown := map[key]bool{}, map[key]bool{}
	for _, r := range recs {
		a := r.Alert
		res.alerts++
		k := key{a.CameraID, a.Type, a.Zone}
		keys[k] = true
		at := a.DetectedAt
		now, prop := describeRoute(cur.Route(&a, at)), describeRoute(next.Route(&a, at))
		if now == prop {
			continue
		}
		res.differ++
		if !shown[k] {
			shown[k] = true
			res.changes = append(res.changes, replayChange{at: at, alertID: a.AlertID, camera: a.CameraID, typ: a.Type, zone: a.Zone,
				now: now, proposed: prop})
		}
	}
	res.keys = len(keys)
	return res, nil
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
