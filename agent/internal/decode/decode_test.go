package decode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/xueliang/xl/agent/internal/rtsp"
	"github.com/xueliang/xl/agent/internal/rtsp/rtsptest"
	"github.com/xueliang/xl/internal/camsim"
	"github.com/xueliang/xl/internal/testenv"
)

var cacheDir string

func TestMain(m *testing.M) { os.Exit(testenv.RunWithTempDir(m, "decode-test-", &cacheDir)) }

// media encodes (once per run) and reads a test clip from vtest.avi.
func media(t testing.TB, codec string, seconds float64, size string, gop int, bframes bool) (string, []rtsptest.AU) {
	t.Helper()
	path := rtsptest.Encode(t, cacheDir, testenv.Video(t), codec, seconds, size, gop, bframes)
	got, aus, err := rtsptest.ReadTS(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != codec {
		t.Fatalf("%s: codec %s, want %s", path, got, codec)
	}
	return path, aus
}

// decodeAll feeds aus and returns the sizes of the frames and the errors.
func decodeAll(t *testing.T, d *Decoder, aus []rtsptest.AU) (sizes [][2]int, errs []error) {
	t.Helper()
	for _, au := range aus {
		m, ok, err := d.Decode(au.NALUs, au.PTS)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			sizes = append(sizes, [2]int{m.Cols(), m.Rows()})
			if m.Type() != gocv.MatTypeCV8UC3 {
				t.Errorf("Mat type %v, want CV_8UC3", m.Type())
			}
			m.Close()
		}
	}
	return sizes, errs
}

func TestDecodeFiles(t *testing.T) {
	for _, tc := range []struct {
		name      string
		codec     string
		size      string
		bframes   bool
		opts      []Option
		w, h      int
		minFrames int // of the 30 access units
	}{
		{"h264", CodecH264, "", false, nil, 768, 576, 30},
		{"h264-bframes", CodecH264, "320x240", true, nil, 320, 240, 28},
		{"h264-2-threads", CodecH264, "320x240", false, []Option{WithThreads(2)}, 320, 240, 28},
		{"h264-conceal", CodecH264, "320x240", false, []Option{ConcealErrors()}, 320, 240, 30},
		{"h265", CodecH265, "320x240", false, nil, 320, 240, 30},
		{"h265-bframes", CodecH265, "320x240", true, nil, 320, 240, 27},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, aus := media(t, tc.codec, 3, tc.size, 10, tc.bframes)
			d, err := New(tc.codec, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			sizes, errs := decodeAll(t, d, aus)
			if len(errs) > 0 {
				t.Fatalf("errors: %v", errs)
			}
			if len(aus) != 30 {
				t.Fatalf("%d access units in 3 s at 10 fps", len(aus))
			}
			if len(sizes) < tc.minFrames {
				t.Fatalf("%d frames from %d access units, want >= %d", len(sizes), len(aus), tc.minFrames)
			}
			for _, s := range sizes {
				if s != [2]int{tc.w, tc.h} {
					t.Fatalf("frame %dx%d, want %dx%d", s[0], s[1], tc.w, tc.h)
				}
			}
		})
	}
}

