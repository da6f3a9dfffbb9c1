package decode

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// BenchmarkDecodeH264 decodes 768x576 H.264 (camsim's encoding: GOP 2 s,
// no B-frames) into BGR Mats on one thread, and reports, as a baseline from
// the same run, what the ffmpeg command line needs per frame for the same
// file on one thread: decoding only (ffmpeg-ns/frame), and decoding plus
// conversion to BGR like Decode does (ffmpeg-bgr-ns/frame).
func BenchmarkDecodeH264(b *testing.B) {
	_, aus := media(b, CodecH264, 20, "", 20, false)

	// The same access units as a raw Annex-B file for ffmpeg.
	var raw bytes.Buffer
	for _, au := range aus {
		for _, n := range au.NALUs {
			raw.Write([]byte{0, 0, 0, 1})
			raw.Write(n)
		}
	}
	file := filepath.Join(b.TempDir(), "bench.h264")
	if err := os.WriteFile(file, raw.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}

	d, err := New(CodecH264)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	i := 0
	for b.Loop() {
		au := aus[i%len(aus)] // the file starts with a key frame, so it loops cleanly
		i++
		m, ok, err := d.Decode(au.NALUs, au.PTS)
		if err != nil || !ok {
			b.Fatalf("AU %d: ok %v err %v", i, ok, err)
		}
		m.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/frame")

	b.ReportMetric(ffmpegNsPerFrame(b, file, len(aus)), "ffmpeg-ns/frame")
	b.ReportMetric(ffmpegNsPerFrame(b, file, len(aus), "-pix_fmt", "bgr24", "-filter_threads", "1"), "ffmpeg-bgr-ns/frame")
}

var benchRe = regexp.MustCompile(`rtime=([0-9.]+)s`)

// ffmpegNsPerFrame runs `ffmpeg -threads 1 -i file -f null -` (with extra
// output options) three times and returns the best time per frame as
// measured by ffmpeg's -benchmark (the processing loop, without start-up).
func ffmpegNsPerFrame(b *testing.B, file string, frames int, extra ...string) float64 {
	b.Helper()
	best := time.Duration(0)
	for range 3 {
		args := append([]string{"-hide_banner", "-nostdin", "-benchmark", "-threads", "1", "-i", file}, extra...)
		args = append(args, "-f", "null", "-")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, "ffmpeg", args...).CombinedOutput()
		cancel()
		if err != nil {
			b.Fatalf("ffmpeg: %v\n%s", err, out)
		}
		m := benchRe.FindSubmatch(out)
		if m == nil {
			b.Fatalf("no rtime in ffmpeg output:\n%s", out)
		}
		sec, err := strconv.ParseFloat(string(m[1]), 64)
		if err != nil {
			b.Fatal(err)
		}
		if d := time.Duration(sec * float64(time.Second)); best == 0 || d < best {
			best = d
		}
	}
	return float64(best.Nanoseconds()) / float64(frames)
}
