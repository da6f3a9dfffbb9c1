package detect

import (
	"errors"
	"image"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"gocv.io/x/gocv"
)

// Three of the people walking on frame 120 of vtest.avi, placed by eye: at
// the sign post, in the middle of the road, and the woman in the light coat
// on the right.
var frame120People = []image.Rectangle{
	image.Rect(374, 180, 398, 262),
	image.Rect(512, 212, 540, 293),
	image.Rect(689, 191, 722, 305),
}

// The blue sign on a post at the left of frame 120.
var frame120Sign = image.Rect(31, 109, 48, 142)

// Empty lawn on frame 120, below the path.
var frame120Grass = image.Rect(120, 300, 330, 440)

func matching(dets []Detection, class string, want image.Rectangle, minIoU float64) (Detection, bool) {
	for _, d := range dets {
		if d.Class == class && iou(d.Box, want) >= minIoU {
			return d, true
		}
	}
	return Detection{}, false
}

func TestYOLOXFrame120(t *testing.T) {
	checkMats(t)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	y, err := NewYOLOX(Config{Model: modelPath(t), Entry: manifestEntry(t)}, m, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer y.Close()
	frames := readFrames(t, 120)
	defer closeAll(frames)
	dets, err := y.Detect(frames[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("frame 120:%s", describe(dets))
	if n := count(dets, "person", 0.5); n < 3 {
		t.Errorf("%d persons with score ≥ 0.5, want ≥ 3", n)
	}
	for _, want := range frame120People {
		d, ok := matching(dets, "person", want, 0.5)
		if !ok {
			t.Errorf("no person at %v", want)
			continue
		}
		if d.Score < 0.5 || d.Score > 1 {
			t.Errorf("person at %v: score %.2f", want, d.Score)
		}
	}
	van := image.Rect(652, 42, 725, 99)
	if _, ok := matching(dets, "truck", van, 0.5); !ok {
		if _, ok := matching(dets, "car", van, 0.5); !ok {
			t.Errorf("no vehicle at the van %v", van)
		}
	}
	for _, d := range dets {
		if !d.Box.In(image.Rect(0, 0, 768, 576)) || d.Box.Empty() {
			t.Errorf("box %v outside the frame", d.Box)
		}
		if d.Class == "person" {
			if d.Box.Dy() < d.Box.Dx() || d.Box.Dy() < 20 || d.Box.Dy() > 300 {
				t.Errorf("implausible person box %v", d.Box)
			}
			if d.Box.Overlaps(frame120Grass) {
				t.Errorf("person %v on the empty lawn", d.Box)
			}
		}
		if d.ClassID < 0 || d.ClassID >= 80 || COCO80[d.ClassID] != d.Class {
			t.Errorf("class %d %q", d.ClassID, d.Class)
		}
	}
	if got := testutil.ToFloat64(m.Passes.WithLabelValues("yolox")); got != 1 {
		t.Errorf("passes metric %g, want 1", got)
	}
	if got := testutil.ToFloat64(m.Detections.WithLabelValues("yolox", "person")); got < 3 {
		t.Errorf("person detections metric %g", got)
	}
}

func TestYOLOXAllowedClasses(t *testing.T) {
	checkMats(t)
	y := yolox(t, Config{Allowed: []string{"person"}})
	frames := readFrames(t, 120)
	defer closeAll(frames)
	dets, err := y.Detect(frames[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(dets) == 0 {
		t.Fatal("no persons")
	}
	for _, d := range dets {
		if d.Class != "person" {
			t.Errorf("%s reported with only person allowed", d.Class)
		}
	}
}

func TestYOLOXRegionsOfInterest(t *testing.T) {
	checkMats(t)
	y := yolox(t, Config{})
	frames := readFrames(t, 120)
	defer closeAll(frames)
	full, err := y.Detect(frames[0], nil)
	if err != nil {
		t.Fatal(err)
	}

	// ROIs around each person the full frame found, one at a time and all
	// at once: each is found again, in the same place.
	var people []Detection
	for _, d := range full {
		// Not the blue sign on a post at the left (a weak "person" in the
		// full frame; seen up close it is not one).
		if d.Class == "person" && d.Score >= 0.5 && iou(d.Box, frame120Sign) < 0.5 {
			people = append(people, d)
		}
	}
	var all []image.Rectangle
	for _, p := range people {
		roi := p.Box.Inset(-4)
		all = append(all, roi)
		dets, err := y.Detect(frames[0], []image.Rectangle{roi})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := matching(dets, "person", p.Box, 0.5); !ok {
			t.Errorf("ROI %v: person %v not found:%s", roi, p.Box, describe(dets))
		}
	}
	dets, err := y.Detect(frames[0], all)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range people {
		if _, ok := matching(dets, "person", p.Box, 0.5); !ok {
			t.Errorf("all ROIs: person %v not found:%s", p.Box, describe(dets))
		}
	}

	// A small distant person seen better in an upscaled crop.
	far := image.Rect(160, 65, 185, 110)
	dets, err = y.Detect(frames[0], []image.Rectangle{far})
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := matching(dets, "person", far, 0.3); !ok || d.Score < 0.5 {
		t.Errorf("distant person in %v not found with score ≥ 0.5:%s", far, describe(dets))
	}

	// Empty lawn, and regions that are empty or outside the frame.
	for _, rois := range [][]image.Rectangle{
		{frame120Grass},
		{image.Rect(900, 900, 1000, 1000)},
		{image.Rect(10, 10, 10, 50)},
	} {
		dets, err := y.Detect(frames[0], rois)
		if err != nil {
			t.Fatal(err)
		}
		if len(dets) != 0 {
			t.Errorf("ROIs %v: found%s", rois, describe(dets))
		}
	}
}

func TestDetectorsRefuseBadFrames(t *testing.T) {
	checkMats(t)
	y := yolox(t, Config{})
	h, err := NewHOG(Config{}, nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	empty := gocv.NewMat()
	defer empty.Close()
	gray := gocv.NewMatWithSize(100, 100, gocv.MatTypeCV8U)
	defer gray.Close()
	tiny := gocv.NewMatWithSize(8, 8, gocv.MatTypeCV8UC3)
	defer tiny.Close()
	float := gocv.NewMatWithSize(100, 100, gocv.MatTypeCV32FC3)
	defer float.Close()
	for _, d := range []Detector{y, h} {
		for name, m := range map[string]gocv.Mat{"zero value": {}, "empty": empty, "gray": gray, "tiny": tiny, "float": float} {
			if _, err := d.Detect(m, nil); err == nil {
				t.Errorf("%s: %s frame accepted", d.Name(), name)
			}
		}
	}
	frames := readFrames(t, 0)
	defer closeAll(frames)
	for _, d := range []Detector{y, h} {
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		if err := d.Close(); err != nil {
			t.Errorf("%s: second Close: %v", d.Name(), err)
		}
		if _, err := d.Detect(frames[0], nil); !errors.Is(err, ErrClosed) {
			t.Errorf("%s: Detect after Close: %v", d.Name(), err)
		}
	}
}

func TestNewChoosesTheDetector(t *testing.T) {
	checkMats(t)
	d, err := New(Config{}, nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if d.Name() != "hog" {
		t.Errorf("no model: %s", d.Name())
	}
	d.Close()
	d, err = New(Config{Model: modelPath(t), Entry: manifestEntry(t)}, nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if d.Name() != "yolox" {
		t.Errorf("model: %s", d.Name())
	}
	d.Close()
}
