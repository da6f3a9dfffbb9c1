package replay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xueliang/xl/agent/internal/detect"
	"github.com/xueliang/xl/agent/internal/detect/detecttest"
	"github.com/xueliang/xl/agent/internal/event"
	"github.com/xueliang/xl/agent/internal/gocvtest"
	"github.com/xueliang/xl/agent/internal/motion"
	"github.com/xueliang/xl/agent/internal/pipeline"
	"github.com/xueliang/xl/agent/internal/zone"
	"github.com/xueliang/xl/internal/testenv"
	"github.com/xueliang/xl/internal/wire"
)

// cacheDir holds the degraded copies of vtest.avi, made once per run.
var cacheDir string

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "replay-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cacheDir = d
	code := gocvtest.RunCheckingMats(m)
	os.RemoveAll(d)
	os.Exit(code)
}

// The zones of the tests, chosen on frames of vtest.avi: the paved crossing
// where people walk all through the clip, and a corner of the lawn at the
// bottom left where nobody does (the people who cross the lawn, 53–73 s
// into the clip, pass further right and higher up).
var (
	crossing = [][2]float64{{0, 0.33}, {0.55, 0.33}, {0.75, 0.2}, {1, 0.2}, {1, 0.86}, {0.75, 0.76}, {0.5, 0.62}, {0.3, 0.5}, {0, 0.44}}
	lawn     = [][2]float64{{0, 0.76}, {0.18, 0.76}, {0.18, 1}, {0, 1}}
	// start is the media time of the first frame: 20:00 in Shanghai.
	start, _ = time.Parse(time.RFC3339, "2026-11-21T20:00:00+08:00")
)

const (
	loiterDwell    = 10 * time.Second
	updateInterval = 10 * time.Second
)

// yolox loads the shared YOLOX-Nano, verified against the repository's
// manifest (skipped without the model, except in CI).
func yolox(t testing.TB) (*detect.YOLOX, wire.Model) {
	t.Helper()
	y := detecttest.YOLOX(t, nil)
	info := y.Model()
	return y, wire.Model{Name: info.Name, Version: info.Version, SHA256: info.SHA256}
}

// camera is the analysis the tests replay: intrusion, loitering and crowd
// (3 people) on both zones, a crowd of 15 that never gathers, and the
// tamper check; the detector every third frame, gated by motion.
func camera(t testing.TB) pipeline.Config {
	t.Helper()
	y, model := yolox(t)
	lc := event.Config{MinDuration: time.Second, EndAfter: 3 * time.Second, UpdateInterval: updateInterval}
	both := []string{"crossing", "lawn"}
	shanghai, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	return pipeline.Config{
		AgentID: "box-1", CameraID: "cam-1", ConfigVersion: "test", SnapshotQuality: 80, CleanSnapshot: true,
		Location: shanghai,
		Motion:   motion.Config{Width: 640, History: 300, VarThreshold: 16, Warmup: 25, MinBlobRatio: 0.0005},
		Zones: []zone.Zone{
			{Name: "crossing", Tags: []string{"restricted"}, Polygon: crossing},
			{Name: "lawn", Tags: []string{"restricted"}, Polygon: lawn},
		},
		Scenarios: []pipeline.Scenario{
			{Type: wire.TypeIntrusion, Severity: 3, Zones: both, Lifecycle: lc},
			{Type: wire.TypeLoitering, Severity: 3, Zones: both, MinDwell: loiterDwell, Lifecycle: lc},
			{Type: wire.TypeCrowd, Severity: 2, Zones: both, MinCount: 3, Lifecycle: lc},
			{Type: wire.TypeCrowd, Severity: 1, Tags: []string{"restricted"}, MinCount: 15, Lifecycle: lc},
			{Type: wire.TypeCameraTamper, Severity: 2, Lifecycle: event.Config{MinDuration: 2 * time.Second, EndAfter: 3 * time.Second, UpdateInterval: time.Minute}},
		},
		Detector: y, DetectorModel: model, DetectorClasses: detect.COCO80,
		Detect: pipeline.DetectConfig{Gating: pipeline.GateMotion, Every: 3},
	}
}

