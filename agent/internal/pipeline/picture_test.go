package pipeline

import (
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/xueliang/xl/agent/internal/decode"
	"github.com/xueliang/xl/agent/internal/detect"
	"github.com/xueliang/xl/agent/internal/detect/detecttest"
	"github.com/xueliang/xl/agent/internal/event"
	"github.com/xueliang/xl/agent/internal/motion"
	"github.com/xueliang/xl/internal/testenv"
)

// countingPicture is a decode.Picture that counts the full-size
// conversions analysis asks for.
type countingPicture struct {
	*decode.Picture
	full int
}

func (p *countingPicture) Full() (gocv.Mat, error) {
	p.full++
	return p.Picture.Full()
}

// Analysis asks for the full-size frame only when the detector runs on it:
// never in motion-only analysis, and on exactly the frames the detector
// looked at (every third, where something moved) otherwise. Motion works
// on the scaled copy.
func TestFullFrameOnlyForTheDetector(t *testing.T) {
	y := detecttest.YOLOX(t, nil)
	zone := [][2]float64{{0, 0.33}, {1, 0.2}, {1, 0.86}, {0, 0.44}}
	lc := event.Config{MinDuration: time.Second, EndAfter: 3 * time.Second, UpdateInterval: 10 * time.Second}
	for _, tc := range []struct {
		name string
		det  detect.Detector
	}{{"motion only", nil}, {"motion-gated detector", y}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{CameraID: "c", Detector: tc.det, Detect: DetectConfig{Every: 3},
				Motion:    motion.Config{Width: 320, History: 300, VarThreshold: 16, Warmup: 10, MinBlobRatio: 0.0005},
				Zones:     []Zone{{Name: "z", Polygon: zone}},
				Scenarios: []Scenario{{Type: "intrusion", Severity: 3, Zones: []string{"z"}, Lifecycle: lc}}}
			if tc.det != nil {
				cfg.Scenarios[0].Classes = []string{"person"}
			}
			a, err := NewAnalyser(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			vc, err := gocv.VideoCaptureFile(testenv.Video(t))
			if err != nil {
				t.Fatal(err)
			}
			defer vc.Close()
			t0 := time.Now()
			converted := 0
			for i := range 60 {
				mat := gocv.NewMat()
				if !vc.Read(&mat) || mat.Empty() {
					mat.Close()
					t.Fatalf("vtest.avi ended at frame %d", i)
				}
				p := &countingPicture{Picture: decode.FromMat(mat)}
				calls := a.Stats().DetectorCalls
				if _, err := a.AnalysePicture(p, t0.Add(time.Duration(i)*200*time.Millisecond)); err != nil {
					t.Fatal(err)
				}
				ran := a.Stats().DetectorCalls > calls
				if ran && p.full != 1 || !ran && p.full != 0 {
					t.Errorf("frame %d: detector ran %v, full-size frame asked for %d times", i, ran, p.full)
				}
				converted += p.full
				p.Close()
			}
			if tc.det != nil && (converted == 0 || converted == 60) {
				t.Errorf("the detector ran on %d of 60 frames: the test shows nothing", converted)
			}
			t.Logf("%d of 60 frames converted at full size (%d detector calls)", converted, a.Stats().DetectorCalls)
		})
	}
}
