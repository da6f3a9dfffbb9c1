package detect

import (
	"image"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func defaultROI() ROIConfig {
	var c ROIConfig
	c.setDefaults()
	return c
}

func TestPlanCrops(t *testing.T) {
	frame := image.Pt(768, 576)
	full := []image.Rectangle{{Max: frame}}
	cfg := defaultROI()
	cfg.MaxCrops = 3    // and margin 0.3, gap 24, full frame from 50 %, aspect 2
	const minSide = 139 // 416 / 3
	tests := []struct {
		name string
		cfg  func(*ROIConfig)
		rois []image.Rectangle
		want []image.Rectangle
	}{
		{name: "none", rois: nil, want: nil},
		{name: "a small person is grown to the minimum side around its centre",
			rois: []image.Rectangle{image.Rect(300, 200, 320, 260)},
			want: []image.Rectangle{image.Rect(241, 161, 380, 300)}},
		{name: "at the corner the crop is shifted inside the frame",
			rois: []image.Rectangle{image.Rect(0, 0, 20, 40)},
			want: []image.Rectangle{image.Rect(0, 0, 139, 139)}},
		{name: "near regions merge",
			rois: []image.Rectangle{image.Rect(300, 200, 320, 260), image.Rect(330, 200, 350, 260)},
			want: []image.Rectangle{image.Rect(241, 161, 410, 300)}},
		{name: "far regions stay apart",
			rois: []image.Rectangle{image.Rect(20, 20, 40, 80), image.Rect(600, 400, 620, 460)},
			want: []image.Rectangle{image.Rect(0, 0, 139, 139), image.Rect(541, 361, 680, 500)}},
		{name: "more regions than crops: the cheapest pairs merge",
			cfg: func(c *ROIConfig) { c.MaxCrops = 2 },
			rois: []image.Rectangle{image.Rect(20, 20, 40, 80), image.Rect(300, 20, 320, 80),
				image.Rect(600, 400, 620, 460)},
			want: []image.Rectangle{image.Rect(0, 0, 380, 139), image.Rect(541, 361, 680, 500)}},
		{name: "regions covering most of the frame give the frame",
			rois: []image.Rectangle{image.Rect(0, 0, 700, 300), image.Rect(10, 320, 700, 560)},
			want: full},
		{name: "a long strip is tiled",
			rois: []image.Rectangle{image.Rect(100, 100, 660, 150)},
			want: []image.Rectangle{image.Rect(49, 49, 321, 201), image.Rect(245, 49, 517, 201), image.Rect(439, 49, 711, 201)}},
		{name: "a long strip is not tiled past the crop budget",
			cfg:  func(c *ROIConfig) { c.MaxCrops = 1 },
			rois: []image.Rectangle{image.Rect(100, 100, 660, 150)},
			want: []image.Rectangle{image.Rect(49, 49, 711, 201)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			if tc.cfg != nil {
				tc.cfg(&c)
			}
			got := planCrops(frame, clipROIs(frame, tc.rois), c, minSide)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("crops %v, want %v", got, tc.want)
			}
		})
	}
}

// Whatever the regions, the crops stay inside the frame, cover every
// region, respect the budget and are at least the minimum side.
func TestPlanCropsProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	frame := image.Pt(768, 576)
	for i := range 2000 {
		cfg := defaultROI()
		cfg.MaxCrops = 1 + r.IntN(5)
		var rois []image.Rectangle
		for range r.IntN(8) {
			x, y := r.IntN(900)-60, r.IntN(700)-60
			rois = append(rois, image.Rect(x, y, x+1+r.IntN(200), y+1+r.IntN(200)))
		}
		clipped := clipROIs(frame, rois)
		crops := planCrops(frame, clipped, cfg, 139)
		if len(clipped) == 0 {
			if crops != nil {
				t.Fatalf("case %d: crops %v without regions", i, crops)
			}
			continue
		}
		if len(crops) == 0 || len(crops) > cfg.MaxCrops {
			t.Fatalf("case %d: %d crops, budget %d", i, len(crops), cfg.MaxCrops)
		}
		for _, c := range crops {
			if !c.In(image.Rectangle{Max: frame}) || c.Dx() < 139 || c.Dy() < 139 {
				t.Fatalf("case %d: crop %v", i, c)
			}
		}
		for _, roi := range clipped {
			if coverage(append([]image.Rectangle{roi}, crops...)) != coverage(crops) {
				t.Fatalf("case %d: region %v not covered by %v", i, roi, crops)
			}
		}
	}
}