// result is a replay's output, parsed back.
type result struct {
	alerts  []*wire.Alert
	summary Summary
	snaps   string // the snapshot directory
}

func (r result) of(typ, zone string) []*wire.Alert {
	var out []*wire.Alert
	for _, a := range r.alerts {
		if a.Type == typ && a.Zone == zone {
			out = append(out, a)
		}
	}
	return out
}

func (r result) starts(typ, zone string) []*wire.Alert {
	var out []*wire.Alert
	for _, a := range r.of(typ, zone) {
		if a.Phase == wire.PhaseStart {
			out = append(out, a)
		}
	}
	return out
}

// replay runs src through cfg for d of media time (0: all of it) and
// parses the JSON lines it wrote.
func replay(t *testing.T, cfg pipeline.Config, src string, d time.Duration) result {
	t.Helper()
	var out bytes.Buffer
	res := result{snaps: t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sum, err := Run(ctx, Options{Camera: cfg, Source: src, FPS: 5, Start: start, Duration: d, Out: &out, Snapshots: res.snaps})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d frames in %.1f s (%.1f fps), detector on %d of %d due frames (%d skipped: nothing moved), detections %v, events %v",
		filepath.Base(src), sum.Frames, sum.Seconds, sum.FPS, sum.DetectorCalls, sum.DetectorDue, sum.GatedSkips, sum.Detections, sum.Events)
	sc := bufio.NewScanner(&out)
	sc.Buffer(nil, wire.MaxAlertBytes*2)
	var last []byte
	for sc.Scan() {
		line := sc.Bytes()
		last = append(last[:0], line...)
		if bytes.HasPrefix(line, []byte(`{"summary"`)) {
			continue
		}
		a, err := (wire.Decoder{Now: func() time.Time { return time.Now().Add(24 * time.Hour) }}).DecodeAlert(line)
		if err != nil {
			t.Fatalf("a line is not an alert of the wire contract: %v\n%s", err, line)
		}
		res.alerts = append(res.alerts, a)
	}
	var s struct{ Summary Summary }
	if err := json.Unmarshal(last, &s); err != nil || s.Summary.Frames == 0 {
		t.Fatalf("the last line is not the summary: %v\n%s", err, last)
	}
	res.summary = s.Summary
	if s.Summary.Frames != sum.Frames || s.Summary.Alerts != len(res.alerts) {
		t.Errorf("summary line %+v, returned %+v, %d alert lines", s.Summary, sum, len(res.alerts))
	}
	return res
}

// checkEvidence: a start or update carries its annotated snapshot and the
// clean copy, each matching its sha256; an end carries none.
func checkEvidence(t *testing.T, r result, a *wire.Alert) {
	t.Helper()
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(r.snaps, name))
		if err != nil {
			return nil
		}
		return b
	}
	snap, clean := read(a.AlertID+".jpg"), read(a.AlertID+".clean.jpg")
	if a.Phase == wire.PhaseEnd {
		if snap != nil || a.Evidence.SnapshotSHA256 != "" {
			t.Errorf("%s %s end carries a snapshot", a.Type, a.Zone)
		}
		return
	}
	for _, ev := range []struct {
		name string
		data []byte
		sha  string
	}{{"snapshot", snap, a.Evidence.SnapshotSHA256}, {"clean snapshot", clean, a.Evidence.CleanSnapshotSHA256}} {
		sum := sha256.Sum256(ev.data)
		if len(ev.data) < 1000 || ev.data[0] != 0xFF || ev.data[1] != 0xD8 || hex.EncodeToString(sum[:]) != ev.sha {
			t.Errorf("%s %s %s: %s missing or not matching its sha256 (%d bytes)", a.Type, a.Zone, a.Phase, ev.name, len(ev.data))
		}
	}
	if string(snap) == string(clean) {
		t.Errorf("%s %s: the annotated snapshot is the clean one", a.Type, a.Zone)
	}
	if _, err := wire.ParseAgentTopic(wire.EvidenceTopic("box-1", a.Evidence.CleanSnapshotID, wire.EvidenceSnapshot)); err != nil {
		t.Errorf("clean snapshot id: %v", err)
	}
}

