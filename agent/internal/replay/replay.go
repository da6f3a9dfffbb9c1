// Package replay runs one camera's analysis pipeline over a recording, as
// fast as analysis allows (or at the recording's pace), and writes one JSON
// line per alert and a summary. It is the same pipeline as a live camera's:
// users tune zones and scenarios with it, and the tests use it.
package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xueliang/xl/agent/internal/pipeline"
	"github.com/xueliang/xl/agent/internal/source"
	"github.com/xueliang/xl/internal/wire"
)

// Options are one replay's settings.
type Options struct {
	Camera pipeline.Config // the camera's analysis, its Detector set
	Source string          // the recording (a file path)
	FPS    float64         // frames analysed per media second (the camera's detect_fps)
	// Realtime plays at the recording's pace instead of as fast as
	// possible.
	Realtime bool
	// Start is the time of the recording's first frame (schedules are read
	// in it); default: now.
	Start time.Time
	// Duration stops after this much of the recording (0: all of it).
	Duration time.Duration
	// Out receives one JSON line per alert (the alert as on the wire) and a
	// last {"summary": …} line; nil discards them.
	Out io.Writer
	// Snapshots, when set, is a directory where each alert's snapshot is
	// written as <alert_id>.jpg (and its clean copy as <alert_id>.clean.jpg).
	Snapshots string
	Log       *slog.Logger
}

// Summary is what a replay did.
type Summary struct {
	Frames        int            `json:"frames"`         // frames analysed
	MediaSeconds  float64        `json:"media_seconds"`  // of the recording covered
	Seconds       float64        `json:"seconds"`        // wall-clock time taken
	FPS           float64        `json:"fps"`            // frames analysed per wall-clock second
	DetectorCalls int            `json:"detector_calls"` // frames the detector ran on
	DetectorDue   int            `json:"detector_due"`   // frames it was due on (every Nth)
	GatedSkips    int            `json:"gated_skips"`    // due but skipped: nothing moved
	Detections    map[string]int `json:"detections"`     // objects detected, by class
	Events        map[string]int `json:"events"`         // events started, by scenario type
	Alerts        int            `json:"alerts"`         // alerts (start, update, end)
	Errors        int            `json:"errors"`         // alerts that could not be written
}

// Run replays opts.Source through the camera's pipeline until it ends (or
// ctx is cancelled, or Duration is reached).
func Run(ctx context.Context, opts Options) (Summary, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.FPS <= 0 {
		return Summary{}, errors.New("replay: fps must be positive")
	}
	abs, err := filepath.Abs(opts.Source)
	if err != nil {
		return Summary{}, fmt.Errorf("replay: %w", err)
	}
	if st, err := os.Stat(abs); err != nil {
		return Summary{}, fmt.Errorf("replay: source: %w", err)
	} else if !st.Mode().IsRegular() {
		return Summary{}, fmt.Errorf("replay: source %s is not a file", abs)
	}
	if opts.Snapshots != "" {
		if err := os.MkdirAll(opts.Snapshots, 0o750); err != nil {
			return Summary{}, fmt.Errorf("replay: snapshots: %w", err)
		}
	}
	start := opts.Start
	if start.IsZero() {
		start = time.Now()
	}
	reg := prometheus.NewRegistry()
	src, err := source.New(opts.Camera.CameraID, source.Config{
		URL: "file://" + abs, FPS: opts.FPS, Realtime: opts.Realtime, QueueSize: 4,
		ReconnectMin: time.Second, ReconnectMax: time.Second, MediaStart: start, Until: opts.Duration,
	}, source.NewMetrics(reg), log)
	if err != nil {
		return Summary{}, fmt.Errorf("replay: %w", err)
	}
	out := &lines{w: opts.Out, dir: opts.Snapshots}
	if out.w == nil {
		out.w = io.Discard
	}
	cam, err := pipeline.New(opts.Camera, src, out, pipeline.NewMetrics(reg), log)
	if err != nil {
		src.Close()
		return Summary{}, fmt.Errorf("replay: %w", err)
	}
	defer cam.Close()
	t0 := time.Now()
	runErr := cam.Run(ctx)
	took := time.Since(t0)
	s := cam.Summary()
	sum := Summary{Frames: s.Frames, Seconds: took.Seconds(), DetectorCalls: s.DetectorCalls, DetectorDue: s.DetectorDue,
		GatedSkips: s.GatedSkips, Detections: s.Detections, Events: s.Events, Alerts: s.Alerts, Errors: out.errors()}
	sum.MediaSeconds = float64(s.Frames) / opts.FPS
	if took > 0 {
		sum.FPS = float64(s.Frames) / took.Seconds()
	}
	if err := out.summary(sum); err != nil && runErr == nil {
		runErr = err
	}
	if runErr == nil && ctx.Err() != nil {
		runErr = ctx.Err()
	}
	return sum, runErr
}

// lines is the replay's publisher: alerts as JSON lines, snapshots as
// files.
type lines struct {
	mu   sync.Mutex
	w    io.Writer
	dir  string
	errs int
}

func (l *lines) Publish(a *wire.Alert, snapshot, clean []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a.PublishedAt.IsZero() {
		a.PublishedAt = time.Now()
	}
	b, err := wire.Marshal(a)
	if err == nil {
		_, err = fmt.Fprintf(l.w, "%s\n", b)
	}
	if err == nil && l.dir != "" {
		for _, f := range []struct {
			name string
			data []byte
		}{{a.AlertID + ".jpg", snapshot}, {a.AlertID + ".clean.jpg", clean}} {
			if len(f.data) > 0 && err == nil {
				err = os.WriteFile(filepath.Join(l.dir, f.name), f.data, 0o600)
			}
		}
	}
	if err != nil {
		l.errs++
		return fmt.Errorf("replay: %w", err)
	}
	return nil
}

func (l *lines) errors() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.errs
}

func (l *lines) summary(s Summary) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, err := json.Marshal(struct {
		Summary Summary `json:"summary"`
	}{s})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(l.w, "%s\n", b)
	return err
}
