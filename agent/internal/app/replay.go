package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/xueliang/xl/agent/internal/replay"
)

// ReplayOptions are the flags of `xl-agent replay`.
type ReplayOptions struct {
	CameraID  string
	Source    string
	Out       string // file for the JSON lines; empty: stdout
	Snapshots string
	Realtime  bool
	Start     string // RFC 3339; empty: now
	Duration  time.Duration
}

// Replay runs one configured camera's pipeline over a recording: the JSON
// lines go to o.Out (or stdout), a short human summary to stderr.
func Replay(ctx context.Context, cfg *Config, o ReplayOptions, stdout, stderr io.Writer, log *slog.Logger) (err error) {
	cc, err := replayCamera(cfg, o.CameraID)
	if err != nil {
		return err
	}
	var start time.Time
	if o.Start != "" {
		if start, err = time.Parse(time.RFC3339, o.Start); err != nil {
			return fmt.Errorf("--start: %w", err)
		}
	}
	// Only this camera's detector is made.
	one := *cfg
	one.Cameras = []CameraConfig{cc}
	det, err := newDetector(&one, nil, log)
	if err != nil {
		return err
	}
	defer det.Close()
	pc, err := pipelineConfig(cfg, cc, det)
	if err != nil {
		return err
	}
	out := stdout
	if o.Out != "" {
		f, err := os.Create(o.Out)
		if err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		defer func() {
			if cerr := f.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("--out: %w", cerr)
			}
		}()
		out = f
	}
	sum, err := replay.Run(ctx, replay.Options{Camera: pc, Source: o.Source, FPS: cc.DetectFPS, Realtime: o.Realtime,
		Start: start, Duration: o.Duration, Out: out, Snapshots: o.Snapshots, Log: log})
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	fmt.Fprintf(stderr, "replay of %s on camera %s (%s): %d frames (%.1f s of video) in %.1f s, %.1f frames/s\n",
		o.Source, cc.ID, pc.DetectorModel.Name, sum.Frames, sum.MediaSeconds, sum.Seconds, sum.FPS)
	if pc.Detector != nil {
		fmt.Fprintf(stderr, "  detector ran on %d of %d frames (due on %d, %d skipped: nothing moved)\n",
			sum.DetectorCalls, sum.Frames, sum.DetectorDue, sum.GatedSkips)
		fmt.Fprintf(stderr, "  detections: %s\n", counts(sum.Detections))
	}
	fmt.Fprintf(stderr, "  events: %s (%d alerts)\n", counts(sum.Events), sum.Alerts)
	return err
}

// replayCamera finds the camera to replay: the one named, or the only one.
func replayCamera(cfg *Config, id string) (CameraConfig, error) {
	var ids []string
	for _, c := range cfg.Cameras {
		if c.ID == id || (id == "" && len(cfg.Cameras) == 1) {
			return c, nil
		}
		ids = append(ids, c.ID)
	}
	if id == "" {
		return CameraConfig{}, fmt.Errorf("--camera: the configuration has %d cameras, name one of %s", len(ids), strings.Join(ids, ", "))
	}
	return CameraConfig{}, fmt.Errorf("--camera: no camera %q in the configuration (it has %s)", id, strings.Join(ids, ", "))
}

func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || m[keys[i]] == m[keys[j]] && keys[i] < keys[j] })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
