package detect

import (
	"fmt"
	"image"
	"math"
	"sort"
)

// ROIConfig says how regions of interest become crops: each region with a
// margin of context, grown to a minimum size, near ones merged. YOLOX packs
// the crops side by side into one network pass; HOG runs once per crop.
type ROIConfig struct {
	Margin         float64 // context added around each region, as a share of √(its area) (default 0.3)
	MinMargin      int     // but at least this many pixels (default 8)
	MergeGap       int     // regions closer than this many pixels are merged (default 24)
	MaxUpscale     float64 // small crops are scaled up at most this much (default 3)
	MaxCrops       int     // at most this many crops per frame (default 4)
	FullFrameRatio float64 // when the crops cover this share of the frame, search the whole frame (default 0.5)
	MaxAspect      float64 // longer crops are split into overlapping tiles while MaxCrops allows (default 2)
}

func (c *ROIConfig) setDefaults() {
	if c.Margin == 0 {
		c.Margin = 0.3
	}
	if c.MinMargin == 0 {
		c.MinMargin = 8
	}
	if c.MergeGap == 0 {
		c.MergeGap = 24
	}
	if c.MaxUpscale == 0 {
		c.MaxUpscale = 3
	}
	if c.MaxCrops == 0 {
		c.MaxCrops = 4
	}
	if c.FullFrameRatio == 0 {
		c.FullFrameRatio = 0.5
	}
	if c.MaxAspect == 0 {
		c.MaxAspect = 2
	}
}

func (c *ROIConfig) validate() error {
	switch {
	case c.Margin < 0 || c.Margin > 4:
		return fmt.Errorf("roi.margin %g outside 0–4", c.Margin)
	case c.MinMargin < 0 || c.MergeGap < 0:
		return fmt.Errorf("roi.min_margin and roi.merge_gap must not be negative")
	case c.MaxUpscale < 1 || c.MaxUpscale > 8:
		return fmt.Errorf("roi.max_upscale %g outside 1–8", c.MaxUpscale)
	case c.MaxCrops < 1 || c.MaxCrops > 16:
		return fmt.Errorf("roi.max_crops %d outside 1–16", c.MaxCrops)
	case c.FullFrameRatio <= 0 || c.FullFrameRatio > 1:
		return fmt.Errorf("roi.full_frame_ratio %g outside (0, 1]", c.FullFrameRatio)
	case c.MaxAspect < 1:
		return fmt.Errorf("roi.max_aspect %g below 1", c.MaxAspect)
	}
	return nil
}

// clipROIs clips regions to the frame and drops the empty ones.
func clipROIs(frame image.Point, rois []image.Rectangle) []image.Rectangle {
	fr := image.Rectangle{Max: frame}
	out := make([]image.Rectangle, 0, len(rois))
	for _, r := range rois {
		r = r.Canon().Intersect(fr)
		if !r.Empty() {
			out = append(out, r)
		}
	}
	return out
}

// planCrops turns regions of interest (already clipped) into at most
// cfg.MaxCrops crops: each region grown by its margin and to minSide,
// overlapping or near crops merged, long crops tiled. It returns the whole
// frame when the crops would cover most of it anyway, and nothing when there
// are no regions.
func planCrops(frame image.Point, rois []image.Rectangle, cfg ROIConfig, minSide int) []image.Rectangle {
	if len(rois) == 0 {
		return nil
	}
	full := image.Rectangle{Max: frame}
	crops := make([]image.Rectangle, 0, len(rois))
	for _, r := range rois {
		m := max(cfg.MinMargin, int(math.Ceil(cfg.Margin*math.Sqrt(area(r)))))
		r = growTo(r.Inset(-m), minSide, frame)
		crops = append(crops, r)
	}
	crops = mergeNear(crops, cfg.MergeGap)
	for len(crops) > cfg.MaxCrops {
		crops = mergeCheapest(crops)
		crops = mergeNear(crops, cfg.MergeGap)
	}
	if coverage(crops) >= cfg.FullFrameRatio*float64(frame.X*frame.Y) {
		return []image.Rectangle{full}
	}
	crops = tileLong(crops, cfg.MaxAspect, cfg.MaxCrops)
	sort.Slice(crops, func(i, j int) bool {
		if crops[i].Min.Y != crops[j].Min.Y {
			return crops[i].Min.Y < crops[j].Min.Y
		}
		return crops[i].Min.X < crops[j].Min.X
	})
	return crops
}