func TestCoverage(t *testing.T) {
	tests := []struct {
		rects []image.Rectangle
		want  float64
	}{
		{nil, 0},
		{[]image.Rectangle{image.Rect(0, 0, 10, 10)}, 100},
		{[]image.Rectangle{image.Rect(0, 0, 10, 10), image.Rect(5, 5, 15, 15)}, 175},
		{[]image.Rectangle{image.Rect(0, 0, 10, 10), image.Rect(0, 0, 10, 10)}, 100},
		{[]image.Rectangle{image.Rect(0, 0, 10, 10), image.Rect(20, 0, 30, 10)}, 200},
		{[]image.Rectangle{image.Rect(0, 0, 30, 10), image.Rect(10, -10, 20, 20)}, 500},
	}
	for _, tc := range tests {
		if got := coverage(tc.rects); got != tc.want {
			t.Errorf("coverage(%v) = %g, want %g", tc.rects, got, tc.want)
		}
	}
}

// greedyNMS stands in for gocv.NMSBoxes in pure-Go tests.
func greedyNMS(thr float64) func([]image.Rectangle, []float32) []int {
	return func(boxes []image.Rectangle, scores []float32) []int {
		order := make([]int, len(boxes))
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(a, b int) int {
			switch {
			case scores[a] > scores[b]:
				return -1
			case scores[a] < scores[b]:
				return 1
			}
			return 0
		})
		var keep []int
	next:
		for _, i := range order {
			for _, k := range keep {
				if iou(boxes[i], boxes[k]) > thr {
					continue next
				}
			}
			keep = append(keep, i)
		}
		return keep
	}
}

