package source

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xueliang/xl/agent/internal/detect"
	"github.com/xueliang/xl/agent/internal/motion"
	"github.com/xueliang/xl/internal/testenv"
)

// BenchmarkIngest measures what ingest costs per camera: N cameras of 720p25
// H.264 served by xl-camsim (a separate process), each read by this
// package's RTSP source (gortsplib + libavcodec) with motion analysis at 5
// fps. It reports this process's CPU seconds per stream-second and, as the
// baseline measured in the same run, `ffmpeg -threads 1 -i rtsp://… -f null`
// on the same stream; the ratio is the figure to watch. Run with
// -benchtime=1x; each case streams for benchSeconds.
func BenchmarkIngest(b *testing.B) {
	bin := os.Getenv("XL_BIN_DIR")
	if bin == "" {
		b.Skip("needs the built xl-camsim: set XL_BIN_DIR (make bench does)")
	}
	video := make720p25(b)
	// OpenCV threads as the agent sets them (detector.threads); 0 is its
	// default, one per core.
	if n, err := strconv.Atoi(os.Getenv("XL_BENCH_CV_THREADS")); err == nil {
		detect.SetThreads(n)
		defer detect.SetThreads(0)
	}
	for _, n := range []int{1, 4, 8, 16} {
		// The baseline is measured again for each camera count, just before
		// its cases, so that a machine whose speed drifts during the run
		// (other work, thermal limits) moves both sides of the ratio.
		var base float64
		for _, mode := range []string{"full", "keyframe_only"} {
			b.Run(fmt.Sprintf("cameras=%d/%s", n, mode), func(b *testing.B) {
				if base == 0 {
					base = ffmpegBaseline(b, bin, video)
				}
				for b.Loop() {
					runIngest(b, bin, video, n, mode == "keyframe_only", base)
				}
			})
		}
	}
}

const benchSeconds = 10

func make720p25(b *testing.B) string {
	dir := b.TempDir()
	out := filepath.Join(dir, "720p25.mp4")
	cmd := exec.Command("ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", testenv.Video(b),
		"-vf", "scale=1280:720,fps=25", "-an", "-c:v", "libx264", "-preset", "veryfast", "-g", "50", "-bf", "0", "-pix_fmt", "yuv420p", out)
	if o, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("ffmpeg: %v %s", err, o)
	}
	return out
}

// camsim starts xl-camsim serving the video as n cameras.
func camsim(b *testing.B, bin, video string, n int) (urls []string, stop func()) {
	addr := testenv.FreeAddr(b)
	args := []string{"--listen", addr, "--cache-dir", filepath.Join(b.TempDir(), "cache")}
	for i := range n {
		args = append(args, "--camera", fmt.Sprintf("cam-%d=%s", i, video))
		urls = append(urls, fmt.Sprintf("rtsp://%s/cam-%d", addr, i))
	}
	cmd := exec.Command(filepath.Join(bin, "xl-camsim"), args...)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	stop = func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }
	deadline := time.Now().Add(60 * time.Second)
	for {
		c := exec.Command("ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-show_entries", "stream=width", "-of", "csv=p=0", urls[0])
		if o, err := c.Output(); err == nil && strings.TrimSpace(string(o)) == "1280" {
			break
		}
		if time.Now().After(deadline) {
			stop()
			b.Fatal("camsim did not serve within 60 s")
		}
		time.Sleep(300 * time.Millisecond)
	}
	return urls, stop
}

// ffmpegBaseline is ffmpeg's CPU seconds per stream-second decoding one
// camera's stream single-threaded.
func ffmpegBaseline(b *testing.B, bin, video string) float64 {
	urls, stop := camsim(b, bin, video, 1)
	defer stop()
	cmd := exec.Command("ffmpeg", "-nostdin", "-loglevel", "error", "-threads", "1", "-rtsp_transport", "tcp",
		"-i", urls[0], "-t", fmt.Sprint(benchSeconds), "-f", "null", "-")
	if o, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("ffmpeg baseline: %v %s", err, o)
	}
	cpu := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	b.Logf("baseline: ffmpeg -threads 1 used %.2f CPU s for %d s of 720p25 (%.3f CPU s per stream-second)", cpu, benchSeconds, cpu/benchSeconds)
	return cpu / benchSeconds
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func rssMiB() float64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, rss int64
	fmt.Sscan(string(b), &size, &rss)
	return float64(rss*int64(os.Getpagesize())) / (1 << 20)
}

func runIngest(b *testing.B, bin, video string, n int, keyOnly bool, base float64) {
	urls, stop := camsim(b, bin, video, n)
	defer stop()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	runtime.GC()
	rss0 := rssMiB()
	var srcs []*Source
	for i, u := range urls {
		s, err := New(fmt.Sprintf("cam-%d", i), Config{URL: u, FPS: 5, QueueSize: 4, ReconnectMin: time.Second,
			ReconnectMax: 5 * time.Second, KeyframeOnly: keyOnly}, m, log)
		if err != nil {
			b.Fatal(err)
		}
		srcs = append(srcs, s)
		det, err := motion.New(motion.Config{Width: 640, History: 300, VarThreshold: 16, Warmup: 25, MinBlobRatio: 0.0005},
			[][][2]float64{{{0, 0}, {1, 0}, {1, 1}, {0, 1}}})
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() { s.Run(ctx) })
		wg.Go(func() { // analysis worker, as the pipeline runs it
			defer det.Close()
			for {
				f, ok := s.Frames().Pop(ctx)
				if !ok {
					return
				}
				det.Process(f.Mat)
				f.Mat.Close()
			}
		})
	}
	// Let every stream start, then measure a steady window.
	time.Sleep(3 * time.Second)
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0, start := cpuSeconds(), time.Now()
	time.Sleep(benchSeconds * time.Second)
	cpu := cpuSeconds() - cpu0
	runtime.ReadMemStats(&ms1)
	streamSeconds := float64(n) * time.Since(start).Seconds()
	rss := rssMiB()
	cancel()
	wg.Wait()
	for _, s := range srcs {
		s.Close()
	}
	dropped := sumCounter(reg, "xl_agent_frames_dropped_total")
	perStream := cpu / streamSeconds
	b.ReportMetric(perStream, "cpu-s/stream-s")
	b.ReportMetric(perStream/base, "x-ffmpeg")
	b.ReportMetric((rss-rss0)/float64(n), "MiB/camera")
	b.ReportMetric(dropped, "frames-dropped")
	allocMiB := float64(ms1.TotalAlloc-ms0.TotalAlloc) / (1 << 20) / streamSeconds
	gcs := float64(ms1.NumGC-ms0.NumGC) / time.Since(start).Seconds()
	b.Logf("%d cameras (keyframe_only=%v): %.3f CPU s per stream-second = %.2f× ffmpeg; RSS +%.0f MiB (%.1f MiB/camera); %v frames dropped; Go heap: %.2f MiB allocated per stream-second, %.1f GC cycles/s",
		n, keyOnly, perStream, perStream/base, rss-rss0, (rss-rss0)/float64(n), dropped, allocMiB, gcs)
}

// sumCounter adds up a counter's series (zero when it has none yet).
func sumCounter(reg *prometheus.Registry, name string) float64 {
	mfs, _ := reg.Gather()
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
