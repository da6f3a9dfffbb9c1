package track

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
)

// TestMain fails the run when gocv Mats are left open (with -tags
// matprofile; the YOLOX test reads video frames).
func TestMain(m *testing.M) {
	before := matCount()
	code := m.Run()
	if after := matCount(); after != before {
		fmt.Fprintf(os.Stderr, "gocv Mats leaked: %d open before the tests, %d after:\n%s", before, after, openMats())
		code = 1
	}
	os.Exit(code)
}

func testLog(t *testing.T) *slog.Logger {
	t.Helper()
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
