package track

import (
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/xueliang/xl/agent/internal/detect"
	"github.com/xueliang/xl/agent/internal/detect/detecttest"
	"github.com/xueliang/xl/internal/testenv"
)

// yolox loads the shared model, verified against the repository's manifest
// (so no child-process check is needed).
func yolox(t *testing.T) *detect.YOLOX {
	t.Helper()
	return detecttest.YOLOX(t, testLog(t), "person")
}

// TestVtestTrackIDs runs YOLOX and the tracker over 100 frames of vtest.avi
// (10 s at 10 fps, people walking on the road and the lawn): the number of
// track IDs must stay close to the number of people, not grow with every
// missed detection or crossing.
func TestVtestTrackIDs(t *testing.T) {
	const first, n = 100, 100
	y := yolox(t)
	tr, err := New(Config{Zones: []Zone{{Name: "lawn", Polygon: [][2]float64{{0, 0.45}, {0.55, 0.5}, {0.75, 1}, {0, 1}}}}})
	if err != nil {
		t.Fatal(err)
	}
	vc, err := gocv.VideoCaptureFile(testenv.Video(t))
	if err != nil {
		t.Fatal(err)
	}
	defer vc.Close()
	frame := gocv.NewMat()
	defer frame.Close()
	start := time.Date(2025, 3, 1, 20, 0, 0, 0, time.UTC)
	ids := map[int64]int{} // ID → frames seen
	maxPeople := 0
	for i := 0; i < first+n; i++ {
		if !vc.Read(&frame) || frame.Empty() {
			t.Fatalf("vtest.avi ended at frame %d", i)
		}
		if i < first {
			continue
		}
		dets, err := y.Detect(frame, nil)
		if err != nil {
			t.Fatal(err)
		}
		maxPeople = max(maxPeople, len(dets))
		for _, x := range tr.Update(start.Add(time.Duration(i)*100*time.Millisecond), dets, frame.Cols(), frame.Rows()) {
			if !x.Lost {
				ids[x.ID]++
			}
		}
	}
	short, long := 0, 0
	for _, frames := range ids {
		if frames < 10 {
			short++
		}
		if frames >= 60 {
			long++
		}
	}
	t.Logf("%d frames: at most %d people in a frame, %d track IDs (%d seen in 60 frames or more, %d in fewer than 10)",
		n, maxPeople, len(ids), long, short)
	// About 11 people walk through these frames, and the sign post at the
	// left is a steady false "person": IDs may exceed the most people seen
	// at once by those who come and go, not by one per lost detection.
	if len(ids) > maxPeople+5 {
		t.Errorf("%d track IDs for at most %d people at a time", len(ids), maxPeople)
	}
	// The people who stay in view keep one ID for most of the 10 s.
	if long < 6 {
		t.Errorf("only %d tracks lasted 60 frames or more", long)
	}
	for _, x := range tr.Tracks() {
		t.Logf("track %d: %s, %d hits, first %s, last %s, dwell %v", x.ID, x.Class, x.Hits,
			x.FirstSeen.Format("05.0"), x.LastSeen.Format("05.0"), x.Dwell)
	}
}
