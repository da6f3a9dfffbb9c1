package detect

import (
	"image"
	"testing"
	"time"

	"gocv.io/x/gocv"
)

// benchFrames are ten vtest frames with people on the road and the lawn.
var benchFrames = []int{100, 150, 200, 250, 300, 350, 400, 450, 500, 550}

// peopleROIs returns, for each frame, the boxes of the people YOLOX finds in
// the whole frame, as stand-ins for the motion regions the pipeline passes.
func peopleROIs(b *testing.B, y *YOLOX, frames []gocv.Mat) [][]image.Rectangle {
	out := make([][]image.Rectangle, len(frames))
	for i, f := range frames {
		dets, err := y.Detect(f, nil)
		if err != nil {
			b.Fatal(err)
		}
		for _, d := range dets {
			if d.Class == "person" {
				out[i] = append(out[i], d.Box)
			}
		}
	}
	return out
}

func benchDetector(b *testing.B, d Detector, frames []gocv.Mat, rois [][]image.Rectangle) {
	b.Helper()
	crops := 0
	b.ResetTimer()
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		k := i % len(frames)
		var r []image.Rectangle
		if rois != nil {
			r = rois[k]
			if len(r) > 0 {
				crops += len(planCrops(image.Pt(frames[k].Cols(), frames[k].Rows()), clipROIs(image.Pt(frames[k].Cols(), frames[k].Rows()), r), defaultROI(), 139))
			}
		}
		if _, err := d.Detect(frames[k], r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/frame")
	if rois != nil {
		b.ReportMetric(float64(crops)/float64(b.N), "crops/frame")
	}
}

// BenchmarkYOLOXFull is one 416×416 pass on a whole 768×576 frame.
func BenchmarkYOLOXFull(b *testing.B) {
	y := yolox(b, Config{})
	frames := readFrames(b, benchFrames...)
	defer closeAll(frames)
	benchDetector(b, y, frames, nil)
}

// BenchmarkYOLOXROI searches only around the people: their crops packed
// into one pass. "scale" is the mean input pixels per frame pixel (the
// whole frame is seen at 0.54).
func BenchmarkYOLOXROI(b *testing.B) {
	y := yolox(b, Config{})
	frames := readFrames(b, benchFrames...)
	defer closeAll(frames)
	rois := peopleROIs(b, y, frames)
	scale, n := 0.0, 0
	for i, f := range frames {
		size := image.Pt(f.Cols(), f.Rows())
		for _, t := range y.roiTiles(size, clipROIs(size, rois[i])) {
			scale += float64(t.dst.Dx()) / float64(t.src.Dx())
			n++
		}
	}
	benchDetector(b, y, frames, rois)
	b.ReportMetric(scale/float64(max(n, 1)), "scale")
}

// BenchmarkHOGFull is the HOG person detector on a whole 768×576 frame.
func BenchmarkHOGFull(b *testing.B) {
	h, err := NewHOG(Config{}, nil, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	frames := readFrames(b, benchFrames...)
	defer closeAll(frames)
	benchDetector(b, h, frames, nil)
}

// BenchmarkHOGROI is HOG around the people, crops scaled to 256 px high.
func BenchmarkHOGROI(b *testing.B) {
	y := yolox(b, Config{})
	h, err := NewHOG(Config{}, nil, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	frames := readFrames(b, benchFrames...)
	defer closeAll(frames)
	benchDetector(b, h, frames, peopleROIs(b, y, frames))
}
