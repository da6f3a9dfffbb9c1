package decode

import (
	"image"
	"testing"

	"gocv.io/x/gocv"

	"github.com/xueliang/xl/agent/internal/gocvtest"
)

// meanAbsDiff is the mean absolute difference of two BGR Mats of one size,
// in grey levels.
func meanAbsDiff(t *testing.T, a, b gocv.Mat) float64 {
	t.Helper()
	if a.Cols() != b.Cols() || a.Rows() != b.Rows() {
		t.Fatalf("sizes differ: %dx%d and %dx%d", a.Cols(), a.Rows(), b.Cols(), b.Rows())
	}
	diff := gocv.NewMat()
	defer diff.Close()
	gocv.AbsDiff(a, b, &diff)
	s := diff.Mean()
	return (s.Val1 + s.Val2 + s.Val3) / 3
}

// A decoded Picture carries the frame at the analysis width without the
// full-size conversion (that waits for Full); the scaled copy looks like
// OpenCV's area resize of the full frame, and Full is the very frame Decode
// returns.
func TestPicture(t *testing.T) {
	gocvtest.CheckMats(t)
	_, aus := media(t, CodecH264, 2, "1280x720", 10, false)
	const index = 15 // a P-frame of the second GOP
	dec, err := New(CodecH264)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	ref, err := New(CodecH264)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	for i, au := range aus[:index+1] {
		want, wantOK, err := ref.Decode(au.NALUs, au.PTS)
		if err != nil {
			t.Fatal(err)
		}
		if i < index {
			if wantOK {
				want.Close()
			}
			if err := dec.Skip(au.NALUs, au.PTS); err != nil {
				t.Fatal(err)
			}
			continue
		}
		defer want.Close()
		p, ok, err := dec.DecodePicture(au.NALUs, au.PTS, 320)
		if err != nil || !ok || !wantOK {
			t.Fatalf("frame %d: ok %v (reference %v), err %v", i, ok, wantOK, err)
		}
		defer p.Close()
		if p.Size() != image.Pt(1280, 720) {
			t.Fatalf("size %v, want 1280x720", p.Size())
		}
		small, err := p.Scaled(320)
		if err != nil {
			t.Fatal(err)
		}
		if small.Cols() != 320 || small.Rows() != 180 || small.Type() != gocv.MatTypeCV8UC3 {
			t.Fatalf("scaled %dx%d type %v, want 320x180 BGR", small.Cols(), small.Rows(), small.Type())
		}
		if p.frame == nil || has(p.full) {
			t.Fatal("the full-size frame was converted before anyone asked for it")
		}
		area := gocv.NewMat()
		defer area.Close()
		gocv.Resize(want, &area, image.Pt(320, 180), 0, 0, gocv.InterpolationArea)
		if d := meanAbsDiff(t, small, area); d > 2 {
			t.Errorf("scaled copy differs from an area resize of the frame by %.2f grey levels on average", d)
		}
		full, err := p.Full()
		if err != nil {
			t.Fatal(err)
		}
		if p.frame != nil {
			t.Error("the decoded frame is still held after the conversion")
		}
		if d := meanAbsDiff(t, full, want); d != 0 {
			t.Errorf("Full differs from Decode's frame by %.3f grey levels on average", d)
		}
		again, _ := p.Full()
		if again.Ptr() != full.Ptr() {
			t.Error("Full converted twice")
		}
		other, err := p.Scaled(640)
		if err != nil || other.Cols() != 640 || other.Rows() != 360 {
			t.Fatalf("Scaled(640): %dx%d, %v", other.Cols(), other.Rows(), err)
		}
		same, _ := p.Scaled(1280)
		if same.Ptr() != full.Ptr() {
			t.Error("Scaled at the source width is not the full frame")
		}
	}
}

// A picture that is closed without ever being converted frees its frame,
// and Close may be called twice.
func TestPictureCloseUnconverted(t *testing.T) {
	gocvtest.CheckMats(t)
	_, aus := media(t, CodecH264, 1, "", 10, false)
	dec, err := New(CodecH264)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	n := 0
	for _, au := range aus {
		p, ok, err := dec.DecodePicture(au.NALUs, au.PTS, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			continue
		}
		n++
		if has(p.small) {
			t.Error("width 0 made a scaled copy")
		}
		p.Close()
		p.Close()
	}
	if n == 0 {
		t.Fatal("no picture decoded")
	}
	var nilPic *Picture
	nilPic.Close()
}

// FromMat wraps a BGR Mat: Full is the Mat, Scaled an area resize of it.
func TestPictureFromMat(t *testing.T) {
	gocvtest.CheckMats(t)
	m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(10, 20, 30, 0), 576, 768, gocv.MatTypeCV8UC3)
	p := FromMat(m)
	defer p.Close()
	full, err := p.Full()
	if err != nil || full.Ptr() != m.Ptr() {
		t.Fatalf("Full: %v, same Mat %v", err, full.Ptr() == m.Ptr())
	}
	small, err := p.Scaled(320)
	if err != nil {
		t.Fatal(err)
	}
	if small.Cols() != 320 || small.Rows() != 240 {
		t.Fatalf("scaled %dx%d, want 320x240", small.Cols(), small.Rows())
	}
	if v := small.GetVecbAt(100, 100); v[0] != 10 || v[1] != 20 || v[2] != 30 {
		t.Errorf("scaled pixel %v, want [10 20 30]", v)
	}
}

func TestScaledSize(t *testing.T) {
	for _, c := range []struct {
		size  image.Point
		width int
		want  image.Point
	}{
		{image.Pt(1280, 720), 320, image.Pt(320, 180)},
		{image.Pt(768, 576), 320, image.Pt(320, 240)},
		{image.Pt(1920, 1080), 0, image.Pt(1920, 1080)},
		{image.Pt(640, 480), 1280, image.Pt(640, 480)},
		{image.Pt(1000, 1), 10, image.Pt(10, 1)},
	} {
		if got := ScaledSize(c.size, c.width); got != c.want {
			t.Errorf("ScaledSize(%v, %d) = %v, want %v", c.size, c.width, got, c.want)
		}
	}
}
