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
	"github.com/xueliang/xl/agent/internal/rtsp"
	"github.com/xueliang/xl/internal/testenv"
)

// BenchmarkIngest measures what ingest costs per camera: N cameras of 720p25
// H.264 served by xl-camsim (a separate process), each read by this
// package's RTSP source (gortsplib + libavcodec) with motion analysis at 5
// fps. It reports this process's CPU seconds per stream-second and, as the
// baseline measured in the same window, `ffmpeg -threads 1 -i rtsp://… -f
// null` on the first camera's stream; the ratio is the figure to watch. Run
// with -benchtime=1x; each case streams for benchSeconds.
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
		modes := []string{"full", "keyframe_only"}
		if n == 1 {
			// Floors of keyframe_only, in the same run: receiving the
			// stream alone (RTSP, depacketising, access units dropped),
			// then also decoding and converting its key frames (no
			// motion); and ffmpeg's own key-frame-only decoding of the
			// stream (-skip_frame nokey) against its full decoding.
			modes = append(modes, "floor=receive", "floor=keyframes", "floor=ffmpeg-keyframes")
		}
		for _, mode := range modes {
			b.Run(fmt.Sprintf("cameras=%d/%s", n, mode), func(b *testing.B) {
				for b.Loop() {
					if mode == "floor=ffmpeg-keyframes" {
						ffmpegKeyframes(b, bin, video)
						continue
					}
					runIngest(b, bin, video, n, mode)
				}
			})
		}
	}
}

// benchSeconds is how long each case streams once warm (XL_BENCH_SECONDS
// overrides it: longer windows average out a noisy machine).
var benchSeconds = func() int {
	if n, err := strconv.Atoi(os.Getenv("XL_BENCH_SECONDS")); err == nil && n > 0 {
		return n
	}
	return 10
}()

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

// ffmpeg is the baseline: `ffmpeg -threads 1 -i rtsp://… -f null -`
// decoding one camera's stream (extra decoder options such as -skip_frame
// go before -i), started next to the agent and measured from /proc in the
// same window. Measured apart, a few minutes earlier or later, the
// baseline moved by up to 50 % on this machine (a host that slows down
// for a stretch); in the same window both sides see the same machine. The
// agent's share of the cores stays small (16 cameras use about a third of
// the two), so ffmpeg keeps a core to itself.
type ffmpeg struct {
	cmd        *exec.Cmd
	out        strings.Builder
	cpu0, t0   float64
	sw0        int64
	started    time.Time
	windowFrom time.Time
}

func startFFmpeg(b *testing.B, url string, extra ...string) *ffmpeg {
	args := append([]string{"-nostdin", "-loglevel", "error", "-threads", "1", "-rtsp_transport", "tcp"}, extra...)
	args = append(args, "-i", url, "-f", "null", "-")
	f := &ffmpeg{cmd: exec.Command("ffmpeg", args...), started: time.Now()}
	f.cmd.Stdout, f.cmd.Stderr = &f.out, &f.out
	if err := f.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	return f
}

// mark starts the measured window.
func (f *ffmpeg) mark(b *testing.B) {
	cpu, sw, err := procUsage(f.cmd.Process.Pid)
	if err != nil {
		b.Fatalf("ffmpeg baseline ended early: %v %s", err, f.out.String())
	}
	f.cpu0, f.sw0, f.windowFrom = cpu, sw, time.Now()
}

// perSecond ends the window: ffmpeg's CPU seconds per stream-second and
// context switches per second in it, and over its whole run so far (start-up
// and probing included: how earlier reports measured it).
func (f *ffmpeg) perSecond(b *testing.B) (cpu, switches, whole float64) {
	c, sw, err := procUsage(f.cmd.Process.Pid)
	if err != nil {
		b.Fatalf("ffmpeg baseline ended early: %v %s", err, f.out.String())
	}
	secs := time.Since(f.windowFrom).Seconds()
	return (c - f.cpu0) / secs, float64(sw-f.sw0) / secs, c / time.Since(f.started).Seconds()
}

func (f *ffmpeg) stop() {
	_ = f.cmd.Process.Kill()
	_ = f.cmd.Wait()
}

// ffmpegKeyframes measures ffmpeg's own key-frame-only decoding
// (-skip_frame nokey) and its full decoding of one stream side by side.
func ffmpegKeyframes(b *testing.B, bin, video string) {
	urls, stop := camsim(b, bin, video, 1)
	defer stop()
	full, key := startFFmpeg(b, urls[0]), startFFmpeg(b, urls[0], "-skip_frame", "nokey")
	defer full.stop()
	defer key.stop()
	time.Sleep(benchWarmup)
	full.mark(b)
	key.mark(b)
	time.Sleep(time.Duration(benchSeconds) * time.Second)
	base, _, _ := full.perSecond(b)
	kf, _, _ := key.perSecond(b)
	b.ReportMetric(kf, "cpu-s/stream-s")
	b.ReportMetric(kf/base, "x-ffmpeg")
	b.Logf("ffmpeg -skip_frame nokey: %.3f CPU s per stream-second = %.2f× ffmpeg decoding every frame (%.3f) in the same window", kf, kf/base, base)
}