// The whole of vtest.avi with YOLOX-Nano: the crossing raises intrusion,
// loitering and crowd events with the people as objects; the corner of the
// lawn raises nothing; a crowd of 15 never gathers; the view is never
// judged tampered with.
func TestVtestScenarios(t *testing.T) {
	cfg := camera(t)
	r := replay(t, cfg, testenv.Video(t), 0)
	if r.summary.Frames < 390 || r.summary.Frames > 400 {
		t.Errorf("%d frames analysed, want the ~398 of 79.5 s at 5 fps", r.summary.Frames)
	}
	if r.summary.Detections["person"] < 500 || r.summary.DetectorCalls > r.summary.Frames/2+1 {
		t.Errorf("detector: %d calls for %d frames, %d people", r.summary.DetectorCalls, r.summary.Frames, r.summary.Detections["person"])
	}
	for _, a := range r.alerts {
		if a.Zone == "lawn" {
			t.Errorf("an event where nobody walks: %s %s at %s", a.Type, a.Phase, a.DetectedAt.Sub(start))
		}
		if a.Type == wire.TypeCameraTamper {
			t.Errorf("the view judged tampered with: %s %s at %s", a.Reason, a.Phase, a.DetectedAt.Sub(start))
		}
		if a.Type == wire.TypeCrowd && a.Severity == 1 {
			t.Errorf("a crowd of 15 that never gathered: %s", a.Phase)
		}
		if a.Model == nil || a.Model.Name != "yolox_nano" || a.Model.SHA256 != "e8af074932d4ed7e232278e3055cefcdea3edf178874a3694ae292649fb464dd" || a.ConfigVersion != "test" {
			t.Errorf("model %+v, config version %q", a.Model, a.ConfigVersion)
		}
		checkEvidence(t, r, a)
	}

	for _, typ := range []string{wire.TypeIntrusion, wire.TypeLoitering, wire.TypeCrowd} {
		starts := r.starts(typ, "crossing")
		if len(starts) == 0 {
			t.Errorf("no %s on the crossing", typ)
			continue
		}
		ends := 0
		for _, a := range r.of(typ, "crossing") {
			if a.Phase == wire.PhaseEnd {
				ends++
			}
		}
		if ends != len(starts) {
			t.Errorf("%s: %d starts, %d ends", typ, len(starts), ends)
		}
		for _, a := range starts {
			people := 0
			for _, o := range a.Objects {
				if o.Class != "person" || o.TrackID <= 0 || o.Score < 0.3 {
					t.Errorf("%s object %+v", typ, o)
				}
				if feet := zone.Anchor(o.BBox); !zone.Contains(crossing, feet) {
					t.Errorf("%s: a person at %v stands outside the crossing", typ, feet)
				}
				if typ == wire.TypeLoitering && o.DwellS < loiterDwell.Seconds() {
					t.Errorf("loitering: a person there for %.1f s only", o.DwellS)
				}
				people++
			}
			switch {
			case typ == wire.TypeCrowd && people < 3:
				t.Errorf("crowd of %d people", people)
			case people < 1:
				t.Errorf("%s without people", typ)
			}
			t.Logf("%s start at %4.1f s: %d people", typ, a.DetectedAt.Sub(start).Seconds(), people)
		}
	}
	// Updates of one event at most every update interval.
	last := map[string]time.Time{}
	for _, a := range r.alerts {
		if prev, ok := last[a.EventID]; ok && a.Phase == wire.PhaseUpdate && a.DetectedAt.Sub(prev) < updateInterval {
			t.Errorf("%s update %s after the previous alert", a.Type, a.DetectedAt.Sub(prev))
		}
		last[a.EventID] = a.DetectedAt
	}
}

