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
	zoneColor = color.RGBA{255, 191, 0, 0} // amber (gocv takes RGB and converts)
	boxColor  = color.RGBA{255, 40, 40, 0} // red
)

// Annotated returns frame as a JPEG with the zone polygon and boxes
// (normalised x, y, w, h) drawn on a copy; frame itself is not changed.
func Annotated(frame gocv.Mat, zone [][2]float64, boxes [][4]float64, quality int) ([]byte, error) {
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
	for _, b := range boxes {
		r := image.Rect(int(b[0]*float64(w)), int(b[1]*float64(h)), int((b[0]+b[2])*float64(w)), int((b[1]+b[3])*float64(h)))
		gocv.Rectangle(&img, r, boxColor, thick)
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
