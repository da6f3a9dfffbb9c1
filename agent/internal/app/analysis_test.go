package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xueliang/xl/agent/internal/detect/onnxtest"
	"github.com/xueliang/xl/internal/cli"
	"github.com/xueliang/xl/internal/testenv"
	"github.com/xueliang/xl/internal/wire"
)

// analysisConfig is an agent with one file camera (vtest.avi) watched for
// intrusion, loitering and crowds on the paved crossing and for
// tampering. %[1]s is the detector section, %[2]s the outbox path, %[3]s
// the video, %[4]s extra camera keys.
const analysisConfig = `agent:
  id: box-1
mqtt:
  url: tcp://127.0.0.1:1
http:
  addr: 127.0.0.1:0
outbox:
  path: %[2]s
detector:
%[1]s
cameras:
  - id: cam-1
    url: file://%[3]s
    timezone: Asia/Shanghai
    realtime: true
%[4]s
    zones:
      - name: crossing
        tags: [restricted]
        polygon: [[0, 0.33], [0.55, 0.33], [0.75, 0.2], [1, 0.2], [1, 0.86], [0.75, 0.76], [0.5, 0.62], [0.3, 0.5], [0, 0.44]]
      - name: lawn
        polygon: [[0, 0.76], [0.18, 0.76], [0.18, 1], [0, 1]]
      - name: sign
        exclude: true
        polygon: [[0.02, 0.15], [0.08, 0.15], [0.08, 0.27], [0.02, 0.27]]
    scenarios:
      - {type: intrusion, tags: [restricted], min_duration: 1s, end_after: 3s}
      - {type: loitering, zones: [crossing], min_dwell: 5s, min_duration: 1s, end_after: 3s}
      - {type: crowd, zones: [crossing], min_count: 3, severity: 2, min_duration: 1s, end_after: 3s}
      - {type: camera_tamper, severity: 2, min_duration: 2s}
`

func yoloxSection(t *testing.T) string {
	return fmt.Sprintf("  model: %s\n  manifest: %s\n", testenv.Model(t), manifestPath(t))
}

