// Package snapshot renders evidence images: the frame with the zone and the
// moving objects drawn on it, as JPEG.
package snapshot

import (
	"errors"
	"fmt"
	"image"
	"image/color"

	"gocv.io/x/gocv"

	"github.com/xueliang/xl/agent/internal/motion"
)

var (
	zoneColor  = color.RGBA{255, 191, 0, 0} // amber (gocv takes RGB and converts)
	boxColor   = color.RGBA{255, 40, 40, 0} // red
	labelColor = color.RGBA{255, 255, 255, 0}
)

// Box is an object drawn on a snapshot: a box (normalised x, y, w, h) and
// an optional label such as "person 0.84 #17".
type Box struct {
	Rect  [4]float64
	Label string
}

// Annotated returns frame as a JPEG with the zone polygon and boxes
// (normalised x, y, w, h) drawn on a copy; frame itself is not changed.
func Annotated(frame gocv.Mat, zone [][2]float64, boxes [][4]float64, quality int) ([]byte, error) {
	bs := make([]Box, len(boxes))
	for i, b := range boxes {
		bs[i] = Box{Rect: b}
	}
	return Render(frame, zone, bs, "", quality)
}

// Render returns frame as a JPEG with the zone polygon (none when it has
// fewer than 3 points), the labelled boxes and a caption at the top left
// (e.g. "intrusion crossing") drawn on a copy; frame itself is not changed.
func Render(frame gocv.Mat, zone [][2]float64, boxes []Box, caption string, quality int) ([]byte, error) {
	if frame.Empty() || frame.Type() != gocv.MatTypeCV8UC3 {
		return nil, errors.New("snapshot: want a non-empty 8-bit BGR frame")
	}
	img := frame.Clone()
	defer img.Close()
	w, h := img.Cols(), img.Rows()
	thick := max(2, w/400)
	if len(zone) >= 3 {
		pv := gocv.NewPointsVectorFromPoints([][]image.Point{motion.PolygonPoints(zone, w, h)})
		gocv.Polylines(&img, pv, true, zoneColor, thick)
		pv.Close()
	}
	scale := max(0.4, float64(w)/1600)
	for _, b := range boxes {
		r := image.Rect(int(b.Rect[0]*float64(w)), int(b.Rect[1]*float64(h)), int((b.Rect[0]+b.Rect[2])*float64(w)), int((b.Rect[1]+b.Rect[3])*float64(h)))
		gocv.Rectangle(&img, r, boxColor, thick)
		if b.Label == "" {
			continue
		}
		ts := gocv.GetTextSize(b.Label, gocv.FontHersheySimplex, scale, 1)
		y := r.Min.Y - 3
		if y-ts.Y < 0 {
			y = r.Max.Y + ts.Y + 3
		}
		bg := image.Rect(r.Min.X, y-ts.Y-3, r.Min.X+ts.X+4, y+3)
		gocv.Rectangle(&img, bg, boxColor, -1)
		gocv.PutText(&img, b.Label, image.Pt(r.Min.X+2, y), gocv.FontHersheySimplex, scale, labelColor, 1)
	}
	if caption != "" {
		cs := scale * 1.4
		ts := gocv.GetTextSize(caption, gocv.FontHersheySimplex, cs, 2)
		gocv.Rectangle(&img, image.Rect(0, 0, ts.X+12, ts.Y+14), zoneColor, -1)
		gocv.PutText(&img, caption, image.Pt(6, ts.Y+6), gocv.FontHersheySimplex, cs, color.RGBA{0, 0, 0, 0}, 2)
	}
	return Encode(img, quality)
}

// WithZones returns frame as a JPEG with every zone outlined (for snapshot
// commands, which have no event boxes).
func WithZones(frame gocv.Mat, zones [][][2]float64, quality int) ([]byte, error) {
	if frame.Empty() || frame.Type() != gocv.MatTypeCV8UC3 {
		return nil, errors.New("snapshot: want a non-empty 8-bit BGR frame")
	}
	img := frame.Clone()
	defer img.Close()
	w, h := img.Cols(), img.Rows()
	for _, z := range zones {
		if len(z) < 3 {
			continue
		}
		pv := gocv.NewPointsVectorFromPoints([][]image.Point{motion.PolygonPoints(z, w, h)})
		gocv.Polylines(&img, pv, true, zoneColor, max(2, w/400))
		pv.Close()
	}
	return Encode(img, quality)
}

// Encode returns img as a JPEG.
func Encode(img gocv.Mat, quality int) ([]byte, error) {
	if quality < 1 || quality > 100 {
		return nil, fmt.Errorf("snapshot: jpeg quality %d outside 1–100", quality)
	}
	buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, img, []int{gocv.IMWriteJpegQuality, quality})
	if err != nil {
		return nil, fmt.Errorf("snapshot: encode: %w", err)
	}
	defer buf.Close()
	out := make([]byte, buf.Len())
	copy(out, buf.GetBytes())
	return out, nil
}
