package pipeline

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/xueliang/xl/agent/internal/detect"
	"github.com/xueliang/xl/agent/internal/detect/detecttest"
	"github.com/xueliang/xl/agent/internal/event"
	"github.com/xueliang/xl/agent/internal/motion"
	"github.com/xueliang/xl/internal/testenv"
)

// benchFrames is how much of vtest.avi a pass analyses: the first 40 s at
// 5 frames per second (every other frame), people walking all along.
const (
	benchFrames = 200
	benchEvery  = 3 // "every Nth frame" in the gated runs
)

// cpuTime is the process's user + system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchRun is what one configuration measured.
type benchRun struct {
	frames        int
	cpu, wall     time.Duration
	due, calls    int
	gated         int
	callsAfterArm int // detector calls after the background's warm-up
	dueAfterArm   int
}

func (r benchRun) fpsPerCore() float64 { return float64(r.frames) / r.cpu.Seconds() }

var (
	benchMu      sync.Mutex
	benchResults = map[string]benchRun{}
)

// analysePass runs frames through a fresh Analyser and measures only the
// analysis: CPU time (all threads, OpenCV's included) and wall time around
// each Analyse call; the decoding of the next frame is not counted. next
// returns the next frame (owned by the caller) or false at the end.
func analysePass(b *testing.B, cfg Config, next func() (gocv.Mat, bool)) benchRun {
	b.Helper()
	a, err := NewAnalyser(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	t0 := time.Date(2026, 11, 21, 20, 0, 0, 0, time.UTC)
	var r benchRun
	var armed Stats
	for i := 0; ; i++ {
		f, ok := next()
		if !ok {
			break
		}
		c0, w0 := cpuTime(), time.Now()
		if _, err := a.Analyse(f, t0.Add(time.Duration(i)*200*time.Millisecond)); err != nil {
			b.Fatal(err)
		}
		r.wall += time.Since(w0)
		r.cpu += cpuTime() - c0
		r.frames++
		if i+1 == cfg.Motion.Warmup {
			armed = a.Stats()
		}
	}
	s := a.Stats()
	r.due, r.calls, r.gated = s.DetectorDue, s.DetectorCalls, s.GatedSkips
	r.callsAfterArm, r.dueAfterArm = s.DetectorCalls-armed.DetectorCalls, s.DetectorDue-armed.DetectorDue
	return r
}

// vtestFrames reads vtest.avi and hands out every other frame, n of them.
func vtestFrames(b *testing.B, n int) func() (gocv.Mat, bool) {
	vc, err := gocv.VideoCaptureFile(testenv.Video(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { vc.Close() })
	m := gocv.NewMat()
	b.Cleanup(func() { m.Close() })
	given := 0
	return func() (gocv.Mat, bool) {
		if given == n {
			return m, false
		}
		for range 2 {
			if !vc.Read(&m) || m.Empty() {
				b.Fatalf("vtest.avi ended after %d frames", given)
			}
		}
		given++
		return m, true
	}
}

// loopedFrame hands out one frame n times: a scene where nothing moves.
func loopedFrame(b *testing.B, n int) func() (gocv.Mat, bool) {
	next := vtestFrames(b, 1)
	f, _ := next()
	still := f.Clone()
	b.Cleanup(func() { still.Close() })
	given := 0
	return func() (gocv.Mat, bool) {
		given++
		return still, given <= n
	}
}

// benchWidth is the agent's default motion.width.
const benchWidth = 320

// BenchmarkAnalysis measures the whole per-frame analysis (scale to 320 px,
// motion, YOLOX-Nano, tracking, scenarios) on vtest.avi at 5 fps, with
// motion gating on and off and the detector every frame or every 2nd or 3rd,
// and on a still scene (one frame looped), with OpenCV on one thread (and
// once on all). Numbers, not assertions:
//
//   - fps/core: analysed frames per CPU second (all threads), the measure
//     that holds on a shared machine; fps: per wall-clock second;
//   - calls/frame: detector runs per analysed frame;
//   - gated: share of the detector's turns (every Nth frame) skipped
//     because nothing moved;
//   - avoided: share of the detector's turns skipped after the 5 s
//     background warm-up (during it the detector runs at every turn), i.e.
//     the runs saved against the same N without the gate;
//   - x-always1: speed against the detector on every frame, measured in the
//     same run; x-motion-only: against motion alone (no detector).
func BenchmarkAnalysis(b *testing.B) {
	y := detecttest.YOLOX(b, nil)
	crossing := [][2]float64{{0, 0.33}, {0.55, 0.33}, {0.75, 0.2}, {1, 0.2}, {1, 0.86}, {0.75, 0.76}, {0.5, 0.62}, {0.3, 0.5}, {0, 0.44}}
	lc := event.Config{MinDuration: time.Second, EndAfter: 3 * time.Second, UpdateInterval: 10 * time.Second}
	config := func(det detect.Detector, gating string, every int) Config {
		cfg := Config{CameraID: "bench", Detector: det, Detect: DetectConfig{Gating: gating, Every: every},
			Motion: motion.Config{Width: benchWidth, History: 300, VarThreshold: 16, Warmup: 25, MinBlobRatio: 0.0005},
			Zones:  []Zone{{Name: "crossing", Polygon: crossing}},
			Scenarios: []Scenario{
				{Type: "intrusion", Severity: 3, Zones: []string{"crossing"}, Lifecycle: lc},
				{Type: "crowd", Severity: 2, Zones: []string{"crossing"}, MinCount: 3, Lifecycle: lc},
			}}
		if det == nil {
			cfg.Scenarios = cfg.Scenarios[:1] // intrusion on motion
		}
		return cfg
	}
	// OpenCV's threads: 1 measures what one core does (the analysis of one
	// camera on a box with as many cameras as cores); "all" is OpenCV's
	// default, every core for one camera.
	const one, all = 1, 0
	cases := []struct {
		name    string
		det     detect.Detector
		gating  string
		every   int
		still   bool
		threads int
	}{
		{"vtest/motion-only-baseline", nil, GateMotion, 1, false, one},
		{"vtest/gating=always/every=1", y, GateAlways, 1, false, one},
		{"vtest/gating=motion/every=1", y, GateMotion, 1, false, one},
		{fmt.Sprintf("vtest/gating=always/every=%d", benchEvery), y, GateAlways, benchEvery, false, one},
		{"vtest/gating=motion/every=2", y, GateMotion, 2, false, one},
		{fmt.Sprintf("vtest/gating=motion/every=%d", benchEvery), y, GateMotion, benchEvery, false, one},
		{fmt.Sprintf("vtest/gating=motion/every=%d/threads=all", benchEvery), y, GateMotion, benchEvery, false, all},
		{fmt.Sprintf("still/gating=always/every=%d", benchEvery), y, GateAlways, benchEvery, true, one},
		{fmt.Sprintf("still/gating=motion/every=%d", benchEvery), y, GateMotion, benchEvery, true, one},
	}
	defer detect.SetThreads(0)
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			detect.SetThreads(tc.threads)
			var r benchRun
			for b.Loop() {
				next := vtestFrames(b, benchFrames)
				if tc.still {
					next = loopedFrame(b, benchFrames*3) // 2 minutes still
				}
				r = analysePass(b, config(tc.det, tc.gating, tc.every), next)
			}
			benchMu.Lock()
			benchResults[tc.name] = r
			base, hasBase := benchResults["vtest/motion-only-baseline"]
			always1, hasAlways1 := benchResults["vtest/gating=always/every=1"]
			benchMu.Unlock()
			b.ReportMetric(r.fpsPerCore(), "fps/core")
			b.ReportMetric(float64(r.frames)/r.wall.Seconds(), "fps")
			b.ReportMetric(float64(r.calls)/float64(r.frames), "calls/frame")
			if r.due > 0 {
				b.ReportMetric(float64(r.gated)/float64(r.due), "gated")
				if r.dueAfterArm > 0 {
					b.ReportMetric(1-float64(r.callsAfterArm)/float64(r.dueAfterArm), "avoided")
				}
			}
			if hasAlways1 && tc.det != nil {
				b.ReportMetric(r.fpsPerCore()/always1.fpsPerCore(), "x-always1")
			}
			if hasBase && tc.det != nil {
				b.ReportMetric(r.fpsPerCore()/base.fpsPerCore(), "x-motion-only")
			}
			if tc.name == cases[len(cases)-1].name {
				b.Log(benchTable())
			}
		})
	}
}