// A wrong model is a clear start-up error, from `run` and from `replay`
// alike, and never an abort inside OpenCV: a missing file, a corrupt one,
// one whose sha256 differs from the manifest's, and a valid ONNX model with
// the wrong output shape (found by loading it in a child process, as it is
// not in the manifest).
func TestModelErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	corrupt := write("corrupt.onnx", bytes.Repeat([]byte("not a model "), 300))
	wrongShape := write("wrong_shape.onnx", onnxtest.Tiny{Op: "Identity", InDims: []int64{1, 3, 416, 416}, OutDims: []int64{-1, -1, -1}}.Encode())
	renamed := write("yolox_nano.onnx", onnxtest.Tiny{Op: "Identity", InDims: []int64{1, 3, 416, 416}, OutDims: []int64{1, 3549, 85}}.Encode())
	for _, tc := range []struct {
		name, section string
		want          []string
	}{
		{"missing file", fmt.Sprintf("  model: %s\n", filepath.Join(dir, "nothing.onnx")),
			[]string{"detector: yolox: model file", "nothing.onnx does not exist"}},
		{"corrupt file", fmt.Sprintf("  model: %s\n", corrupt), []string{"corrupt.onnx", "not an ONNX protobuf"}},
		{"not the manifest's file", fmt.Sprintf("  model: %s\n  manifest: %s\n", renamed, manifestPath(t)),
			[]string{"yolox_nano.onnx: size mismatch: manifest yolox_nano says 3678356 bytes"}},
		{"wrong output shape", fmt.Sprintf("  model: %s\n", wrongShape),
			[]string{"wrong_shape.onnx: output shape is [1 3 416 416], want [1 3549 85]"}},
		{"not in the manifest", fmt.Sprintf("  model: %s\n  manifest: %s\n  name: yolox_tiny\n", corrupt, manifestPath(t)),
			[]string{`has no model named "yolox_tiny"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := writeConfig(t, t.TempDir(), fmt.Sprintf(analysisConfig, tc.section, filepath.Join(t.TempDir(), "ob.db"), testenv.Video(t), ""))
			for _, args := range [][]string{
				{"run", "--config", cfg},
				{"replay", "--config", cfg, "--source", testenv.Video(t), "--duration", "1s"},
			} {
				var stderr, stdout bytes.Buffer
				root := Command()
				root.SetOut(&stdout)
				start := time.Now()
				code := cli.Execute(root, args, &stderr)
				t.Logf("%s: exit %d after %s: %s", args[0], code, time.Since(start).Round(time.Millisecond), strings.TrimSpace(stderr.String()))
				if code == 0 {
					t.Fatalf("%s started with a bad model", args[0])
				}
				for _, w := range tc.want {
					if !strings.Contains(stderr.String(), w) {
						t.Errorf("%s: missing %q in %q", args[0], w, stderr.String())
					}
				}
			}
		})
	}
}

// `xl-agent replay` with YOLOX-Nano on the first 15 s of vtest.avi: JSON
// lines of alerts as on the wire, events on the crossing, none on the lawn,
// a summary line, snapshots in the directory, a human summary on stderr.
func TestReplayCommand(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, fmt.Sprintf(analysisConfig, yoloxSection(t), filepath.Join(dir, "ob.db"), testenv.Video(t), ""))
	out, snaps := filepath.Join(dir, "events.jsonl"), filepath.Join(dir, "snaps")
	var stderr, stdout bytes.Buffer
	root := Command()
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	code := cli.Execute(root, []string{"replay", "--config", cfg, "--camera", "cam-1", "--source", testenv.Video(t),
		"--out", out, "--snapshots", snaps, "--duration", "15s", "--start", "2026-11-21T21:00:00+08:00"}, &stderr)
	t.Log(stderr.String())
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var alerts []*wire.Alert
	var summary struct {
		Summary struct {
			Frames     int
			Detections map[string]int
			Events     map[string]int
		}
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if bytes.HasPrefix(sc.Bytes(), []byte(`{"summary"`)) {
			if err := json.Unmarshal(sc.Bytes(), &summary); err != nil {
				t.Fatal(err)
			}
			continue
		}
		a, err := (wire.Decoder{}).DecodeAlert(sc.Bytes())
		if err != nil {
			t.Fatalf("%v: %s", err, sc.Bytes())
		}
		alerts = append(alerts, a)
	}
	if summary.Summary.Frames < 74 || summary.Summary.Frames > 76 || summary.Summary.Detections["person"] == 0 {
		t.Errorf("summary %+v", summary.Summary)
	}
	first := time.Date(2026, 11, 21, 13, 0, 0, 0, time.UTC)
	types := map[string]bool{}
	for _, a := range alerts {
		types[a.Type] = true
		if a.Zone == "lawn" || a.Type == wire.TypeCameraTamper {
			t.Errorf("false alert %s %s %s", a.Type, a.Zone, a.Phase)
		}
		if a.StartedAt.Before(first) || a.DetectedAt.After(first.Add(16*time.Second)) {
			t.Errorf("alert times %s–%s outside the replayed 15 s from --start", a.StartedAt, a.DetectedAt)
		}
		if a.Phase == wire.PhaseStart {
			if _, err := os.Stat(filepath.Join(snaps, a.AlertID+".jpg")); err != nil {
				t.Errorf("snapshot: %v", err)
			}
		}
	}
	for _, typ := range []string{wire.TypeIntrusion, wire.TypeLoitering, wire.TypeCrowd} {
		if !types[typ] || summary.Summary.Events[typ] == 0 {
			t.Errorf("no %s in %v / %v", typ, types, summary.Summary.Events)
		}
	}
	if !strings.Contains(stderr.String(), "detections: person") || !strings.Contains(stderr.String(), "events: ") {
		t.Errorf("stderr summary: %s", stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout used although --out was given: %q", stdout.String())
	}
}

// Without a model file the HOG person detector is used: the demo runs on a
// machine with no model.
func TestReplayWithHOG(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, fmt.Sprintf(analysisConfig, "  model: \"\"", filepath.Join(dir, "ob.db"), testenv.Video(t), ""))
	var stdout, stderr bytes.Buffer
	root := Command()
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	if code := cli.Execute(root, []string{"replay", "--config", cfg, "--source", testenv.Video(t), "--duration", "8s"}, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	t.Log(stderr.String())
	if !strings.Contains(stderr.String(), "opencv-hog-person") || !strings.Contains(stderr.String(), "detections: person") {
		t.Errorf("stderr: %s", stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if !strings.HasPrefix(lines[len(lines)-1], `{"summary":`) {
		t.Errorf("last line %q", lines[len(lines)-1])
	}
}

func TestFixedChanges(t *testing.T) {
	load := func(extra, zonesAndURL string) *Config {
		t.Helper()
		dir := t.TempDir()
		body := fmt.Sprintf(analysisConfig, "  model: \"\"", "data/ob.db", zonesAndURL, extra)
		cfg, err := LoadConfig(writeConfig(t, dir, body))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	base := load("", "/videos/a.avi")
	for _, tc := range []struct {
		name string
		cfg  *Config
		want []string
	}{
		{"same", load("", "/videos/a.avi"), nil},
		{"site, position and time zone may change", load("    site: 立新闸\n    geo: {lat: 31.8, lon: 121.1}", "/videos/a.avi"), nil},
		{"url", load("", "/videos/b.avi"), []string{"cameras[0].url"}},
		{"motion and detection", load("    motion: {width: 640}\n    detect: {every: 2}", "/videos/a.avi"),
			[]string{"cameras[0].motion.width", "cameras[0].detect.every"}},
	} {
		got := fixedChanges(base, tc.cfg)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	other := *base
	other.Cameras = append(slices.Clone(base.Cameras), base.Cameras[0])
	other.MQTT.URL = "tcp://10.0.0.1:1883"
	if got := fixedChanges(base, &other); !slices.Equal(got, []string{"cameras (1 → 2 cameras)", "mqtt.url"}) {
		t.Errorf("camera added: %v", got)
	}
}

// Hot reload, by SIGHUP and by the reload command, of a running agent whose
// camera streams a file at its own pace: zones and scenarios change without
// the stream being reopened; a change that needs a restart, or a file with
// a mistake, is refused with the reason and changes nothing.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	ob := filepath.Join(dir, "ob.db")
	video := testenv.Video(t)
	motionOnly := "    detect: {enabled: false}"
	body := func(extra string, scenarios string) string {
		b := fmt.Sprintf(analysisConfig, "  model: \"\"", ob, video, motionOnly+extra)
		i := strings.Index(b, "    scenarios:\n")
		return b[:i] + "    scenarios:\n" + scenarios
	}
	v1 := body("", "      - {type: intrusion, zones: [crossing], min_duration: 1s, end_after: 3s}\n")
	path := writeConfig(t, dir, v1)
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, path, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	cam := a.cameras[0]
	analysed := func() float64 { return counter(t, a, "xl_agent_frames_analysed_total") }
	waitUntil(t, 20*time.Second, "the camera streams", func() bool { return cam.State().State == "streaming" && analysed() > 3 })

	// 1. Zones and scenarios change: applied between two frames.
	v2 := body("", "      - {type: intrusion, zones: [crossing, lawn], min_motion: 0.02, min_duration: 1s, end_after: 3s}\n"+
		"      - {type: camera_tamper}\n")
	writeConfig(t, dir, v2)
	res, err := a.Reload()
	if err != nil || !res.Changed || res.ConfigVersion == res.PreviousVersion {
		t.Fatalf("reload: %+v, %v", res, err)
	}
	if got := cam.Rules(); !slices.Equal(got, []string{"intrusion/crossing", "intrusion/lawn", "camera_tamper/"}) {
		t.Errorf("rules after the reload: %v", got)
	}
	if st := a.status(); st.ConfigVersion != res.ConfigVersion {
		t.Errorf("status reports config version %s, want %s", st.ConfigVersion, res.ConfigVersion)
	}
	before := analysed()
	waitUntil(t, 10*time.Second, "frames analysed after the reload", func() bool { return analysed() > before+3 })

	// 2. A change that needs a restart: refused, nothing changes.
	writeConfig(t, dir, strings.Replace(v2, "realtime: true", "realtime: false", 1))
	if _, err := a.Reload(); !errors.Is(err, ErrReloadRefused) ||
		!strings.Contains(err.Error(), "cannot change while the agent runs (restart xl-agent to apply them): cameras[0].realtime") {
		t.Errorf("refused reload: %v", err)
	}
	// 3. A mistake: refused with the configuration error.
	writeConfig(t, dir, strings.Replace(v2, "min_motion: 0.02", "min_motion: 2", 1))
	if _, err := a.Reload(); !errors.Is(err, ErrReloadRefused) || !strings.Contains(err.Error(), "scenarios[0].min_motion: 2 is outside (0, 1]") {
		t.Errorf("invalid file: %v", err)
	}
	if got := cam.Rules(); len(got) != 3 || a.config().Version != res.ConfigVersion {
		t.Errorf("a refused reload changed the rules %v or version %s", got, a.config().Version)
	}

	// 4. SIGHUP.
	v3 := body("", "      - {type: intrusion, zones: [lawn]}\n")
	writeConfig(t, dir, v3)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "SIGHUP applied", func() bool { return slices.Equal(cam.Rules(), []string{"intrusion/lawn"}) })

	// 5. The reload command from central: unchanged, then changed.
	reply := a.command(ctx, &wire.Cmd{CmdID: "c1", Cmd: wire.CmdReload})
	if reply.Error != "" || reply.Result["changed"] != false || reply.Result["applied"] != true {
		t.Errorf("reload command, file unchanged: %+v", reply)
	}
	writeConfig(t, dir, v1)
	reply = a.command(ctx, &wire.Cmd{CmdID: "c2", Cmd: wire.CmdReload})
	if reply.Error != "" || reply.Result["changed"] != true || !slices.Equal(cam.Rules(), []string{"intrusion/crossing"}) {
		t.Errorf("reload command: %+v, rules %v", reply, cam.Rules())
	}
	writeConfig(t, dir, strings.Replace(v1, "tcp://127.0.0.1:1", "tcp://127.0.0.1:2", 1))
	reply = a.command(ctx, &wire.Cmd{CmdID: "c3", Cmd: wire.CmdReload})
	if !strings.Contains(reply.Error, "mqtt.url") || reply.Result["applied"] != false {
		t.Errorf("reload command, refused: %+v", reply)
	}

	// The stream was never reopened.
	if n := counter(t, a, "xl_agent_stream_reconnects_total"); n != 0 {
		t.Errorf("%v reconnects", n)
	}
	if st := cam.State().State; st != "streaming" {
		t.Errorf("camera %s after the reloads", st)
	}
}

func counter(t *testing.T, a *Agent, name string) float64 {
	t.Helper()
	mfs, err := a.Reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }
