package snapshot

import (
	"os"
	"testing"

	"gocv.io/x/gocv"

	"github.com/xueliang/xl/agent/internal/gocvtest"
)

func TestMain(m *testing.M) { os.Exit(gocvtest.RunCheckingMats(m)) }

// Render draws on a copy: the JPEG differs from the clean one, decodes at
// the frame's size, and the frame itself is unchanged. Labels near the top
// edge go below the box.
func TestRenderDrawsOnACopy(t *testing.T) {
	gocvtest.CheckMats(t)
	frame := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(90, 120, 60, 0), 240, 320, gocv.MatTypeCV8UC3)
	defer frame.Close()
	before := frame.Clone()
	defer before.Close()
	zone := [][2]float64{{0.1, 0.1}, {0.9, 0.1}, {0.9, 0.9}, {0.1, 0.9}}
	boxes := []Box{{Rect: [4]float64{0.2, 0.0, 0.1, 0.3}, Label: "person 0.84 #17"}, {Rect: [4]float64{0.5, 0.5, 0.2, 0.2}}}
	drawn, err := Render(frame, zone, boxes, "intrusion crossing", 90)
	if err != nil {
		t.Fatal(err)
	}
	clean, err := Encode(frame, 90)
	if err != nil {
		t.Fatal(err)
	}
	if string(drawn) == string(clean) {
		t.Fatal("nothing drawn")
	}
	img, err := gocv.IMDecode(drawn, gocv.IMReadColor)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if img.Cols() != 320 || img.Rows() != 240 {
		t.Fatalf("decoded %dx%d", img.Cols(), img.Rows())
	}
	diff := gocv.NewMat()
	defer diff.Close()
	gocv.AbsDiff(frame, before, &diff)
	if s := diff.Sum(); s.Val1+s.Val2+s.Val3 != 0 {
		t.Fatal("Render changed the frame")
	}
	empty := gocv.NewMat()
	defer empty.Close()
	if _, err := Render(empty, zone, boxes, "", 90); err == nil {
		t.Fatal("empty frame accepted")
	}
	if _, err := Render(frame, nil, nil, "", 0); err == nil {
		t.Fatal("quality 0 accepted")
	}
}
