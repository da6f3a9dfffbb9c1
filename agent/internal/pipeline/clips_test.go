package pipeline

import (
	"context"
	"log/slog"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xueliang/xl/agent/internal/event"
	"github.com/xueliang/xl/agent/internal/motion"
	"github.com/xueliang/xl/agent/internal/source"
	"github.com/xueliang/xl/internal/testenv"
	"github.com/xueliang/xl/internal/wire"
)

// clipRequests records what the pipeline asks of a ClipRequester.
type clipRequests struct {
	mu   sync.Mutex
	reqs []clipRequest
}

type clipRequest struct {
	camera, alert string
	at            time.Time
}

func (c *clipRequests) RequestClip(cameraID, alertID string, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reqs = append(c.reqs, clipRequest{cameraID, alertID, at})
}

// Every event start asks for a clip of its alert at the detection instant;
// updates and ends do not.
func TestEventStartRequestsClip(t *testing.T) {
	// The first 22 s of the footage: people walk the north path from 6 s.
	short := filepath.Join(t.TempDir(), "short.avi")
	if out, err := exec.Command("ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", testenv.Video(t), "-t", "22", "-c", "copy", short).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v %s", err, out)
	}
	reg := prometheus.NewRegistry()
	log := slog.New(slog.DiscardHandler)
	src, err := source.New("cam-1", source.Config{URL: "file://" + short, FPS: 5, QueueSize: 4,
		ReconnectMin: time.Second, ReconnectMax: time.Second}, source.NewMetrics(reg), log)
	if err != nil {
		t.Fatal(err)
	}
	pub := &recorder{snaps: map[string][]byte{}}
	clips := &clipRequests{}
	cam, err := New(Config{
		AgentID: "a1", CameraID: "cam-1", SnapshotQuality: 80, Clips: clips,
		Motion: motion.Config{Width: 640, History: 300, VarThreshold: 16, Warmup: 25, MinBlobRatio: 0.0005},
		Zones:  []Zone{{Name: "north_path", Polygon: [][2]float64{{0, 0.12}, {0.40, 0.10}, {0.40, 0.22}, {0, 0.25}}}},
		Scenarios: []Scenario{{Type: wire.TypeIntrusion, Severity: 3, Zones: []string{"north_path"}, MinMotion: 0.01,
			Lifecycle: event.Config{MinDuration: time.Second, EndAfter: 2 * time.Second, UpdateInterval: time.Second}}},
	}, src, pub, NewMetrics(reg), log)
	if err != nil {
		t.Fatal(err)
	}
	defer cam.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cam.Run(ctx); err != nil {
		t.Fatal(err)
	}
	var starts []*wire.Alert
	phases := map[wire.Phase]int{}
	for _, a := range pub.alerts {
		phases[a.Phase]++
		if a.Phase == wire.PhaseStart {
			starts = append(starts, a)
		}
	}
	if len(starts) == 0 || phases[wire.PhaseUpdate]+phases[wire.PhaseEnd] == 0 {
		t.Fatalf("phases %v: want starts and later phases", phases)
	}
	if len(clips.reqs) != len(starts) {
		t.Fatalf("%d clip requests for %d event starts (phases %v)", len(clips.reqs), len(starts), phases)
	}
	for i, a := range starts {
		r := clips.reqs[i]
		if r.camera != "cam-1" || r.alert != a.AlertID || !r.at.Equal(a.DetectedAt) {
			t.Errorf("request %+v for start alert %s detected at %v", r, a.AlertID, a.DetectedAt)
		}
	}
}
