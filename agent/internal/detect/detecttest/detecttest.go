// Package detecttest loads the shared YOLOX-Nano model for tests and
// benchmarks of the packages that run the detector.
package detecttest

import (
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/xueliang/xl/agent/internal/detect"
	"github.com/xueliang/xl/internal/testenv"
)

// YOLOX loads the shared YOLOX-Nano (testenv.Model: skipped without it,
// except in CI), verified against the repository's manifest, reporting the
// allowed classes only (all when none are given). It is closed when the
// test ends; log may be nil.
func YOLOX(t testing.TB, log *slog.Logger, allowed ...string) *detect.YOLOX {
	t.Helper()
	model := testenv.Model(t)
	m, err := detect.LoadManifest(filepath.Join(testenv.RepoRoot(t), "models", "manifest.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	entry, ok := m.Lookup("yolox_nano")
	if !ok {
		t.Fatal("manifest has no yolox_nano")
	}
	y, err := detect.NewYOLOX(detect.Config{Model: model, Entry: entry, Allowed: allowed}, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { y.Close() })
	return y
}
