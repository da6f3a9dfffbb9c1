package clip

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/xueliang/xl/agent/internal/rtsp"
	"github.com/xueliang/xl/agent/internal/rtsp/rtsptest"
	"github.com/xueliang/xl/internal/camsim"
	"github.com/xueliang/xl/internal/testenv"
)

var cacheDir string

func TestMain(m *testing.M) { os.Exit(testenv.RunWithTempDir(m, "clip-test-", &cacheDir)) }

// fileAUs encodes a test clip and returns it as access units, as the rtsp
// client would deliver them (parameter sets in front of every key frame).
func fileAUs(t *testing.T, codec string, seconds float64, size string, gop int, bframes bool) []rtsp.AccessUnit {
	t.Helper()
	path := rtsptest.Encode(t, cacheDir, testenv.Video(t), codec, seconds, size, gop, bframes)
	_, raw, err := rtsptest.ReadTS(path)
	if err != nil {
		t.Fatal(err)
	}
	vps, sps, pps := rtsptest.Params(codec, raw)
	params := &rtsp.ParamSets{VPS: vps, SPS: sps, PPS: pps}
	t0 := time.Now()
	out := make([]rtsp.AccessUnit, len(raw))
	for i, au := range raw {
		nalus := au.NALUs
		if au.Key && paramsOf(rtsp.AccessUnit{Codec: codec, NALUs: nalus}) == nil {
			prefix := [][]byte{sps, pps}
			if codec == rtsp.CodecH265 {
				prefix = [][]byte{vps, sps, pps}
			}
			nalus = append(prefix, nalus...)
		}
		out[i] = rtsp.AccessUnit{Codec: codec, PTS: au.PTS, Wall: t0.Add(au.PTS), NALUs: nalus, KeyFrame: au.Key, Params: params, Session: 1}
	}
	return out
}

type probeResult struct {
	Streams []struct {
		CodecName    string `json:"codec_name"`
		Width        int    `json:"width"`
		Height       int    `json:"height"`
		NbReadFrames string `json:"nb_read_frames"`
	} `json:"streams"`
	Format struct {
		Duration string `json:"duration"`
	} `json:"format"`
}

// probe decodes every frame of path with ffprobe -v error; any message on
// stderr is a failure.
func probe(t *testing.T, path string) (codec string, w, h, frames int, dur time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=codec_name,width,height,nb_read_frames:format=duration", "-of", "json", path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", path, err, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Fatalf("ffprobe reports errors for %s:\n%s", path, stderr.String())
	}
	var res probeResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || len(res.Streams) != 1 {
		t.Fatalf("ffprobe output (%v):\n%s", err, stdout.String())
	}
	s := res.Streams[0]
	frames, _ = strconv.Atoi(s.NbReadFrames)
	sec, _ := strconv.ParseFloat(res.Format.Duration, 64)
	return s.CodecName, s.Width, s.Height, frames, time.Duration(sec * float64(time.Second))
}

