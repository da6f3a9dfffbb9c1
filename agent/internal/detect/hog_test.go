package detect

import (
	"image"
	"testing"

	"gocv.io/x/gocv"
)

// On frame 600 people walk on the lawn near the camera: the woman at the
// bottom left, the man in the red jacket by the tripod, and one on the road.
var frame600People = []image.Rectangle{
	image.Rect(282, 432, 339, 576),
	image.Rect(450, 309, 500, 420),
	image.Rect(641, 305, 673, 411),
}

func TestHOGFindsPeopleNearTheCamera(t *testing.T) {
	checkMats(t)
	h, err := NewHOG(Config{}, nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	frames := readFrames(t, 560, 600)
	defer closeAll(frames)
	for i, f := range frames {
		dets, err := h.Detect(f, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("frame %d:%s", []int{560, 600}[i], describe(dets))
		if len(dets) == 0 {
			t.Errorf("frame %d: nobody found", []int{560, 600}[i])
		}
		for _, d := range dets {
			if d.Class != "person" || d.ClassID != 0 || d.Box.Dy() < d.Box.Dx() {
				t.Errorf("detection %+v", d)
			}
		}
	}
	// Frame 600 with ROIs around its people.
	found := 0
	dets, err := h.Detect(frames[1], frame600People)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range frame600People {
		if _, ok := matching(dets, "person", p, 0.3); ok {
			found++
		}
	}
	t.Logf("frame 600 with ROIs:%s", describe(dets))
	if found == 0 {
		t.Error("ROI mode found none of the people")
	}
	dets, err = h.Detect(frames[1], []image.Rectangle{image.Rect(40, 260, 240, 420)}) // empty lawn
	if err != nil {
		t.Fatal(err)
	}
	if len(dets) != 0 {
		t.Errorf("empty lawn:%s", describe(dets))
	}
}

func TestHOGBlackFrame(t *testing.T) {
	checkMats(t)
	h, err := NewHOG(Config{}, nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	black := gocv.NewMatWithSize(576, 768, gocv.MatTypeCV8UC3)
	defer black.Close()
	black.SetTo(gocv.NewScalar(0, 0, 0, 0))
	for _, rois := range [][]image.Rectangle{nil, {image.Rect(100, 100, 200, 300)}} {
		dets, err := h.Detect(black, rois)
		if err != nil {
			t.Fatal(err)
		}
		if len(dets) != 0 {
			t.Errorf("black frame, ROIs %v:%s", rois, describe(dets))
		}
	}
}

func TestDefaultPeopleDetector(t *testing.T) {
	checkMats(t)
	m, err := defaultPeopleDetector()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Rows() != 1 || m.Cols() != hogCoefficients || m.Type() != gocv.MatTypeCV32F {
		t.Fatalf("%dx%d type %v", m.Rows(), m.Cols(), m.Type())
	}
	// The last coefficient is the SVM bias; a zeroed (freed) vector has none.
	if v := m.GetFloatAt(0, hogCoefficients-1); v > -1 {
		t.Errorf("bias %g: the coefficients look wrong", v)
	}
}

func TestHOGConfigValidation(t *testing.T) {
	for _, c := range []HOGConfig{
		{WinStride: 7}, {Padding: 4}, {Scale: 1.0001}, {Scale: 3}, {Upscale: 10}, {TargetHeight: 64}, {Score: 2},
	} {
		if h, err := NewHOG(Config{HOG: c}, nil, quietLog()); err == nil {
			h.Close()
			t.Errorf("%+v accepted", c)
		}
	}
}

func TestSetThreads(t *testing.T) {
	before := Threads()
	defer SetThreads(0)
	SetThreads(1)
	if got := Threads(); got != 1 {
		t.Fatalf("Threads() = %d after SetThreads(1)", got)
	}
	SetThreads(0)
	if got := Threads(); got != before || got < 1 {
		t.Fatalf("Threads() = %d after SetThreads(0), %d before", got, before)
	}
}
