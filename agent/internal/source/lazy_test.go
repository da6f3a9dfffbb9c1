package source

import (
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"gocv.io/x/gocv"

	"github.com/xueliang/xl/agent/internal/decode"
	"github.com/xueliang/xl/agent/internal/gocvtest"
	"github.com/xueliang/xl/agent/internal/rtsp"
	"github.com/xueliang/xl/agent/internal/rtsp/rtsptest"
	"github.com/xueliang/xl/internal/testenv"
)

// An RTSP source decodes only what analysis needs: the pictures it hands
// on are exactly those a decoder fed every access unit makes, while the
// access units after a GOP's last analysed one are never decoded when an
// IDR follows. H.265 from x265 has CRA key frames after the first (open
// GOP): pictures after a CRA may reference those before it, so nothing is
// discarded there. A new connection discards what waits, as its pictures
// cannot reference the old one's.
func TestDecodesOnlyWhatAnalysisNeeds(t *testing.T) {
	gocvtest.CheckMats(t)
	const spacing = 100 * time.Millisecond // vtest.avi is 10 fps
	for _, tc := range []struct {
		codec    string
		discards bool
	}{{decode.CodecH264, true}, {decode.CodecH265, false}} {
		t.Run(tc.codec, func(t *testing.T) {
			_, aus, err := rtsptest.ReadTS(rtsptest.Encode(t, cacheDir, testenv.Video(t), tc.codec, 6, "", 23, false))
			if err != nil {
				t.Fatal(err)
			}
			reg := prometheus.NewRegistry()
			m := NewMetrics(reg)
			s, err := New("cam", Config{URL: "rtsp://127.0.0.1:1/cam", FPS: 2, QueueSize: len(aus), Width: 320}, m, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			r := &rtspReader{s: s, interval: 500 * time.Millisecond, rateAt: time.Now()}
			defer func() {
				if r.dec != nil {
					r.dec.Close()
				}
			}()
			t0 := time.Now()
			au := func(i int, session uint64) rtsp.AccessUnit {
				return rtsp.AccessUnit{Codec: tc.codec, PTS: aus[i].PTS, Wall: t0.Add(time.Duration(i) * spacing),
					NALUs: aus[i].NALUs, KeyFrame: decode.IsKeyFrame(tc.codec, aus[i].NALUs), Session: session}
			}
			for i := range aus {
				r.onAccessUnit(au(i, 1))
			}
			// Whatever waits after the last analysed frame is dropped
			// when the connection changes.
			waiting := len(r.pending)
			r.onAccessUnit(au(0, 2))
			held := len(r.pending) // the new connection's first, not analysed

			got := map[int]gocv.Mat{}
			defer func() {
				for _, m := range got {
					m.Close()
				}
			}()
			for f, ok := s.Frames().TryPop(); ok; f, ok = s.Frames().TryPop() {
				i := int(f.At.Sub(t0) / spacing)
				full, err := f.Pic.Full()
				if err != nil {
					t.Fatal(err)
				}
				if _, dup := got[i]; dup || f.At.Sub(t0)%spacing != 0 {
					t.Fatalf("unexpected frame at %v", f.At.Sub(t0))
				}
				got[i] = full.Clone()
				f.Pic.Close()
			}
			if len(got) < 12 {
				t.Fatalf("%d frames analysed of %d, want one every 500 ms", len(got), len(aus))
			}

			ref, err := decode.New(tc.codec)
			if err != nil {
				t.Fatal(err)
			}
			defer ref.Close()
			for i := range aus {
				want, ok, err := ref.Decode(aus[i].NALUs, aus[i].PTS)
				if err != nil {
					t.Fatal(err)
				}
				if !ok {
					continue
				}
				if g, analysed := got[i]; analysed {
					diff := gocv.NewMat()
					gocv.AbsDiff(g, want, &diff)
					flat := diff.Reshape(1, 0)
					if n := gocv.CountNonZero(flat); n != 0 {
						t.Errorf("frame %d differs from the reference decode in %d bytes", i, n)
					}
					flat.Close()
					diff.Close()
				}
				want.Close()
			}

			decoded := testutil.ToFloat64(m.FramesRead.WithLabelValues("cam"))
			skipped := testutil.ToFloat64(m.NotDecoded.WithLabelValues("cam"))
			t.Logf("%d access units: %v decoded, %v never decoded (%d dropped on reconnecting), %d waiting, %d analysed",
				len(aus)+1, decoded, skipped, waiting, held, len(got))
			if int(decoded+skipped)+held != len(aus)+1 {
				t.Errorf("decoded %v + not decoded %v + waiting %d ≠ %d access units", decoded, skipped, held, len(aus)+1)
			}
			if tc.discards && int(skipped) <= waiting {
				t.Errorf("no access unit discarded at an IDR (%v not decoded, %d of them on reconnecting)", skipped, waiting)
			}
			if !tc.discards && int(skipped) != waiting {
				t.Errorf("%v access units not decoded, want only the %d dropped on reconnecting", skipped, waiting)
			}
			if waiting == 0 {
				t.Error("nothing waited at the end: the reconnect case shows nothing")
			}
		})
	}
}

// In keyframe_only mode only the key frames analysis takes are decoded:
// the non-key frames and the key frames between two analysed ones never
// are.
// (H.265 from x265 has CRA key frames, which do not discard waiting ones.)
func TestKeyframeOnlyDecodesOnlyAnalysedKeyFrames(t *testing.T) {
	for _, codec := range []string{decode.CodecH264, decode.CodecH265} {
		t.Run(codec, func(t *testing.T) { keyframeOnly(t, codec) })
	}
}

func keyframeOnly(t *testing.T, codec string) {
	gocvtest.CheckMats(t)
	const spacing = 100 * time.Millisecond
	_, aus, err := rtsptest.ReadTS(rtsptest.Encode(t, cacheDir, testenv.Video(t), codec, 6, "", 5, false))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	// Key frames every 0.5 s, analysis once a second.
	s, err := New("cam", Config{URL: "rtsp://127.0.0.1:1/cam", FPS: 1, QueueSize: len(aus), KeyframeOnly: true, Width: 320}, m, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := &rtspReader{s: s, interval: time.Second, rateAt: time.Now()}
	defer func() { r.dec.Close() }()
	t0 := time.Now()
	keys := 0
	for i := range aus {
		key := decode.IsKeyFrame(codec, aus[i].NALUs)
		if key {
			keys++
		}
		r.onAccessUnit(rtsp.AccessUnit{Codec: codec, PTS: aus[i].PTS, Wall: t0.Add(time.Duration(i) * spacing),
			NALUs: aus[i].NALUs, KeyFrame: key, Session: 1})
	}
	analysed := 0
	for f, ok := s.Frames().TryPop(); ok; f, ok = s.Frames().TryPop() {
		analysed++
		f.Pic.Close()
	}
	decoded := testutil.ToFloat64(m.FramesRead.WithLabelValues("cam"))
	skipped := testutil.ToFloat64(m.NotDecoded.WithLabelValues("cam"))
	t.Logf("%d access units, %d key frames: %v decoded, %v not, %d analysed", len(aus), keys, decoded, skipped, analysed)
	if analysed < 5 || int(decoded) != analysed || keys <= analysed {
		t.Errorf("%v decoded for %d analysed (of %d key frames), want only the analysed ones", decoded, analysed, keys)
	}
	if int(decoded+skipped) != len(aus) || len(r.pending) != 0 {
		t.Errorf("decoded %v + not decoded %v ≠ %d access units (%d waiting)", decoded, skipped, len(aus), len(r.pending))
	}
}