func TestWriteMP4(t *testing.T) {
	for _, tc := range []struct {
		name      string
		codec     string
		size      string
		bframes   bool
		probeName string
		w, h      int
	}{
		{"h264", rtsp.CodecH264, "", false, "h264", 768, 576},
		{"h264-bframes", rtsp.CodecH264, "320x240", true, "h264", 320, 240},
		{"h265", rtsp.CodecH265, "320x240", false, "hevc", 320, 240},
		{"h265-bframes", rtsp.CodecH265, "320x240", true, "hevc", 320, 240},
	} {
		t.Run(tc.name, func(t *testing.T) {
			aus := fileAUs(t, tc.codec, 4, tc.size, 20, tc.bframes)
			path := filepath.Join(t.TempDir(), "clip.mp4")
			info, err := (&Clip{AUs: aus}).WriteMP4File(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", info)
			codec, w, h, frames, dur := probe(t, path)
			if codec != tc.probeName || w != tc.w || h != tc.h {
				t.Errorf("ffprobe: %s %dx%d, want %s %dx%d", codec, w, h, tc.probeName, tc.w, tc.h)
			}
			if info.Width != tc.w || info.Height != tc.h || info.Frames != len(aus) || info.KeyFrames != 2 || info.Cut {
				t.Errorf("info %+v", info)
			}
			if frames != len(aus) {
				t.Errorf("ffprobe decoded %d frames, want %d", frames, len(aus))
			}
			if want := 4 * time.Second; absDur(dur-want) > 150*time.Millisecond || absDur(info.Duration-want) > 150*time.Millisecond {
				t.Errorf("duration: ffprobe %v, info %v, want about %v", dur, info.Duration, want)
			}
			st, err := os.Stat(path)
			if err != nil || st.Size() != info.Bytes {
				t.Errorf("file size %v (%v), info %d", st.Size(), err, info.Bytes)
			}
		})
	}
}

func TestWriteMP4CutsAtParameterChange(t *testing.T) {
	small := fileAUs(t, rtsp.CodecH264, 2, "320x240", 10, false)
	large := fileAUs(t, rtsp.CodecH264, 2, "", 10, false)
	for i := range large {
		large[i].PTS += 2 * time.Second
	}
	path := filepath.Join(t.TempDir(), "cut.mp4")
	info, err := (&Clip{AUs: append(append([]rtsp.AccessUnit(nil), small...), large...)}).WriteMP4File(path)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Cut || info.Frames != len(small) {
		t.Fatalf("info %+v, want cut after %d frames", info, len(small))
	}
	if _, w, h, frames, _ := probe(t, path); w != 320 || h != 240 || frames != len(small) {
		t.Fatalf("ffprobe %dx%d %d frames", w, h, frames)
	}
}

func TestWriteMP4Errors(t *testing.T) {
	aus := fileAUs(t, rtsp.CodecH264, 2, "320x240", 10, false)
	noParams := aus[0]
	noParams.Params = nil
	noParams.NALUs = noParams.NALUs[len(noParams.NALUs)-1:]
	for _, tc := range []struct {
		name string
		aus  []rtsp.AccessUnit
		want string
	}{
		{"empty", nil, ErrEmpty.Error()},
		{"no-key-frame", aus[1:5], "key frame"},
		{"no-parameter-sets", []rtsp.AccessUnit{noParams}, "parameter sets"},
		{"unknown-codec", []rtsp.AccessUnit{{Codec: "vp8", KeyFrame: true, NALUs: [][]byte{{1}}, Params: aus[0].Params}}, "unsupported codec"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			_, err := (&Clip{AUs: tc.aus}).WriteMP4(&buf)
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	// A failed file write leaves nothing behind.
	dir := t.TempDir()
	if _, err := (&Clip{}).WriteMP4File(filepath.Join(dir, "x.mp4")); !errors.Is(err, ErrEmpty) {
		t.Fatalf("WriteMP4File: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("left behind: %v", entries)
	}
}

// TestClipFromCamsim records a live camsim stream through the rtsp client,
// asks for 3 s before and 2 s after "now" and checks the MP4 with ffprobe.
func TestClipFromCamsim(t *testing.T) {
	srv, err := camsim.New(camsim.Config{Listen: "127.0.0.1:0", Cameras: []camsim.Camera{{ID: "cam", Path: testenv.Video(t)}}, CacheDir: cacheDir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	buf, err := NewBuffer(BufferConfig{Pre: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	c, err := rtsp.New(rtsp.Config{CameraID: "cam", URL: srv.URL("cam"), OnAccessUnit: buf.Push}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	defer srv.Close()
	defer c.Close()
	wg.Go(func() { _ = srv.Run(ctx) })
	wg.Go(func() { _ = c.Run(ctx) })

	testWaitFor(t, 15*time.Second, "3.5 s of buffered video", func() bool { return buf.Stats().Duration >= 3500*time.Millisecond })
	const pre, post = 3 * time.Second, 2 * time.Second
	at := time.Now()
	capture, err := buf.Capture(at, pre, post)
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	clip, err := capture.Wait(wctx)
	if err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(at); waited < post {
		t.Errorf("clip complete after %v, before the post window of %v", waited, post)
	}
	path := filepath.Join(t.TempDir(), "event.mp4")
	info, err := clip.WriteMP4File(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("clip: %+v, truncated %v", info, clip.Truncated)
	codec, w, h, frames, dur := probe(t, path)
	if codec != "h264" || w != 768 || h != 576 {
		t.Errorf("ffprobe: %s %dx%d", codec, w, h)
	}
	if frames != info.Frames || clip.Truncated {
		t.Errorf("ffprobe decoded %d frames of %d (truncated %v)", frames, info.Frames, clip.Truncated)
	}
	// The window is pre+post; the clip starts at the key frame at or before
	// its start, so it may be up to one GOP (2 s) longer.
	const gop = 2 * time.Second
	if dur < pre+post-150*time.Millisecond || dur > pre+post+gop+150*time.Millisecond {
		t.Errorf("duration %v, want %v .. %v", dur, pre+post, pre+post+gop)
	}
	// The event instant is inside the clip, pre after its start at least.
	first, last := clip.AUs[0], clip.AUs[len(clip.AUs)-1]
	if d := at.Sub(first.Wall); d < pre-200*time.Millisecond || d > pre+gop+200*time.Millisecond {
		t.Errorf("clip starts %v before the event, want %v .. %v", d, pre, pre+gop)
	}
	if d := last.Wall.Sub(at); math.Abs(float64(d-post)) > float64(300*time.Millisecond) {
		t.Errorf("clip ends %v after the event, want about %v", d, post)
	}
}

func testWaitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
