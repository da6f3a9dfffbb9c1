package gocvtest

import (
	"testing"

	"gocv.io/x/gocv"
)

// Frames reads every step-th frame of the video at path, from the first,
// at most n of them (n ≤ 0: to the end). The caller closes them.
func Frames(t testing.TB, path string, step, n int) []gocv.Mat {
	t.Helper()
	vc, err := gocv.VideoCaptureFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer vc.Close()
	m := gocv.NewMat()
	defer m.Close()
	var frames []gocv.Mat
	for i := 0; (n <= 0 || len(frames) < n) && vc.Read(&m) && !m.Empty(); i++ {
		if i%max(step, 1) == 0 {
			frames = append(frames, m.Clone())
		}
	}
	return frames
}
