// Package logging builds the slog loggers of the xl binaries.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Config selects the format and level of the logs.
type Config struct {
	Level  string `mapstructure:"level"`  // debug, info, warn, error
	Format string `mapstructure:"format"` // json or text
}

// Default is JSON at info, as services log.
func Default() Config { return Config{Level: "info", Format: "json"} }

// Validate reports unknown levels and formats.
func (c Config) Validate(key string) []string {
	var out []string
	if _, err := ParseLevel(c.Level); err != nil {
		out = append(out, err.Error())
	}
	if c.Format != "json" && c.Format != "text" {
		out = append(out, fmt.Sprintf("format %q is not json or text", c.Format))
	}
	return out
}

// ParseLevel parses a level name.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return 0, fmt.Errorf("level %q is not debug, info, warn or error", s)
	}
	return l, nil
}

// New returns a logger writing to w and the LevelVar that changes its level
// at run time.
func New(c Config, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	lv := new(slog.LevelVar)
	if l, err := ParseLevel(c.Level); err == nil {
		lv.Set(l)
	}
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler
	if c.Format == "text" {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(h), lv
}

// FollowSignals changes lv at run time: SIGUSR1 sets debug, SIGUSR2
// restores configured. Each change is logged at warn, so it shows whatever
// the level. The signals are caught from the moment it returns; stop ends
// that and waits for the goroutine that follows them.
func FollowSignals(lv *slog.LevelVar, configured slog.Level, log *slog.Logger) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1, syscall.SIGUSR2)
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case s := <-ch:
				to := configured
				if s == syscall.SIGUSR1 {
					to = slog.LevelDebug
				}
				lv.Set(to)
				log.Warn("log level changed", "component", "logging", "level", to.String(), "signal", s.String())
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(quit)
		<-done
	}
}
