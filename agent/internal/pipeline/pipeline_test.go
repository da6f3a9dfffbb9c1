package pipeline

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xueliang/xl/agent/internal/event"
	"github.com/xueliang/xl/agent/internal/motion"
	"github.com/xueliang/xl/agent/internal/source"
	"github.com/xueliang/xl/internal/testenv"
	"github.com/xueliang/xl/internal/wire"
)

// recorder keeps what the pipeline publishes, as the MQTT publisher would.
type recorder struct {
	mu     sync.Mutex
	alerts []*wire.Alert
	snaps  map[string][]byte
}

func (r *recorder) Publish(a *wire.Alert, snap, clean []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.alerts = append(r.alerts, a)
	if snap != nil {
		r.snaps[a.AlertID] = snap
	}
	if clean != nil {
		r.snaps[a.Evidence.CleanSnapshotID] = clean
	}
	return nil
}

// Replays vtest.avi as fast as possible through the real source, MOG2 and
// lifecycle: the path where people walk 6–19 s into the clip raises one
// intrusion event with a start and an end; the brick wall below the
// windows, where nobody can go, raises none.
func TestReplayRaisesIntrusionOnlyWherePeopleWalk(t *testing.T) {
	reg := prometheus.NewRegistry()
	log := slog.New(slog.DiscardHandler)
	src, err := source.New("cam-1", source.Config{URL: "file://" + testenv.Video(t), FPS: 5, Realtime: false, QueueSize: 4,
		ReconnectMin: time.Second, ReconnectMax: time.Second}, source.NewMetrics(reg), log)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{snaps: map[string][]byte{}}
	lc := event.Config{MinDuration: time.Second, EndAfter: 4 * time.Second, UpdateInterval: 30 * time.Second}
	cam, err := New(Config{
		AgentID: "a1", CameraID: "cam-1", ConfigVersion: "v1", SnapshotQuality: 80,
		Motion: motion.Config{Width: 640, History: 300, VarThreshold: 16, Warmup: 25, MinBlobRatio: 0.0005},
		Zones: []Zone{
			{Name: "north_path", Polygon: [][2]float64{{0, 0.12}, {0.40, 0.10}, {0.40, 0.22}, {0, 0.25}}},
			{Name: "wall", Polygon: [][2]float64{{0.43, 0.135}, {0.74, 0.135}, {0.74, 0.175}, {0.43, 0.175}}},
		},
		Scenarios: []Scenario{{Type: wire.TypeIntrusion, Severity: 3, Zones: []string{"north_path", "wall"}, MinMotion: 0.01, Lifecycle: lc}},
	}, src, rec, NewMetrics(reg), log)
	if err != nil {
		t.Fatal(err)
	}
	defer cam.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := cam.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(NewMetricsFor(reg, "xl_agent_frames_analysed_total")); n < 390 || n > 400 {
		t.Errorf("analysed %v frames, want the ~397 of 79.5 s at 5 fps", n)
	}

	var path []*wire.Alert
	for _, a := range rec.alerts {
		if a.Zone == "wall" {
			t.Errorf("false alarm on the wall: %+v", a)
		}
		if a.Zone == "north_path" {
			path = append(path, a)
		}
	}
	if len(path) < 2 || path[0].Phase != wire.PhaseStart || path[1].Phase != wire.PhaseEnd || path[0].EventID != path[1].EventID {
		t.Fatalf("want start then end on north_path, got %d alerts: %+v", len(path), path)
	}
	start, end := path[0], path[1]
	if d := end.DetectedAt.Sub(start.StartedAt); d < 8*time.Second || d > 20*time.Second {
		t.Errorf("event lasted %s of media time, want the ~13 s people spend on the path", d)
	}
	if len(start.Objects) == 0 || start.Objects[0].Class != "motion" {
		t.Errorf("start carries no objects: %+v", start.Objects)
	}
	snap := rec.snaps[start.AlertID]
	if len(snap) < 1000 || snap[0] != 0xFF || snap[1] != 0xD8 || start.Evidence.SnapshotSHA256 == "" {
		t.Errorf("start has no JPEG snapshot (%d bytes, sha %q)", len(snap), start.Evidence.SnapshotSHA256)
	}
	if _, ok := rec.snaps[end.AlertID]; ok {
		t.Error("end phase should carry no snapshot")
	}
	for _, a := range rec.alerts {
		b, err := wire.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := (wire.Decoder{}).DecodeAlert(b); err != nil {
			t.Errorf("alert does not meet the wire contract: %v", err)
		}
	}
}

// NewMetricsFor reads one counter's total across labels from reg.
func NewMetricsFor(reg *prometheus.Registry, name string) prometheus.Collector {
	mfs, _ := reg.Gather()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name})
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				c.Add(m.GetCounter().GetValue())
			}
		}
	}
	return c
}