// benchTable is every configuration measured so far, with the targets.
func benchTable() string {
	benchMu.Lock()
	defer benchMu.Unlock()
	var names []string
	for n := range benchResults {
		names = append(names, n)
	}
	sort.Strings(names)
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-46s %9s %7s %11s %7s %8s\n", fmt.Sprintf("analysis at %d px (OpenCV on 1 thread)", benchWidth), "fps/core", "fps", "calls/frame", "gated", "avoided")
	for _, n := range names {
		r := benchResults[n]
		gated, avoided := "-", "-"
		if r.due > 0 {
			gated = fmt.Sprintf("%.0f%%", 100*float64(r.gated)/float64(r.due))
			avoided = fmt.Sprintf("%.0f%%", 100*(1-float64(r.callsAfterArm)/float64(max(r.dueAfterArm, 1))))
		}
		fmt.Fprintf(&sb, "%-46s %9.1f %7.1f %11.2f %7s %8s\n", n, r.fpsPerCore(), float64(r.frames)/r.wall.Seconds(),
			float64(r.calls)/float64(r.frames), gated, avoided)
	}
	return fmt.Sprintf("target: >= 25 fps/core with motion gating and the detector every %d frames; >= 90%% of detector runs avoided on a still scene\n%s", benchEvery, sb.String())
}