// growTo grows r around its centre until both sides are at least side (or
// the frame's size), then shifts it inside the frame.
func growTo(r image.Rectangle, side int, frame image.Point) image.Rectangle {
	grow := func(lo, hi, want, limit int) (int, int) {
		want = min(want, limit)
		if d := want - (hi - lo); d > 0 {
			lo -= d / 2
			hi = lo + want
		}
		// shift inside [0, limit]
		if lo < 0 {
			hi -= lo
			lo = 0
		}
		if hi > limit {
			lo -= hi - limit
			hi = limit
		}
		return max(lo, 0), hi
	}
	r.Min.X, r.Max.X = grow(r.Min.X, r.Max.X, side, frame.X)
	r.Min.Y, r.Max.Y = grow(r.Min.Y, r.Max.Y, side, frame.Y)
	return r
}

// near reports whether a and b overlap or are within gap pixels.
func near(a, b image.Rectangle, gap int) bool {
	return a.Inset(-gap).Overlaps(b)
}

// mergeNear unions crops that overlap or are near each other until none are.
func mergeNear(crops []image.Rectangle, gap int) []image.Rectangle {
	for merged := true; merged; {
		merged = false
		for i := 0; i < len(crops) && !merged; i++ {
			for j := i + 1; j < len(crops); j++ {
				if near(crops[i], crops[j], gap) {
					crops[i] = crops[i].Union(crops[j])
					crops = append(crops[:j], crops[j+1:]...)
					merged = true
					break
				}
			}
		}
	}
	return crops
}

// mergeCheapest unions the two crops whose union adds the least new area.
func mergeCheapest(crops []image.Rectangle) []image.Rectangle {
	bi, bj, best := 0, 1, math.MaxFloat64
	for i := range crops {
		for j := i + 1; j < len(crops); j++ {
			u := crops[i].Union(crops[j])
			cost := area(u) - area(crops[i]) - area(crops[j])
			if cost < best {
				bi, bj, best = i, j, cost
			}
		}
	}
	crops[bi] = crops[bi].Union(crops[bj])
	return append(crops[:bj], crops[bj+1:]...)
}

// tileLong splits crops longer than maxAspect (either way) into overlapping,
// squarer tiles, as long as the total stays within maxCrops.
func tileLong(crops []image.Rectangle, maxAspect float64, maxCrops int) []image.Rectangle {
	out := make([]image.Rectangle, 0, maxCrops)
	budget := maxCrops - len(crops)
	for _, c := range crops {
		w, h := c.Dx(), c.Dy()
		long, short := max(w, h), min(w, h)
		if short == 0 || float64(long) <= maxAspect*float64(short) {
			out = append(out, c)
			continue
		}
		overlap := short / 2
		n := int(math.Ceil(float64(long-overlap) / float64(short*3/2-overlap)))
		n = min(n, budget+1)
		if n < 2 {
			out = append(out, c)
			continue
		}
		budget -= n - 1
		tile := (long + (n-1)*overlap + n - 1) / n
		for k := range n {
			lo := min(k*(tile-overlap), long-tile)
			t := c
			if w >= h {
				t.Min.X, t.Max.X = c.Min.X+lo, c.Min.X+lo+tile
			} else {
				t.Min.Y, t.Max.Y = c.Min.Y+lo, c.Min.Y+lo+tile
			}
			out = append(out, t)
		}
	}
	return out
}

func area(r image.Rectangle) float64 { return float64(r.Dx()) * float64(r.Dy()) }

// coverage is the area the crops cover together (overlaps counted once).
func coverage(crops []image.Rectangle) float64 {
	if len(crops) == 0 {
		return 0
	}
	xs := make([]int, 0, 2*len(crops))
	for _, c := range crops {
		xs = append(xs, c.Min.X, c.Max.X)
	}
	sort.Ints(xs)
	total := 0.0
	for i := 0; i+1 < len(xs); i++ {
		x0, x1 := xs[i], xs[i+1]
		if x0 == x1 {
			continue
		}
		var spans [][2]int
		for _, c := range crops {
			if c.Min.X <= x0 && c.Max.X >= x1 {
				spans = append(spans, [2]int{c.Min.Y, c.Max.Y})
			}
		}
		sort.Slice(spans, func(a, b int) bool { return spans[a][0] < spans[b][0] })
		covered, end := 0, math.MinInt
		for _, s := range spans {
			lo := max(s[0], end)
			if s[1] > lo {
				covered += s[1] - lo
			}
			end = max(end, s[1])
		}
		total += float64(covered) * float64(x1-x0)
	}
	return total
}

