package source

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xueliang/xl/agent/internal/gocvtest"
	"github.com/xueliang/xl/agent/internal/rtsp"
	sim "github.com/xueliang/xl/internal/camsim"
	"github.com/xueliang/xl/internal/testenv"
)

var cacheDir string

func TestMain(m *testing.M) {
	os.Exit(testenv.RunWithTempDir(m, "source-test-", &cacheDir))
}

var camsimMu sync.Mutex

// camera is a camsim server for camera "cam" on a fixed address, which a
// test can kill (Close) and start again.
type camera struct {
	t    *testing.T
	addr string
	srv  *sim.Server
	done chan error
}

func startCamera(t *testing.T, addr string) *camera {
	t.Helper()
	c := &camera{t: t, addr: addr}
	c.start()
	t.Cleanup(c.kill)
	return c
}

func (c *camera) start() {
	c.t.Helper()
	camsimMu.Lock() // the first New transcodes; the others use the cache
	srv, err := sim.New(sim.Config{Listen: c.addr, Cameras: []sim.Camera{{ID: "cam", Path: testenv.Video(c.t)}}, CacheDir: cacheDir}, nil)
	camsimMu.Unlock()
	if err != nil {
		c.t.Fatal(err)
	}
	c.srv, c.done = srv, make(chan error, 1)
	go func() { c.done <- srv.Run(context.Background()) }()
	c.addr = srv.Addr()
}

// kill stops the server abruptly: its sockets close with nothing said.
func (c *camera) kill() {
	if c.srv == nil {
		return
	}
	_ = c.srv.Close()
	if err := <-c.done; err != nil {
		c.t.Errorf("camsim: %v", err)
	}
	c.srv = nil
}

func (c *camera) url() string { return "rtsp://" + c.addr + "/cam" }

// runSource runs an RTSP source as the agent configures it (reconnect from
// 1 s up to 30 s) until the test ends; frames are dropped as they come.
func runSource(t *testing.T, url string, stall time.Duration) (*Source, *Metrics, *testenv.SyncBuffer) {
	t.Helper()
	gocvtest.CheckMats(t)
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m := NewMetrics(prometheus.NewRegistry())
	s, err := New("cam", Config{URL: url, FPS: 5, QueueSize: 2, ReconnectMin: time.Second, ReconnectMax: 30 * time.Second,
		StallTimeout: stall}, m, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		s.Close()
		if t.Failed() {
			t.Logf("source logs:\n%s", logs.String())
		}
	})
	return s, m, logs
}