// benchWarmup is how long both sides stream before the measured window.
const benchWarmup = 3 * time.Second

// procUsage reads another process's CPU seconds and context switches from
// /proc (the CPU time in clock ticks of 10 ms).
func procUsage(pid int) (cpu float64, switches int64, err error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			switches += n
		}
	}
	return float64(utime+stime) / 100, switches, nil // USER_HZ is 100 on Linux
}

// benchReadInterval is the agent's default read_interval at 5 fps analysis
// (XL_BENCH_READ_INTERVAL overrides it; 0 reads packets as they arrive).
var benchReadInterval = func() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("XL_BENCH_READ_INTERVAL")); err == nil {
		return d
	}
	return 200 * time.Millisecond
}()

// benchMotionWidth is the agent's default motion.width
// (XL_BENCH_MOTION_WIDTH overrides it).
var benchMotionWidth = func() int {
	if n, err := strconv.Atoi(os.Getenv("XL_BENCH_MOTION_WIDTH")); err == nil && n > 0 {
		return n
	}
	return 320
}()

// cpuSeconds is this process's CPU time; switches counts its context
// switches (voluntary and involuntary), which cost more than their share
// on virtual machines.
func cpuSeconds() (cpu float64, switches, faults int64) {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds(), ru.Nvcsw + ru.Nivcsw, ru.Minflt + ru.Majflt
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

// runIngest streams n cameras in a mode: full, keyframe_only, or one of the
// floors (floor=receive: the RTSP client only; floor=keyframes: key frames
// decoded and converted at the analysis width, no motion).
// It returns the CPU seconds per stream-second.
func runIngest(b *testing.B, bin, video string, n int, mode string) float64 {
	keyOnly := mode != "full"
	urls, stop := camsim(b, bin, video, n)
	defer stop()
	ff := startFFmpeg(b, urls[0])
	defer ff.stop()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	runtime.GC()
	rss0 := rssMiB()
	var srcs []*Source
	for i, u := range urls {
		if mode == "floor=receive" {
			c, err := rtsp.New(rtsp.Config{CameraID: fmt.Sprintf("cam-%d", i), URL: u, ReadInterval: benchReadInterval,
				OnAccessUnit: func(rtsp.AccessUnit) {}}, m.RTSP, log)
			if err != nil {
				b.Fatal(err)
			}
			wg.Go(func() { c.Run(ctx); c.Close() })
			continue
		}
		s, err := New(fmt.Sprintf("cam-%d", i), Config{URL: u, FPS: 5, QueueSize: 4, ReconnectMin: time.Second,
			ReconnectMax: 5 * time.Second, KeyframeOnly: keyOnly, ReadInterval: benchReadInterval, Width: benchMotionWidth}, m, log)
		if err != nil {
			b.Fatal(err)
		}
		srcs = append(srcs, s)
		det, err := motion.New(motion.Config{Width: benchMotionWidth, History: 300, VarThreshold: 16, Warmup: 25, MinBlobRatio: 0.0005},
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
				if mode != "floor=keyframes" {
					if small, err := f.Pic.Scaled(benchMotionWidth); err == nil {
						det.Process(small)
					}
				}
				f.Pic.Close()
			}
		})
	}
	// Let every stream start, then measure a steady window.
	time.Sleep(benchWarmup)
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	ff.mark(b)
	cpu0, sw0, pf0 := cpuSeconds()
	start := time.Now()
	time.Sleep(time.Duration(benchSeconds) * time.Second)
	cpu, sw, pf := cpuSeconds()
	base, baseSwitches, baseWhole := ff.perSecond(b)
	cpu -= cpu0
	switchRate := float64(sw-sw0) / time.Since(start).Seconds()
	faultRate := float64(pf-pf0) / time.Since(start).Seconds()
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
	b.Logf("baseline in the same window: ffmpeg -threads 1 %.3f CPU s per stream-second, %.0f context switches/s (whole run with start-up: %.3f)",
		base, baseSwitches, baseWhole)
	b.Logf("%d cameras (%s): %.3f CPU s per stream-second = %.2f× ffmpeg; RSS +%.0f MiB (%.1f MiB/camera); %v frames dropped; Go heap: %.2f MiB allocated per stream-second, %.1f GC cycles/s; %.0f context switches/s, %.0f page faults/s",
		n, mode, perStream, perStream/base, rss-rss0, (rss-rss0)/float64(n), dropped, allocMiB, gcs, switchRate, faultRate)
	return perStream
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