// TestMatchesVideoCapture compares a frame decoded here with the same frame
// decoded by OpenCV's own FFmpeg backend from the same file.
func TestMatchesVideoCapture(t *testing.T) {
	path, aus := media(t, CodecH264, 3, "", 10, false)
	const index = 15 // a P-frame in the middle of the second GOP

	d, err := New(CodecH264)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var ours gocv.Mat
	n := 0
	for _, au := range aus {
		m, ok, err := d.Decode(au.NALUs, au.PTS)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			continue
		}
		if n == index {
			ours = m
			break
		}
		m.Close()
		n++
	}
	if ours.Ptr() == nil {
		t.Fatalf("only %d frames decoded", n)
	}
	defer ours.Close()

	vc, err := gocv.OpenVideoCaptureWithAPI(path, gocv.VideoCaptureFFmpeg)
	if err != nil {
		t.Fatal(err)
	}
	defer vc.Close()
	ref := gocv.NewMat()
	defer ref.Close()
	for i := 0; i <= index; i++ {
		if !vc.Read(&ref) || ref.Empty() {
			t.Fatalf("VideoCapture ended at frame %d", i)
		}
	}
	if ref.Cols() != 768 || ref.Rows() != 576 || ours.Cols() != 768 || ours.Rows() != 576 {
		t.Fatalf("sizes: ours %dx%d, VideoCapture %dx%d", ours.Cols(), ours.Rows(), ref.Cols(), ref.Rows())
	}
	diff := gocv.NewMat()
	defer diff.Close()
	gocv.AbsDiff(ours, ref, &diff)
	mean := diff.Mean()
	mad := (mean.Val1 + mean.Val2 + mean.Val3) / 3
	t.Logf("mean absolute difference to VideoCapture at frame %d: %.3f (B %.3f G %.3f R %.3f)", index, mad, mean.Val1, mean.Val2, mean.Val3)
	if mad > 2 {
		t.Errorf("mean absolute difference %.3f > 2", mad)
	}

	// A different frame is clearly different: the comparison has teeth.
	other := gocv.NewMat()
	defer other.Close()
	for range 10 {
		vc.Read(&other)
	}
	gocv.AbsDiff(ours, other, &diff)
	mean = diff.Mean()
	if far := (mean.Val1 + mean.Val2 + mean.Val3) / 3; far < mad*2 {
		t.Errorf("frame %d differs from frame %d by only %.3f", index, index+10, far)
	}
}

func TestJoinMidGOP(t *testing.T) {
	_, aus := media(t, CodecH264, 3, "320x240", 10, false)
	d, err := New(CodecH264)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	first := -1
	for i := 5; i < len(aus); i++ {
		m, ok, err := d.Decode(aus[i].NALUs, aus[i].PTS)
		if err != nil {
			t.Fatalf("AU %d: %v", i, err)
		}
		if ok {
			m.Close()
			if first < 0 {
				first = i
			}
		} else if first >= 0 {
			t.Fatalf("AU %d: no frame after the first one", i)
		}
	}
	if first != 10 || !aus[10].Key {
		t.Fatalf("first frame from AU %d, want the key frame at 10", first)
	}
}

func TestKeyframeOnly(t *testing.T) {
	for _, codec := range []string{CodecH264, CodecH265} {
		t.Run(codec, func(t *testing.T) {
			_, aus := media(t, codec, 3, "320x240", 10, false)
			d, err := New(codec, KeyframeOnly())
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			keys := 0
			for i, au := range aus {
				m, ok, err := d.Decode(au.NALUs, au.PTS)
				if err != nil {
					t.Fatalf("AU %d: %v", i, err)
				}
				if au.Key {
					keys++
				}
				if ok != au.Key {
					t.Fatalf("AU %d (key %v): frame %v", i, au.Key, ok)
				}
				if ok {
					if d.LastPTS() != au.PTS {
						t.Errorf("AU %d: LastPTS %v, want %v", i, d.LastPTS(), au.PTS)
					}
					m.Close()
				}
			}
			if keys != 3 {
				t.Fatalf("%d key frames in 3 s with a 1 s GOP", keys)
			}
		})
	}
}

