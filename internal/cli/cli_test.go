package cli

import (
	"context"
	"errors"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/xueliang/xl/internal/logging"
)

type conf struct{ log logging.Config }

// The log level of a running command follows SIGUSR1 (debug) and SIGUSR2
// (the configured level again).
func TestLogLevelFollowsSignals(t *testing.T) {
	waitLevel := func(log *slog.Logger, debug bool) error {
		deadline := time.Now().Add(10 * time.Second)
		for log.Enabled(context.Background(), slog.LevelDebug) != debug {
			if time.Now().After(deadline) {
				return errors.New("level did not change")
			}
			time.Sleep(5 * time.Millisecond)
		}
		return nil
	}
	var steps []string
	cmd := WithConfig(&cobra.Command{Use: "run"}, "x.yaml",
		func(string) (*conf, error) { return &conf{log: logging.Config{Level: "warn", Format: "text"}}, nil },
		func(c *conf) logging.Config { return c.log },
		func(_ *cobra.Command, _ *conf, log *slog.Logger) error {
			if log.Enabled(context.Background(), slog.LevelInfo) {
				return errors.New("configured warn, info enabled")
			}
			for _, s := range []struct {
				sig   syscall.Signal
				debug bool
			}{{syscall.SIGUSR1, true}, {syscall.SIGUSR2, false}, {syscall.SIGUSR1, true}} {
				if err := syscall.Kill(syscall.Getpid(), s.sig); err != nil {
					return err
				}
				if err := waitLevel(log, s.debug); err != nil {
					return err
				}
				steps = append(steps, s.sig.String())
			}
			return nil
		})
	cmd.SetArgs(nil)
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err, steps)
	}
	if len(steps) != 3 {
		t.Fatalf("steps %v", steps)
	}
}