// degraded makes (once per run) a copy of the first 50 s of vtest.avi with
// an ffmpeg filter: dark and noisy as at night all along, or from second 30
// blurred, blacked out, or shifted 60 px right (the camera turned).
func degraded(t *testing.T, kind string) string {
	t.Helper()
	filters := map[string][]string{
		"night":    {"-vf", "eq=brightness=-0.35:contrast=0.45:saturation=0.5,noise=alls=20:allf=t"},
		"blur":     {"-vf", "gblur=sigma=6:enable='gte(t,30)'"},
		"blackout": {"-vf", "drawbox=x=0:y=0:w=iw:h=ih:color=black:t=fill:enable='gte(t,30)'"},
		"shift": {"-filter_complex", "[0:v]split[a][b];[b]crop=iw-60:ih:0:0,pad=iw+60:ih:60:0:black[s];" +
			"[a][s]overlay=0:0:enable='gte(t,30)'"},
	}
	f, ok := filters[kind]
	if !ok {
		t.Fatalf("no degradation %q", kind)
	}
	once, _ := makeOnce.LoadOrStore(kind, &sync.Once{})
	out := filepath.Join(cacheDir, kind+".avi")
	once.(*sync.Once).Do(func() {
		if _, err := exec.LookPath("ffmpeg"); err != nil {
			return // reported below
		}
		args := append([]string{"-loglevel", "error", "-y", "-i", testenv.Video(t), "-t", "50"}, f...)
		args = append(args, "-an", "-c:v", "mjpeg", "-q:v", "3", out)
		if b, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
			os.Remove(out)
			t.Logf("ffmpeg %s: %v\n%s", strings.Join(args, " "), err, b)
		}
	})
	if _, err := os.Stat(out); err != nil {
		t.Fatalf("no %s copy of the test video (is ffmpeg installed? make deps): %v", kind, err)
	}
	return out
}

var makeOnce sync.Map

// Degraded copies: nothing new in the empty corner of the lawn, and
// camera_tamper for the black-out (covered), the blur (blurred) and the
// shift (moved), from second 30 and not before; the dark, noisy night is
// no tampering.
func TestDegradedCopies(t *testing.T) {
	cfg := camera(t)
	for _, tc := range []struct {
		kind   string
		reason string // "" for none
	}{
		{"night", ""},
		{"blackout", "covered"},
		{"blur", "blurred"},
		{"shift", "moved"},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			r := replay(t, cfg, degraded(t, tc.kind), 0)
			if r.summary.MediaSeconds < 49 {
				t.Errorf("replayed %.1f s of the 50 s copy", r.summary.MediaSeconds)
			}
			for _, a := range r.alerts {
				if a.Zone == "lawn" {
					t.Errorf("a false event where nobody walks: %s %s at %s", a.Type, a.Phase, a.DetectedAt.Sub(start))
				}
			}
			tamper := r.starts(wire.TypeCameraTamper, "")
			if tc.reason == "" {
				for _, a := range tamper {
					t.Errorf("camera_tamper (%s) at %s on a view that was not tampered with", a.Reason, a.StartedAt.Sub(start))
				}
				return
			}
			if len(tamper) == 0 {
				t.Fatalf("no camera_tamper for the %s", tc.kind)
			}
			for _, a := range tamper {
				at := a.StartedAt.Sub(start)
				t.Logf("camera_tamper %s from %s (alert at %s)", a.Reason, at, a.DetectedAt.Sub(start))
				if at < 30*time.Second || at > 32*time.Second || a.Reason != tc.reason {
					t.Errorf("camera_tamper %q from %s, want %q from 30 s", a.Reason, at, tc.reason)
				}
				if a.Model == nil || a.Model.Name != pipeline.TamperModel.Name {
					t.Errorf("model %+v", a.Model)
				}
				checkEvidence(t, r, a)
			}
		})
	}
}

// With -tags matprofile: a replay (with events, snapshots and the tamper
// check) leaves no gocv Mat open.
func TestReplayLeavesNoMats(t *testing.T) {
	cfg := camera(t)
	gocvtest.CheckMats(t)
	r := replay(t, cfg, testenv.Video(t), 12*time.Second)
	if len(r.starts(wire.TypeIntrusion, "crossing")) == 0 {
		t.Error("no event in the first 12 s: the check would miss the evidence path")
	}
}

func TestBadOptions(t *testing.T) {
	cfg := camera(t)
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{Camera: cfg, Source: filepath.Join(t.TempDir(), "none.avi"), FPS: 5}, "no such file"},
		{Options{Camera: cfg, Source: t.TempDir(), FPS: 5}, "is not a file"},
		{Options{Camera: cfg, Source: testenv.Video(t)}, "fps must be positive"},
	} {
		if _, err := Run(context.Background(), tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
}