func TestSuppress(t *testing.T) {
	person := func(s float32, r image.Rectangle, pass int) candidate {
		return candidate{Detection{Class: "person", ClassID: 0, Score: s, Box: r}, pass}
	}
	car := func(s float32, r image.Rectangle, pass int) candidate {
		return candidate{Detection{Class: "car", ClassID: 2, Score: s, Box: r}, pass}
	}
	got := suppress([]candidate{
		person(0.9, image.Rect(100, 100, 130, 200), 0),
		person(0.8, image.Rect(102, 101, 131, 198), 1), // the same person from the next crop
		person(0.6, image.Rect(100, 100, 130, 140), 1), // cut by crop 1's edge: inside the whole one
		person(0.5, image.Rect(108, 120, 122, 180), 0), // inside, but the same pass: kept (NMS decides)
		car(0.7, image.Rect(100, 100, 130, 200), 0),    // another class is not suppressed
		person(0.4, image.Rect(300, 100, 330, 200), 1),
	}, greedyNMS(0.45))
	want := []Detection{
		{Class: "person", Score: 0.9, Box: image.Rect(100, 100, 130, 200)},
		{Class: "car", ClassID: 2, Score: 0.7, Box: image.Rect(100, 100, 130, 200)},
		{Class: "person", Score: 0.5, Box: image.Rect(108, 120, 122, 180)},
		{Class: "person", Score: 0.4, Box: image.Rect(300, 100, 330, 200)},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

func TestNMSBoxes(t *testing.T) {
	checkMats(t)
	if got := nmsBoxes(nil, nil, 0.3, 0.45); got != nil {
		t.Errorf("no boxes: %v", got)
	}
	boxes := []image.Rectangle{image.Rect(0, 0, 10, 20), image.Rect(1, 0, 11, 20), image.Rect(50, 0, 60, 20), image.Rect(80, 0, 90, 20)}
	got := nmsBoxes(boxes, []float32{0.6, 0.9, 0.5, 0.1}, 0.3, 0.45)
	if !slices.Equal(got, []int{1, 2}) {
		t.Errorf("kept %v, want [1 2]", got)
	}
}

func TestInAnyROI(t *testing.T) {
	dets := []Detection{{Box: image.Rect(0, 0, 10, 10)}, {Box: image.Rect(50, 50, 60, 60)}}
	got := inAnyROI(dets, []image.Rectangle{image.Rect(5, 5, 20, 20)})
	if len(got) != 1 || got[0].Box != image.Rect(0, 0, 10, 10) {
		t.Errorf("got %v", got)
	}
}

func TestROIConfigValidation(t *testing.T) {
	for _, mod := range []func(*ROIConfig){
		func(c *ROIConfig) { c.Margin = -1 },
		func(c *ROIConfig) { c.MaxUpscale = 0.5 },
		func(c *ROIConfig) { c.MaxCrops = 17 },
		func(c *ROIConfig) { c.FullFrameRatio = 1.5 },
		func(c *ROIConfig) { c.MaxAspect = 0.5 },
		func(c *ROIConfig) { c.MergeGap = -1 },
	} {
		c := defaultROI()
		mod(&c)
		if c.validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if c := defaultROI(); c.validate() != nil {
		t.Errorf("defaults refused: %v", c.validate())
	}
}

func TestPackTiles(t *testing.T) {
	const side, gap = 416, 8
	tests := []struct {
		name      string
		crops     []image.Rectangle
		wantScale float64 // to 2 decimals
	}{
		{"one small crop, capped upscale", []image.Rectangle{image.Rect(0, 0, 100, 100)}, 3},
		{"one crop fills the width", []image.Rectangle{image.Rect(0, 0, 208, 139)}, 2},
		{"two side by side", []image.Rectangle{image.Rect(0, 0, 139, 139), image.Rect(300, 300, 439, 439)}, 1.47},
		{"four in two rows", []image.Rectangle{image.Rect(0, 0, 139, 139), image.Rect(200, 0, 339, 139),
			image.Rect(0, 300, 139, 439), image.Rect(400, 300, 539, 439)}, 1.47},
		{"the whole frame", []image.Rectangle{image.Rect(0, 0, 768, 576)}, 0.54},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tiles, s := packTiles(tc.crops, side, gap, 3)
			if math.Abs(s-tc.wantScale) > 0.01 {
				t.Errorf("scale %.3f, want %.2f", s, tc.wantScale)
			}
			if len(tiles) != len(tc.crops) {
				t.Fatalf("%d tiles for %d crops", len(tiles), len(tc.crops))
			}
			for i, a := range tiles {
				if a.src != tc.crops[i] || !a.dst.In(image.Rect(0, 0, side, side)) {
					t.Errorf("tile %+v", a)
				}
				for _, b := range tiles[i+1:] {
					if a.dst.Inset(-(gap - 1)).Overlaps(b.dst) { // nearer than the gap
						t.Errorf("tiles %v and %v closer than the gap", a.dst, b.dst)
					}
				}
			}
		})
	}
}

func TestTileToFrame(t *testing.T) {
	tl := tile{src: image.Rect(100, 50, 200, 250), dst: image.Rect(10, 0, 110, 200)} // scale 1, shifted
	if box, ok := tl.toFrame(60, 100, 20, 40); !ok || box != image.Rect(140, 130, 160, 170) {
		t.Errorf("inside: %v %v", box, ok)
	}
	if box, ok := tl.toFrame(105, 100, 20, 40); !ok || box != image.Rect(185, 130, 200, 170) {
		t.Errorf("clipped at the tile edge: %v %v", box, ok)
	}
	if _, ok := tl.toFrame(150, 100, 20, 40); ok {
		t.Error("a box centred off the tile was mapped")
	}
	half := tile{src: image.Rect(0, 0, 768, 576), dst: image.Rect(0, 0, 384, 288)}
	if box, _ := half.toFrame(100, 100, 10, 20); box != image.Rect(190, 180, 210, 220) {
		t.Errorf("scaled: %v", box)
	}
}