func waitState(t *testing.T, s *Source, want State, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if st, _ := s.State(); st == want {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			st, _ := s.State()
			t.Fatalf("state %s after %v, want %s", st, timeout, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func rtspErrors(m *Metrics, kind string) float64 {
	return testutil.ToFloat64(m.RTSP.Errors.WithLabelValues("cam", rtsp.StreamDetect, kind))
}

// The camera is killed and started again on the same address: the source
// goes down and is streaming again within 10 s of the restart.
func TestReconnectsAfterCameraRestart(t *testing.T) {
	cam := startCamera(t, testenv.FreeAddr(t))
	s, m, _ := runSource(t, cam.url(), 2*time.Second)
	waitState(t, s, StateStreaming, 20*time.Second)

	cam.kill()
	waitState(t, s, StateDown, 10*time.Second)
	time.Sleep(2 * time.Second) // a few failed attempts: the backoff grows
	cam.start()
	took := waitState(t, s, StateStreaming, 10*time.Second)
	t.Logf("streaming again %v after the camera restarted", took.Round(time.Millisecond))
	if got := testutil.ToFloat64(m.Reconnects.WithLabelValues("cam")); got < 1 {
		t.Errorf("reconnects %v", got)
	}
	if !s.DownSince().IsZero() {
		t.Error("DownSince set while streaming")
	}
}

// A camera that keeps its socket open and sends nothing is detected after
// the stall timeout, torn down and counted; once it recovers the source
// streams again.
func TestStallIsTornDown(t *testing.T) {
	cam := startCamera(t, "127.0.0.1:0")
	s, m, logs := runSource(t, cam.url(), time.Second)
	waitState(t, s, StateStreaming, 20*time.Second)

	stalled := time.Now()
	if err := cam.srv.SetFault("cam", sim.FaultStall, 0); err != nil {
		t.Fatal(err)
	}
	took := waitState(t, s, StateDown, 5*time.Second)
	t.Logf("stall detected %v after the camera froze", took.Round(time.Millisecond))
	if took < 900*time.Millisecond {
		t.Errorf("down %v after the stall began, before the 1 s stall timeout", took)
	}
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(m.RTSP.Stalls.WithLabelValues("cam", rtsp.StreamDetect)) < 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := rtspErrors(m, "stall"); got < 1 {
		t.Errorf("errors{kind=stall} = %v", got)
	}
	if !strings.Contains(logs.String(), "no access unit within the stall timeout") {
		t.Error("no log line names the stall")
	}
	if down := s.DownSince(); down.IsZero() || down.Before(stalled) {
		t.Errorf("DownSince %v, stall began %v", down, stalled)
	}
	if err := cam.srv.ClearFault("cam"); err != nil {
		t.Fatal(err)
	}
	// The reconnect that went out during the stall waits for its DESCRIBE
	// to time out (10 s), then the next attempt succeeds.
	took = waitState(t, s, StateStreaming, 25*time.Second)
	t.Logf("streaming again %v after the camera recovered", took.Round(time.Millisecond))
}

// Garbage instead of RTSP, a bad SDP, random RTP payloads and a camera
// that stopped serving its path: each gives a clear log line and a metric,
// the source keeps trying, and it streams once the camera behaves.
func TestSurvivesMisbehavingCamera(t *testing.T) {
	for _, tc := range []struct {
		fault sim.Fault
		kind  string // xl_agent_rtsp_errors_total kind
		log   string
	}{
		{sim.FaultGarbage, "connect", "DESCRIBE"},
		{sim.FaultBadSDP, "sdp", "invalid SDP"},
		{sim.FaultStop, "connect", "404"},
		{sim.FaultBadRTP, "", ""}, // checked below: decode or depacketization errors
	} {
		t.Run(string(tc.fault), func(t *testing.T) {
			cam := startCamera(t, "127.0.0.1:0")
			if err := cam.srv.SetFault("cam", tc.fault, 0); err != nil {
				t.Fatal(err)
			}
			s, m, logs := runSource(t, cam.url(), 2*time.Second)
			deadline := time.Now().Add(15 * time.Second)
			for {
				var ok bool
				if tc.kind != "" {
					ok = rtspErrors(m, tc.kind) >= 1 && strings.Contains(logs.String(), tc.log)
				} else {
					ok = rtspErrors(m, "rtp_decode")+testutil.ToFloat64(m.DecodeErrors.WithLabelValues("cam")) >= 1
				}
				if ok {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no metric or log line for %s", tc.fault)
				}
				time.Sleep(50 * time.Millisecond)
			}
			for _, line := range strings.Split(logs.String(), "\n") {
				if strings.Contains(line, "level=WARN") && strings.Contains(line, "camera_id=cam") {
					t.Logf("log: %s", line)
					break
				}
			}
			if got := rtspErrors(m, "panic"); got != 0 {
				t.Errorf("%v panics recovered", got)
			}
			if err := cam.srv.ClearFault("cam"); err != nil {
				t.Fatal(err)
			}
			waitState(t, s, StateStreaming, 20*time.Second)
		})
	}
}

// Every per-camera metric of the issue exists from the start (at zero) and
// moves while the camera streams: frames received (access units), decoded,
// queued for analysis, dropped; reconnects; stream up; decode time; bytes
// in; last-frame age. (Frames analysed are the pipeline's.)
func TestMetricsPerCamera(t *testing.T) {
	cam := startCamera(t, "127.0.0.1:0")
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	s, err := New("cam", Config{URL: cam.url(), FPS: 5, QueueSize: 2, ReconnectMin: time.Second, ReconnectMax: time.Second}, m, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	series := func() map[string]float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, mf := range mfs {
			for _, mm := range mf.GetMetric() {
				cameraOK := false
				for _, l := range mm.GetLabel() {
					cameraOK = cameraOK || (l.GetName() == "camera_id" && l.GetValue() == "cam")
				}
				if !cameraOK {
					continue
				}
				switch {
				case mm.GetCounter() != nil:
					out[mf.GetName()] += mm.GetCounter().GetValue()
				case mm.GetGauge() != nil:
					out[mf.GetName()] += mm.GetGauge().GetValue()
				case mm.GetHistogram() != nil:
					out[mf.GetName()] += float64(mm.GetHistogram().GetSampleCount())
				}
			}
		}
		return out
	}
	for _, name := range []string{"xl_agent_frames_decoded_total", "xl_agent_frames_queued_total", "xl_agent_frames_dropped_total",
		"xl_agent_stream_reconnects_total", "xl_agent_stream_up", "xl_agent_decode_errors_total", "xl_agent_last_frame_age_seconds"} {
		if _, ok := series()[name]; !ok {
			t.Errorf("%s missing before the source ran", name)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		<-done
		s.Close()
	}()
	waitState(t, s, StateStreaming, 20*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for series()["xl_agent_frames_decoded_total"] < 20 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	got := series()
	t.Logf("%v", got)
	for name, min := range map[string]float64{
		"xl_agent_rtsp_access_units_total":   20, // received
		"xl_agent_frames_decoded_total":      20,
		"xl_agent_frames_queued_total":       5,
		"xl_agent_frames_dropped_total":      1, // nothing pops in this test: the queue of 2 sheds
		"xl_agent_stream_up":                 1,
		"xl_agent_rtsp_up":                   1,
		"xl_agent_decode_seconds":            20, // observations
		"xl_agent_rtsp_bytes_received_total": 100_000,
	} {
		if got[name] < min {
			t.Errorf("%s = %v, want at least %v", name, got[name], min)
		}
	}
	if age := got["xl_agent_last_frame_age_seconds"]; age > 1 {
		t.Errorf("last frame age %v s while streaming at 10 fps", age)
	}
	if _, ok := got["xl_agent_rtsp_reconnects_total"]; !ok {
		t.Error("xl_agent_rtsp_reconnects_total missing")
	}
}