// iou is the intersection over union of two boxes.
func iou(a, b image.Rectangle) float64 {
	in := area(a.Intersect(b))
	if in == 0 {
		return 0
	}
	return in / (area(a) + area(b) - in)
}

// candidate is a box before NMS; pass says which crop it came from.
type candidate struct {
	Detection
	pass int
}

// suppress applies NMS per class (nms is gocv.NMSBoxes in production, a Go
// stand-in in tests), then drops boxes that are mostly inside a better box
// of the same class found in another crop (an object cut by one crop's edge
// and seen whole in another).
func suppress(cands []candidate, nms func(boxes []image.Rectangle, scores []float32) []int) []Detection {
	byClass := map[int][]candidate{}
	var classes []int
	for _, c := range cands {
		if _, ok := byClass[c.ClassID]; !ok {
			classes = append(classes, c.ClassID)
		}
		byClass[c.ClassID] = append(byClass[c.ClassID], c)
	}
	sort.Ints(classes)
	var out []Detection
	for _, id := range classes {
		group := byClass[id]
		boxes := make([]image.Rectangle, len(group))
		scores := make([]float32, len(group))
		for i, c := range group {
			boxes[i], scores[i] = c.Box, c.Score
		}
		keep := nms(boxes, scores)
		kept := make([]candidate, 0, len(keep))
		for _, k := range keep {
			kept = append(kept, group[k])
		}
		sort.SliceStable(kept, func(a, b int) bool { return kept[a].Score > kept[b].Score })
		var final []candidate
	next:
		for _, c := range kept {
			for _, f := range final {
				if f.pass != c.pass && area(f.Box.Intersect(c.Box)) >= 0.8*area(c.Box) {
					continue next
				}
			}
			final = append(final, c)
		}
		for _, c := range final {
			out = append(out, c.Detection)
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].Score > out[b].Score })
	return out
}

// inAnyROI keeps detections that overlap at least one region of interest.
func inAnyROI(dets []Detection, rois []image.Rectangle) []Detection {
	out := dets[:0]
	for _, d := range dets {
		for _, r := range rois {
			if d.Box.Overlaps(r) {
				out = append(out, d)
				break
			}
		}
	}
	return out
}

// tile is one crop of the frame placed on the network's input canvas.
type tile struct {
	src image.Rectangle // in the frame
	dst image.Rectangle // on the canvas, src scaled
}

// scaledSize is n pixels at scale s, rounded up.
func scaledSize(n int, s float64) int { return max(1, int(math.Ceil(float64(n)*s-1e-9))) }

// shelfPack places the crops, all at scale s, on a side×side canvas in rows
// (tallest first), gap pixels apart. ok is false when they do not fit.
func shelfPack(crops []image.Rectangle, s float64, side, gap int) ([]tile, bool) {
	order := make([]int, len(crops))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return crops[order[a]].Dy() > crops[order[b]].Dy() })
	tiles := make([]tile, len(crops))
	x, y, shelf := 0, 0, 0
	for _, i := range order {
		w, h := scaledSize(crops[i].Dx(), s), scaledSize(crops[i].Dy(), s)
		if w > side {
			return nil, false
		}
		if x > 0 && x+w > side {
			x, y, shelf = 0, y+shelf+gap, 0
		}
		if y+h > side {
			return nil, false
		}
		tiles[i] = tile{src: crops[i], dst: image.Rect(x, y, x+w, y+h)}
		x += w + gap
		shelf = max(shelf, h)
	}
	return tiles, true
}

// packTiles puts all crops on one side×side canvas at the largest common
// scale up to maxScale that fits, so that one network pass sees them all.
func packTiles(crops []image.Rectangle, side, gap int, maxScale float64) ([]tile, float64) {
	lo, hi := 0.0, maxScale
	if tiles, ok := shelfPack(crops, hi, side, gap); ok {
		return tiles, hi
	}
	for range 30 {
		mid := (lo + hi) / 2
		if _, ok := shelfPack(crops, mid, side, gap); ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	tiles, ok := shelfPack(crops, lo, side, gap)
	if !ok || lo <= 0 {
		return nil, 0
	}
	return tiles, lo
}
