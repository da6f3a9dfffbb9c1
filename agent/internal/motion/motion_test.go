package motion

import (
	"image"
	"testing"

	"gocv.io/x/gocv"

	"github.com/xueliang/xl/agent/internal/gocvtest"
	"github.com/xueliang/xl/internal/testenv"
)

var testZones = [][][2]float64{
	{{0, 0.12}, {0.40, 0.10}, {0.40, 0.22}, {0, 0.25}},
	{{0.43, 0.135}, {0.74, 0.135}, {0.74, 0.175}, {0.43, 0.175}},
}

func readFrames(t testing.TB, n int) []gocv.Mat {
	t.Helper()
	return gocvtest.Frames(t, testenv.Video(t), 1, n)
}

func TestStaticSceneHasNoMotion(t *testing.T) {
	frames := readFrames(t, 1)
	defer frames[0].Close()
	d, err := New(Config{Width: 320, History: 100, VarThreshold: 16, Warmup: 5, MinBlobRatio: 0.0005}, testZones)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for i := range 40 {
		res, err := d.Process(frames[0])
		if err != nil {
			t.Fatal(err)
		}
		if i > 5 && (res[0].Ratio != 0 || len(res[0].Blobs) != 0) {
			t.Fatalf("frame %d: motion %.4f in a still image", i, res[0].Ratio)
		}
	}
}

func TestBadInputIsAnErrorNotACrash(t *testing.T) {
	if _, err := New(Config{Width: 320, History: 10, VarThreshold: 16}, [][][2]float64{{{0, 0}, {1, 1}}}); err == nil {
		t.Error("two-point polygon accepted")
	}
	if _, err := New(Config{Width: 320, History: 10, VarThreshold: 16}, [][][2]float64{{{0, 0}, {1.5, 0}, {0, 1}}}); err == nil {
		t.Error("point outside 0–1 accepted")
	}
	d, err := New(Config{Width: 320, History: 10, VarThreshold: 16}, testZones)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	empty := gocv.NewMat()
	defer empty.Close()
	if _, err := d.Process(empty); err == nil {
		t.Error("empty frame accepted")
	}
	gray := gocv.NewMatWithSize(100, 100, gocv.MatTypeCV8U)
	defer gray.Close()
	if _, err := d.Process(gray); err == nil {
		t.Error("single-channel frame accepted")
	}
}

// BenchmarkProcess reports analysed frames per second on one core at the
// default 640 px analysis width; the resize alone is the baseline measured
// in the same run, so the ratio shows what MOG2 and the zone masks cost.
func BenchmarkProcess(b *testing.B) {
	frames := readFrames(b, 100)
	defer func() {
		for _, f := range frames {
			f.Close()
		}
	}()
	b.Run("baseline-resize-only", func(b *testing.B) {
		dst := gocv.NewMat()
		defer dst.Close()
		i := 0
		for b.Loop() {
			gocv.Resize(frames[i%len(frames)], &dst, image.Pt(640, 480), 0, 0, gocv.InterpolationArea)
			i++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
	})
	b.Run("mog2-two-zones", func(b *testing.B) {
		d, err := New(Config{Width: 640, History: 300, VarThreshold: 16, Warmup: 0, MinBlobRatio: 0.0005}, testZones)
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		i := 0
		for b.Loop() {
			if _, err := d.Process(frames[i%len(frames)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
	})
}

// People walk on the road of vtest.avi: the whole frame's motion shows
// them; an ignore polygon over the lower two thirds of the frame hides
// those below it, from the frame and from a zone alike; SetZones (a reload)
// keeps the learnt background.
func TestIgnorePolygonsAndFrameMotion(t *testing.T) {
	frames := readFrames(t, 60)
	defer func() {
		for _, f := range frames {
			f.Close()
		}
	}()
	road := [][2]float64{{0, 0.35}, {1, 0.35}, {1, 0.9}, {0, 0.9}}
	lower := [][2]float64{{0, 0.33}, {1, 0.33}, {1, 1}, {0, 1}}
	run := func(ignore [][][2]float64) (Result, Result) {
		t.Helper()
		d, err := New(Config{Width: 320, History: 100, VarThreshold: 16, Warmup: 10, MinBlobRatio: 0.0005, Ignore: ignore}, [][][2]float64{road})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		var zone, frame Result
		for i, f := range frames {
			res, err := d.Process(f)
			if err != nil {
				t.Fatal(err)
			}
			if i == 9 && (d.Warm() || d.Frame().Warm) {
				t.Fatal("warm during the warm-up")
			}
			zone, frame = res[0], d.Frame()
		}
		return zone, frame
	}
	zone, frame := run(nil)
	if !frame.Warm || len(frame.Blobs) == 0 || zone.Ratio == 0 {
		t.Fatalf("no motion where people walk: frame %+v zone %+v", frame, zone)
	}
	zone, frame = run([][][2]float64{lower})
	for _, b := range frame.Blobs {
		if b[1] >= 0.34 {
			t.Errorf("blob %v inside the ignored part", b)
		}
	}
	if zone.Ratio != 0 {
		t.Errorf("zone under the ignore polygon moves %.3f", zone.Ratio)
	}

	// No zones at all: only the frame's motion (a camera watched for
	// tampering only).
	d, err := New(Config{Width: 320, History: 100, VarThreshold: 16, Warmup: 10, MinBlobRatio: 0.0005}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for i, f := range frames {
		if i == 30 {
			if err := d.SetZones([][][2]float64{road}, [][][2]float64{lower}); err != nil {
				t.Fatal(err)
			}
		}
		res, err := d.Process(f)
		if err != nil {
			t.Fatal(err)
		}
		if i >= 30 && (len(res) != 1 || !res[0].Warm) {
			t.Fatalf("frame %d after SetZones: %+v (the background must be kept)", i, res)
		}
	}
	if err := d.SetZones([][][2]float64{{{0, 0}, {1, 1}}}, nil); err == nil {
		t.Error("SetZones accepted a two-point polygon")
	}
}
