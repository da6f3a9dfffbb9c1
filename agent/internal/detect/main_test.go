package detect

import (
	"fmt"
	"image"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/xueliang/xl/agent/internal/gocvtest"

	"gocv.io/x/gocv"

	"github.com/xueliang/xl/internal/testenv"
)

// childEnv switches the test binary into the model-check child: CheckModel
// re-executes the test binary itself, the way the agent re-executes its own
// binary with a hidden subcommand.
const childEnv = "XL_DETECT_TEST_MODEL_CHECK_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		if err := ServeModelCheck(os.Stdin, os.Stdout); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	ChildCommand = SelfCommand([]string{"-test.run=^$"}, childEnv+"=1")
	os.Exit(gocvtest.RunCheckingMats(m))
}

// checkMats fails the test when it leaves Mats open (with -tags matprofile).
func checkMats(t testing.TB) { gocvtest.CheckMats(t) }

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// modelPath is <repo root>/../shared/models/yolox_nano.onnx; a missing model
// is a failure, as a missing video is.
func modelPath(t testing.TB) string {
	t.Helper()
	return testenv.Model(t)
}

// manifestEntry is the yolox_nano entry of the repository's manifest.
func manifestEntry(t testing.TB) *ModelEntry {
	t.Helper()
	m, err := LoadManifest(filepath.Join(testenv.RepoRoot(t), "models", "manifest.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	e, ok := m.Lookup("yolox_nano")
	if !ok {
		t.Fatal("manifest has no yolox_nano")
	}
	return e
}

// readFrames returns the frames of vtest.avi with the given indices; the
// caller closes them.
func readFrames(t testing.TB, indices ...int) []gocv.Mat {
	t.Helper()
	vc, err := gocv.VideoCaptureFile(testenv.Video(t))
	if err != nil {
		t.Fatal(err)
	}
	defer vc.Close()
	want := map[int]int{}
	last := 0
	for i, n := range indices {
		want[n] = i
		last = max(last, n)
	}
	out := make([]gocv.Mat, len(indices))
	m := gocv.NewMat()
	defer m.Close()
	for n := 0; n <= last; n++ {
		if !vc.Read(&m) || m.Empty() {
			t.Fatalf("vtest.avi ended before frame %d", n)
		}
		if i, ok := want[n]; ok {
			out[i] = m.Clone()
		}
	}
	return out
}

func closeAll(ms []gocv.Mat) {
	for i := range ms {
		ms[i].Close()
	}
}

// yolox loads the shared model, verified against the manifest.
func yolox(t testing.TB, cfg Config) *YOLOX {
	t.Helper()
	cfg.Model = modelPath(t)
	if cfg.Entry == nil {
		cfg.Entry = manifestEntry(t)
	}
	y, err := NewYOLOX(cfg, nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { y.Close() })
	return y
}

func count(dets []Detection, class string, minScore float32) int {
	n := 0
	for _, d := range dets {
		if d.Class == class && d.Score >= minScore {
			n++
		}
	}
	return n
}

func describe(dets []Detection) string {
	s := ""
	for _, d := range dets {
		s += fmt.Sprintf("\n  %s %.2f %v", d.Class, d.Score, d.Box)
	}
	return s
}

var _ = image.Rectangle{}
