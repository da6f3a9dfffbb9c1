package track

import (
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/xueliang/xl/agent/internal/gocvtest"
)

// TestMain fails the run when gocv Mats are left open (with -tags
// matprofile; the YOLOX test reads video frames).
func TestMain(m *testing.M) {
	os.Exit(gocvtest.RunCheckingMats(m))
}

func testLog(t *testing.T) *slog.Logger {
	t.Helper()
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
