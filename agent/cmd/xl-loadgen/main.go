// Command xl-loadgen simulates thousands of xl-agents (each with several
// cameras) over real MQTT connections, for scale runs of xl-central:
//
//	xl-loadgen --broker tcp://127.0.0.1:1883 --agents 1250 --rate 6/cam/h --duration 2m --seed 7
//
// It prints what it sent at the end; the same seed and flags give the same
// schedule (--dry-run prints it without connecting).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/xueliang/xl/internal/cli"
	"github.com/xueliang/xl/internal/loadgen"
	"github.com/xueliang/xl/internal/logging"
	"github.com/xueliang/xl/internal/opshttp"
)

func main() { os.Exit(cli.Execute(command(), os.Args[1:], os.Stderr)) }

func command() *cobra.Command {
	cfg := loadgen.Default()
	var rate, metrics, logLevel string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "xl-loadgen [flags]",
		Short: "Simulate a fleet of xl-agents over real MQTT connections",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := loadgen.ParseRate(rate)
			if err != nil {
				return fmt.Errorf("--rate: %w", err)
			}
			cfg.Rate = r
			if err := cfg.Validate(); err != nil {
				return err
			}
			if dryRun {
				for _, ev := range loadgen.NewSchedule(cfg).Until(cfg.Duration) {
					fmt.Fprintln(cmd.OutOrStdout(), ev)
				}
				return nil
			}
			log, _ := logging.New(logging.Config{Level: logLevel, Format: "text"}, os.Stderr)
			return run(cmd.Context(), cmd, cfg, metrics, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Broker, "broker", cfg.Broker, "MQTT broker URL (tcp://host:port)")
	f.StringVar(&cfg.AgentPrefix, "agent-prefix", cfg.AgentPrefix, "agent IDs (and broker usernames) are PREFIX-NNNNN")
	f.StringVar(&cfg.Password, "password", cfg.Password, "broker password of every simulated agent (better: XL_LOADGEN_PASSWORD)")
	f.IntVar(&cfg.FirstAgent, "first-agent", cfg.FirstAgent, "number of the first agent (to split a fleet over several loadgens)")
	f.IntVar(&cfg.Agents, "agents", cfg.Agents, "simulated agents, one MQTT connection each")
	f.IntVar(&cfg.CamerasPerAgent, "cameras-per-agent", cfg.CamerasPerAgent, "cameras per agent")
	f.StringVar(&rate, "rate", cfg.Rate.String(), "alert rate, the daily mean: N/s for all cameras together, or N/cam/h per camera per hour")
	f.StringVar(&cfg.Profile, "profile", cfg.Profile, "time-of-day profile: flat, or diurnal (quiet hours at night, a storm at dusk)")
	f.Float64Var(&cfg.Compress, "compress", cfg.Compress, "simulated seconds per real second for the profile (144: a day in 10 minutes)")
	f.Float64Var(&cfg.StartHour, "start-hour", cfg.StartHour, "simulated hour of day when the traffic starts (0–24)")
	f.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long the alert traffic runs, after all agents connected")
	f.Int64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the schedule")
	f.Float64Var(&cfg.Ramp, "ramp", cfg.Ramp, "new connections per second while the fleet connects")
	f.Float64Var(&cfg.Evidence, "evidence", cfg.Evidence, "share of start/update alerts sent with a JPEG-sized snapshot (0–1)")
	f.IntVar(&cfg.EvidenceMedian, "evidence-median", cfg.EvidenceMedian, "median snapshot size in bytes (lognormal)")
	f.Float64Var(&cfg.EvidenceSigma, "evidence-sigma", cfg.EvidenceSigma, "sigma of the snapshot size's lognormal")
	f.DurationVar(&cfg.StormAt, "storm-at", cfg.StormAt, "reconnect storm this long into the traffic (0: none)")
	f.Float64Var(&cfg.StormFraction, "storm-fraction", cfg.StormFraction, "share of agents whose connection drops in the storm")
	f.DurationVar(&cfg.StatusInterval, "status-interval", cfg.StatusInterval, "each agent republishes its retained status this often")
	f.DurationVar(&cfg.KeepAlive, "keep-alive", cfg.KeepAlive, "MQTT keep-alive of each agent")
	f.DurationVar(&cfg.AckTimeout, "ack-timeout", cfg.AckTimeout, "a publish not acknowledged within this counts as unacked")
	f.IntVar(&cfg.Senders, "senders", cfg.Senders, "sending goroutines (agents are spread over them)")
	f.StringVar(&cfg.Journal, "journal", "", "write every alert sent (S), acknowledged (A) or not (U) to this file")
	f.StringVar(&metrics, "metrics", "", "serve Prometheus /metrics on this address (e.g. 127.0.0.1:9120)")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.BoolVar(&dryRun, "dry-run", false, "print the schedule (one line per alert) and exit without connecting")
	cmd.AddCommand(cli.VersionCommand("xl-loadgen"))
	cmd.PreRun = func(*cobra.Command, []string) {
		if cfg.Password == "" {
			cfg.Password = os.Getenv("XL_LOADGEN_PASSWORD")
		}
	}
	return cmd
}

func run(ctx context.Context, cmd *cobra.Command, cfg loadgen.Config, metricsAddr string, log *slog.Logger) error {
	if n, err := raiseNoFile(); err != nil {
		log.Warn("could not raise the open-file limit", "err", err)
	} else if n < uint64(cfg.Agents)+256 {
		return fmt.Errorf("--agents %d: the open-file limit is %d; raise it (ulimit -n) as root", cfg.Agents, n)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	g, err := loadgen.New(cfg, reg, log)
	if err != nil {
		return err
	}
	defer g.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	httpDone := make(chan error, 1)
	if metricsAddr != "" {
		srv, err := opshttp.New(metricsAddr, reg, log)
		if err != nil {
			return err
		}
		go func() { httpDone <- srv.Run(ctx) }() // owned: ends with ctx, awaited below
	} else {
		httpDone <- nil
	}
	start := time.Now()
	sum, err := g.Run(ctx)
	if err != nil {
		return err
	}
	log.Info("done", "took", time.Since(start).Round(time.Millisecond))
	sum.Print(cmd.OutOrStdout())
	cancel()
	if err := <-httpDone; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	if sum.JournalError != "" {
		return fmt.Errorf("journal: %s", sum.JournalError)
	}
	return nil
}

// raiseNoFile lifts the soft open-file limit to the hard one (as root, the
// hard one too, up to the kernel's nr_open) and returns the new limit.
func raiseNoFile() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		var nr uint64
		if _, err := fmt.Sscan(string(b), &nr); err == nil && nr > l.Max {
			want := syscall.Rlimit{Cur: nr, Max: nr}
			if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) == nil {
				return nr, nil
			}
		}
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	return l.Cur, nil
}
