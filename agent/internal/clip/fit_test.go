package clip

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xueliang/xl/agent/internal/rtsp"
)

// A clip over the size limit is shortened around the event instant: whole
// GOPs from the start while the event stays inside, then from the end. The
// result still decodes.
func TestEncodeMP4Fits(t *testing.T) {
	aus := fileAUs(t, rtsp.CodecH264, 4, "", 20, false) // two GOPs of 2 s
	var full bytes.Buffer
	if _, err := (&Clip{AUs: aus}).WriteMP4(&full); err != nil {
		t.Fatal(err)
	}
	t0 := aus[0].Wall
	for _, tc := range []struct {
		name      string
		limit     int
		keep      time.Duration
		shortened bool
		first     time.Duration // PTS of the first access unit kept
	}{
		{"fits", full.Len(), 3 * time.Second, false, 0},
		{"drops-the-first-gop", full.Len() * 7 / 10, 3 * time.Second, true, 2 * time.Second},
		{"event-in-the-first-gop-cuts-the-end", full.Len() * 7 / 10, time.Second, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mp4, info, shortened, err := (&Clip{AUs: aus}).EncodeMP4(tc.limit, t0.Add(tc.keep))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d of %d bytes, %+v", len(mp4), full.Len(), info)
			if len(mp4) > tc.limit || shortened != tc.shortened {
				t.Fatalf("%d bytes (limit %d), shortened %v", len(mp4), tc.limit, shortened)
			}
			path := filepath.Join(t.TempDir(), "fit.mp4")
			if err := os.WriteFile(path, mp4, 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, _, frames, dur := probe(t, path)
			if frames != info.Frames {
				t.Errorf("ffprobe decoded %d of %d frames", frames, info.Frames)
			}
			// The kept part starts at tc.first and still holds the event.
			start := aus[0].PTS
			if tc.first > 0 {
				start = tc.first
			}
			if end := start + dur; end < tc.keep {
				t.Errorf("clip %v..%v lost the event at %v", start, end, tc.keep)
			}
			if tc.first > 0 && info.Frames != len(aus)-20 {
				t.Errorf("%d frames, want the second GOP's %d", info.Frames, len(aus)-20)
			}
		})
	}
	if _, _, _, err := (&Clip{AUs: aus}).EncodeMP4(1000, t0); err == nil || !strings.Contains(err.Error(), "over the limit") {
		t.Errorf("a key frame over the limit: %v", err)
	}
}