func TestResolutionChange(t *testing.T) {
	_, small := media(t, CodecH264, 3, "320x240", 10, false)
	_, large := media(t, CodecH264, 3, "", 10, false)
	d, err := New(CodecH264)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var seq []rtsptest.AU
	seq = append(seq, small[:15]...)
	seq = append(seq, large[:15]...)
	seq = append(seq, small[:5]...)
	sizes, errs := decodeAll(t, d, seq)
	if len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	// 15 small, 15 large, 5 small.
	want := [][2]int{{320, 240}, {768, 576}, {320, 240}}
	var got [][2]int
	for _, s := range sizes {
		if len(got) == 0 || got[len(got)-1] != s {
			got = append(got, s)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || len(sizes) != 35 {
		t.Fatalf("%d frames with sizes %v, want 35 with %v", len(sizes), got, want)
	}
}

func TestCorruptInput(t *testing.T) {
	_, aus := media(t, CodecH264, 3, "320x240", 10, false)
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	corruptKey := func() [][]byte {
		// Keep the parameter sets, scramble the IDR slice after its header.
		var out [][]byte
		for _, n := range aus[0].NALUs {
			n = bytes.Clone(n)
			if n[0]&0x1f == 5 {
				copy(n[4:], random(len(n)-4))
			}
			out = append(out, n)
		}
		return out
	}

	for _, tc := range []struct {
		name    string
		before  int // valid access units decoded first
		au      [][]byte
		wantErr bool
	}{
		{"random-idr-without-params", 0, [][]byte{append([]byte{0x65}, random(2000)...)}, true},
		{"random-p-slice", 5, [][]byte{append([]byte{0x41}, random(2000)...)}, true},
		{"scrambled-idr", 0, corruptKey(), true},
		{"truncated-p-slice", 5, [][]byte{aus[5].NALUs[len(aus[5].NALUs)-1][:len(aus[5].NALUs[len(aus[5].NALUs)-1])/3]}, true},
		{"garbage-sps", 0, [][]byte{append([]byte{0x67}, random(30)...), aus[0].NALUs[len(aus[0].NALUs)-1]}, true},
		{"empty", 5, [][]byte{{}, nil}, false},
		{"zero-bytes", 5, [][]byte{make([]byte, 500)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := New(CodecH264)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			for i := range tc.before {
				m, ok, err := d.Decode(aus[i].NALUs, aus[i].PTS)
				if err != nil || !ok {
					t.Fatalf("valid AU %d: ok %v err %v", i, ok, err)
				}
				m.Close()
			}
			m, ok, err := d.Decode(tc.au, aus[tc.before].PTS)
			if ok {
				m.Close()
			}
			t.Logf("ok %v, err %v", ok, err)
			if tc.wantErr && err == nil {
				t.Fatal("no error for corrupt input")
			}
			if !tc.wantErr && err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			// The decoder recovers at the next key frame.
			recovered := -1
			for i := tc.before + 1; i < len(aus); i++ {
				m, ok, err := d.Decode(aus[i].NALUs, aus[i].PTS)
				if ok {
					m.Close()
					if recovered < 0 {
						recovered = i
					}
				}
				if err != nil && recovered >= 0 {
					t.Fatalf("AU %d: error after recovering: %v", i, err)
				}
			}
			if recovered < 0 || (tc.wantErr && !aus[recovered].Key) {
				t.Fatalf("recovered at AU %d, want a key frame", recovered)
			}
		})
	}
}

// TestFuzzNoCrash throws random access units at both decoders.
func TestFuzzNoCrash(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, codec := range []string{CodecH264, CodecH265} {
		d, err := New(codec)
		if err != nil {
			t.Fatal(err)
		}
		errs := 0
		for i := range 300 {
			n := 1 + rng.IntN(3)
			au := make([][]byte, n)
			for j := range au {
				au[j] = make([]byte, rng.IntN(3000))
				for k := range au[j] {
					au[j][k] = byte(rng.Uint32())
				}
				if len(au[j]) > 2 && j == n-1 && i%2 == 0 { // often claim to be a key frame
					if codec == CodecH264 {
						au[j][0] = 0x65
					} else {
						au[j][0], au[j][1] = 19<<1, 1
					}
				}
			}
			m, ok, err := d.Decode(au, time.Duration(i)*100*time.Millisecond)
			if ok {
				m.Close()
			}
			if err != nil {
				errs++
				if !errors.Is(err, ErrCorrupt) {
					t.Logf("%s: non-corrupt error: %v", codec, err)
				}
			}
		}
		t.Logf("%s: %d errors from 300 random access units", codec, errs)
		d.Close()
	}
}

func TestNewAndClose(t *testing.T) {
	if _, err := New("vp8"); err == nil {
		t.Fatal("vp8 accepted")
	}
	d, err := New(CodecH265, WithThreads(0))
	if err != nil {
		t.Fatal(err)
	}
	if d.Codec() != CodecH265 {
		t.Fatal(d.Codec())
	}
	d.Close()
	d.Close()
	if _, _, err := d.Decode([][]byte{{0x26, 1}}, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Decode after Close: %v", err)
	}
}

func TestIsKeyFrame(t *testing.T) {
	for _, tc := range []struct {
		codec string
		au    [][]byte
		want  bool
	}{
		{CodecH264, [][]byte{{0x67}, {0x68}, {0x65, 1}}, true},
		{CodecH264, [][]byte{{0x41, 1}}, false},
		{CodecH264, [][]byte{{}, nil}, false},
		{CodecH265, [][]byte{{0x26, 1}}, true},  // IDR_W_RADL
		{CodecH265, [][]byte{{0x2a, 1}}, true},  // CRA
		{CodecH265, [][]byte{{0x02, 1}}, false}, // TRAIL_R
		{"vp8", [][]byte{{0x65}}, false},
	} {
		if got := IsKeyFrame(tc.codec, tc.au); got != tc.want {
			t.Errorf("IsKeyFrame(%s, %x) = %v", tc.codec, tc.au, got)
		}
	}
}

// TestDecodeFromCamsim decodes a live camsim stream received by the rtsp
// client, decoding on a worker fed through a bounded queue as the agent does.
func TestDecodeFromCamsim(t *testing.T) {
	start := time.Now()
	srv, err := camsim.New(camsim.Config{Listen: "127.0.0.1:0", Cameras: []camsim.Camera{{ID: "cam", Path: testenv.Video(t)}}, CacheDir: cacheDir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("camsim ready after %s", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	defer srv.Close()
	wg.Go(func() { _ = srv.Run(ctx) })

	queue := make(chan rtsp.AccessUnit, 32)
	var dropped atomic.Int64
	c, err := rtsp.New(rtsp.Config{CameraID: "cam", URL: srv.URL("cam"), OnAccessUnit: func(au rtsp.AccessUnit) {
		select {
		case queue <- au:
		default:
			dropped.Add(1)
		}
	}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wg.Go(func() { _ = c.Run(ctx) })

	d, err := New(CodecH264)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	frames := 0
	timeout := time.After(15 * time.Second)
	for frames < 25 {
		select {
		case au := <-queue:
			if au.Codec != CodecH264 {
				t.Fatalf("codec %s", au.Codec)
			}
			m, ok, err := d.Decode(au.NALUs, au.PTS)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !ok {
				continue
			}
			if m.Cols() != 768 || m.Rows() != 576 {
				t.Fatalf("frame %dx%d, want 768x576", m.Cols(), m.Rows())
			}
			if frames == 0 {
				t.Logf("first frame after %s", time.Since(start).Round(time.Millisecond))
			}
			if frames == 0 && m.Mean().Val1 < 10 {
				t.Errorf("first frame is nearly black: mean %v", m.Mean())
			}
			m.Close()
			frames++
		case <-timeout:
			t.Fatalf("only %d frames in 15 s", frames)
		}
	}
	if n := dropped.Load(); n > 0 {
		t.Logf("%d access units dropped by the test queue", n)
	}
}

// Skipping the conversion of frames nobody needs must not change the ones
// decoded after them: a P-frame decoded after four skipped ones equals the
// same frame decoded with every picture converted.
func TestSkipKeepsReferences(t *testing.T) {
	_, aus := media(t, CodecH264, 3, "", 10, false)
	const index = 15 // a P-frame in the middle of the second GOP
	decodeAt := func(skip func(i int) bool) gocv.Mat {
		d, err := New(CodecH264)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		for i, au := range aus {
			if i != index && skip(i) {
				if err := d.Skip(au.NALUs, au.PTS); err != nil {
					t.Fatal(err)
				}
				continue
			}
			m, ok, err := d.Decode(au.NALUs, au.PTS)
			if err != nil {
				t.Fatal(err)
			}
			if ok && i == index {
				return m
			}
			if ok {
				m.Close()
			}
		}
		t.Fatal("frame not reached")
		return gocv.Mat{}
	}
	all := decodeAt(func(int) bool { return false })
	defer all.Close()
	some := decodeAt(func(i int) bool { return i%5 != 0 })
	defer some.Close()
	diff := gocv.NewMat()
	defer diff.Close()
	gocv.AbsDiff(all, some, &diff)
	flat := diff.Reshape(1, 0)
	defer flat.Close()
	if n := gocv.CountNonZero(flat); n != 0 {
		t.Fatalf("frame %d differs in %d bytes when earlier frames were skipped", index, n)
	}
}
