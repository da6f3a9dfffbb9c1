package app

import (
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/xueliang/xl/agent/internal/detect"
	"github.com/xueliang/xl/internal/cli"
	"github.com/xueliang/xl/internal/logging"
)

const defaultConfigPath = "configs/agent.yaml"

// Command is the xl-agent command line.
func Command() *cobra.Command {
	// A model file the manifest does not vouch for is first loaded in a
	// child process: this binary again, with the hidden __check-model
	// command (tests set their own before calling Command).
	if detect.ChildCommand == nil {
		detect.ChildCommand = detect.SelfCommand([]string{checkModelCommand})
	}
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
	var count, cameras, batch, snapshotBytes int
	var interval, clockOffset time.Duration
	selftest := cli.WithConfig(&cobra.Command{
		Use:   "selftest",
		Short: "Send synthetic 'selftest' alerts through the outbox to central and wait until they are acknowledged",
		Args:  cobra.NoArgs,
	}, defaultConfigPath, LoadConfig, logCfg, func(cmd *cobra.Command, cfg *Config, log *slog.Logger) error {
		return SelfTest(cmd.Context(), cfg, count, cameras, batch, interval, clockOffset, snapshotBytes, cmd.OutOrStdout(), log)
	})
	selftest.Flags().IntVar(&count, "count", 10, "alerts to send (0: only drain the outbox)")
	selftest.Flags().IntVar(&cameras, "cameras", 1, "spread the alerts over this many camera IDs")
	selftest.Flags().IntVar(&batch, "batch", 1, "alerts written to the outbox per transaction (one fsync each)")
	selftest.Flags().DurationVar(&interval, "interval", 100*time.Millisecond, "time between batches")
	selftest.Flags().IntVar(&snapshotBytes, "snapshot-bytes", 0, "give each alert a synthetic snapshot of this many bytes (0: none)")
	selftest.Flags().DurationVar(&clockOffset, "clock-offset", 0, "test hook: stamp the alerts as if this box's clock were off by this much (e.g. 10m, -2h)")
	root.AddCommand(run, selftest, replayCommand(),
		cli.CheckConfigCommand(defaultConfigPath, func(p string) error { _, err := LoadConfig(p); return err }),
		cli.VersionCommand("xl-agent"),
		&cobra.Command{
			Use:    checkModelCommand,
			Short:  "Load a model for the parent process and report (internal)",
			Hidden: true,
			Args:   cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return detect.ServeModelCheck(cmd.InOrStdin(), cmd.OutOrStdout())
			},
		})
	return root
}

// checkModelCommand is the hidden command that loads a model file in a
// child process (see detect.ChildCommand).
const checkModelCommand = "__check-model"

// replayCommand is `xl-agent replay`: one camera's pipeline over a
// recording.
func replayCommand() *cobra.Command {
	var (
		cameraID, src, out, snaps, startAt string
		realtime, verbose                  bool
		duration                           time.Duration
	)
	logCfg := func(c *Config) logging.Config {
		if verbose {
			return c.Log
		}
		return logging.Config{Level: "warn", Format: "text"}
	}
	cmd := cli.WithConfig(&cobra.Command{
		Use:   "replay --camera ID --source FILE [--out events.jsonl]",
		Short: "Run one camera's analysis over a recording and write its events as JSON lines, then a summary",
		Long: `Runs the camera's pipeline (motion, detection, tracking, zones, scenarios, event
lifecycle) over a recording as fast as possible (--realtime: at its own pace), and
writes one JSON line per alert (start, update, end; the alert as on the wire) and a
last {"summary": …} line with the frames, frames per second, detections per class
and events per scenario. Nothing is published. Use it to tune zones and scenarios.`,
		Args: cobra.NoArgs,
	}, defaultConfigPath, LoadConfig, logCfg, func(cmd *cobra.Command, cfg *Config, log *slog.Logger) error {
		return Replay(cmd.Context(), cfg, ReplayOptions{CameraID: cameraID, Source: src, Out: out, Snapshots: snaps,
			Realtime: realtime, Start: startAt, Duration: duration}, cmd.OutOrStdout(), cmd.ErrOrStderr(), log)
	})
	f := cmd.Flags()
	f.StringVar(&cameraID, "camera", "", "the camera (cameras[].id) whose zones and scenarios to use (default: the only one)")
	f.StringVar(&src, "source", "", "the recording to analyse (any file FFmpeg reads)")
	f.StringVar(&out, "out", "", "write the JSON lines to this file instead of standard output")
	f.StringVar(&snaps, "snapshots", "", "write each alert's snapshot to this directory as <alert_id>.jpg")
	f.BoolVar(&realtime, "realtime", false, "play at the recording's own pace instead of as fast as possible")
	f.StringVar(&startAt, "start", "", "time of the recording's first frame, RFC 3339 (for schedules; default now)")
	f.DurationVar(&duration, "duration", 0, "analyse only this much of the recording")
	f.BoolVar(&verbose, "verbose", false, "log as the configuration says (default: warnings only, as text)")
	_ = cmd.MarkFlagRequired("source")
	return cmd
}
