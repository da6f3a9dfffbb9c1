package camsim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
)

func TestServeH264(t *testing.T) {
	video := testVideo(t)
	srv := startServer(t, Camera{ID: "cam-01", Path: video}, Camera{ID: "cam-02", Path: video})

	t.Run("gortsplib-client", func(t *testing.T) {
		t.Parallel()
		r := play(t, srv.URL("cam-01"))

		if r.forma.SPS == nil || r.forma.PPS == nil {
			t.Fatalf("SDP lacks parameter sets: SPS=%x PPS=%x", r.forma.SPS, r.forma.PPS)
		}
		var sps h264.SPS
		if err := sps.Unmarshal(r.forma.SPS); err != nil {
			t.Fatalf("SDP SPS: %v", err)
		}
		if sps.Width() != 768 || sps.Height() != 576 {
			t.Fatalf("SDP SPS size %dx%d, want 768x576", sps.Width(), sps.Height())
		}

		// >= 2 s of media and at least one IDR (GOP is 2 s, so allow more time).
		waitFor(t, 10*time.Second, "2s of access units and an IDR", func() bool {
			aus := r.snapshot()
			if len(aus) < 2 {
				return false
			}
			idr := false
			for _, au := range aus {
				idr = idr || au.idr
			}
			return idr && tsDiff(aus[0].ts, aus[len(aus)-1].ts) >= 2*clockRate
		})
		aus := r.snapshot()
		span := checkMonotonic(t, aus)
		t.Logf("received %d AUs spanning %.2fs of RTP time", len(aus), float64(span)/clockRate)
		if len(aus) < 20 {
			t.Fatalf("got %d AUs for %.2fs, want >= 20 (10 fps)", len(aus), float64(span)/clockRate)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.errs) > 0 {
			t.Fatalf("RTP decode errors: %v", r.errs)
		}
	})

	t.Run("ffprobe", func(t *testing.T) {
		t.Parallel()
		requireTool(t, "ffprobe")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-rtsp_transport", "tcp",
			"-show_entries", "stream=codec_name,width,height", "-of", "json", srv.URL("cam-02")).Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Fatalf("ffprobe: %v: %s", err, ee.Stderr)
			}
			t.Fatalf("ffprobe: %v", err)
		}
		var res struct {
			Streams []struct {
				CodecName string `json:"codec_name"`
				Width     int    `json:"width"`
				Height    int    `json:"height"`
			} `json:"streams"`
		}
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("ffprobe output: %v\n%s", err, out)
		}
		if len(res.Streams) != 1 {
			t.Fatalf("ffprobe: %d streams, want 1:\n%s", len(res.Streams), out)
		}
		if s := res.Streams[0]; s.CodecName != "h264" || s.Width != 768 || s.Height != 576 {
			t.Fatalf("ffprobe: got %s %dx%d, want h264 768x576", s.CodecName, s.Width, s.Height)
		}
	})

	t.Run("unknown-path-describe", func(t *testing.T) {
		t.Parallel()
		u, err := base.ParseURL(srv.URL("no-such-cam"))
		if err != nil {
			t.Fatal(err)
		}
		tcp := gortsplib.ProtocolTCP
		c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &tcp}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _, err = c.Describe(u)
		var bad liberrors.ErrClientBadStatusCode
		if !errors.As(err, &bad) || bad.Code != base.StatusNotFound {
			t.Fatalf("DESCRIBE unknown path: got %v, want 404", err)
		}
	})

	t.Run("unknown-path-setup", func(t *testing.T) {
		t.Parallel()
		status := rawRTSP(t, srv.Addr(), "SETUP", "rtsp://"+srv.Addr()+"/no-such-cam/trackID=0",
			"Transport: RTP/AVP/TCP;unicast;interleaved=0-1")
		if status != 404 {
			t.Fatalf("SETUP unknown path: status %d, want 404", status)
		}
	})
}

// rawRTSP sends one request on a fresh connection and returns the status code.
func rawRTSP(t *testing.T, addr, method, url string, headers ...string) int {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	req := method + " " + url + " RTSP/1.0\r\nCSeq: 1\r\n"
	for _, h := range headers {
		req += h + "\r\n"
	}
	if _, err := conn.Write([]byte(req + "\r\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	var proto string
	var code int
	if _, err := fmt.Sscanf(line, "%s %d", &proto, &code); err != nil {
		t.Fatalf("bad status line %q: %v", line, err)
	}
	return code
}

func TestLooping(t *testing.T) {
	requireTool(t, "ffmpeg")
	video := testVideo(t)
	short := filepath.Join(t.TempDir(), "short.avi")
	out, err := exec.Command("ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", video,
		"-t", "1", "-c", "copy", short).CombinedOutput()
	if err != nil {
		t.Fatalf("make short clip: %v: %s", err, out)
	}
	srv := startServer(t, Camera{ID: "short", Path: short})
	r := play(t, srv.URL("short"))

	const window = 3 * time.Second
	start := time.Now()
	waitFor(t, window+5*time.Second, "3s of looping frames", func() bool {
		aus := r.snapshot()
		return len(aus) > 1 && time.Since(start) >= window
	})
	aus := r.snapshot()
	span := checkMonotonic(t, aus)

	idrs := 0
	maxGap := int64(0)
	for i, au := range aus {
		if au.idr {
			idrs++
		}
		if i > 0 {
			maxGap = max(maxGap, tsDiff(aus[i-1].ts, au.ts))
		}
	}
	t.Logf("received %d AUs, %d IDRs, RTP span %.2fs, max step %d ticks", len(aus), idrs, float64(span)/clockRate, maxGap)

	// A 1 s clip at 10 fps has one IDR per loop: two or more prove it looped.
	if idrs < 2 {
		t.Fatalf("saw %d IDRs in %v, want >= 2 (one per loop)", idrs, window)
	}
	if len(aus) < 20 {
		t.Fatalf("got %d AUs in %v, want >= 20", len(aus), window)
	}
	// Loop boundaries must not jump: steps stay around one frame (0.1 s).
	if maxGap > 2*clockRate/10 {
		t.Fatalf("RTP timestamp jump of %d ticks, want <= %d", maxGap, 2*clockRate/10)
	}
	// Frames keep coming: the last one is recent.
	if since := time.Since(aus[len(aus)-1].at); since > time.Second {
		t.Fatalf("last AU arrived %v ago", since)
	}
}

func TestInvalidConfig(t *testing.T) {
	video := testVideo(t)
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"no cameras", Config{Listen: "127.0.0.1:0"}, []string{"no cameras"}},
		{"no listen", Config{Cameras: []Camera{{ID: "a", Path: video}}}, []string{"listen address is required"}},
		{"bad listen", Config{Listen: "localhost", Cameras: []Camera{{ID: "a", Path: video}}}, []string{"listen address", "localhost"}},
		{"duplicate IDs", Config{Listen: "127.0.0.1:0", Cameras: []Camera{{ID: "a", Path: video}, {ID: "a", Path: video}}}, []string{`camera "a"`, "duplicate ID"}},
		{"bad ID", Config{Listen: "127.0.0.1:0", Cameras: []Camera{{ID: "a/b", Path: video}}}, []string{`camera "a/b"`, "invalid ID"}},
		{"empty ID", Config{Listen: "127.0.0.1:0", Cameras: []Camera{{Path: video}}}, []string{"empty ID"}},
		{"missing file", Config{Listen: "127.0.0.1:0", Cameras: []Camera{{ID: "cam-x", Path: filepath.Join(dir, "nope.avi")}}}, []string{`camera "cam-x"`, "nope.avi", "does not exist"}},
		{"directory", Config{Listen: "127.0.0.1:0", Cameras: []Camera{{ID: "cam-x", Path: dir}}}, []string{`camera "cam-x"`, "not a regular file"}},
		{"udp half", Config{Listen: "127.0.0.1:0", UDPRTPAddress: "127.0.0.1:8000", Cameras: []Camera{{ID: "a", Path: video}}}, []string{"must be set together"}},
		{"udp odd", Config{Listen: "127.0.0.1:0", UDPRTPAddress: "127.0.0.1:8001", UDPRTCPAddress: "127.0.0.1:8002", Cameras: []Camera{{ID: "a", Path: video}}}, []string{"must be even"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.CacheDir = dir
			srv, err := New(tc.cfg, nil)
			if err == nil {
				_ = srv.Close()
				t.Fatalf("New succeeded, want error containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestFFmpegFailure(t *testing.T) {
	requireTool(t, "ffmpeg")
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.mp4")
	if err := os.WriteFile(junk, []byte("this is not a video"), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("bad input", func(t *testing.T) {
		_, err := New(Config{Listen: "127.0.0.1:0", CacheDir: dir, Cameras: []Camera{{ID: "cam-junk", Path: junk}}}, nil)
		if err == nil {
			t.Fatal("New succeeded on a non-video input")
		}
		for _, w := range []string{`camera "cam-junk"`, junk, "ffmpeg", "Invalid data"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not contain %q", err, w)
			}
		}
		if m, _ := filepath.Glob(filepath.Join(dir, "*.ts*")); len(m) != 0 {
			t.Errorf("failed transcode left files behind: %v", m)
		}
	})

	t.Run("missing binary", func(t *testing.T) {
		_, err := New(Config{Listen: "127.0.0.1:0", CacheDir: dir, FFmpeg: filepath.Join(dir, "no-ffmpeg"),
			Cameras: []Camera{{ID: "cam-junk", Path: junk}}}, nil)
		if err == nil || !strings.Contains(err.Error(), "not found") {
			t.Fatalf("got %v, want ffmpeg not found error", err)
		}
	})
}

func TestPortTaken(t *testing.T) {
	requireTool(t, "ffmpeg")
	video := testVideo(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	start := time.Now()
	done := make(chan error, 1)
	go func() {
		srv, err := New(Config{Listen: l.Addr().String(), CacheDir: sharedCacheDir,
			Cameras: []Camera{{ID: "cam-01", Path: video}}}, nil)
		if err == nil {
			// Should not happen; make sure nothing leaks.
			err = srv.Run(canceledContext())
			if err == nil {
				err = errors.New("New and Run both succeeded on a taken port")
			}
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "listen") {
			t.Fatalf("got %v, want a listen error", err)
		}
		t.Logf("error after %v: %v", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(20 * time.Second): // includes a possible first transcode
		t.Fatal("New hung on a taken port")
	}
}

func canceledContext() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestLifecycle(t *testing.T) {
	requireTool(t, "ffmpeg")
	video := testVideo(t)
	log, logs := testLogger(t)

	// Port 0: URL must report the port actually bound. Media comes from the cache.
	srv, err := New(Config{Listen: "127.0.0.1:0", CacheDir: sharedCacheDir,
		Cameras: []Camera{{ID: "cam-01", Path: video}}}, log)
	if err != nil {
		t.Fatal(err)
	}
	if u := srv.URL("cam-01"); strings.Contains(u, ":0/") || !strings.HasPrefix(u, "rtsp://127.0.0.1:") {
		t.Fatalf("URL %q does not carry the bound port", u)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	r := play(t, srv.URL("cam-01"))
	waitFor(t, 5*time.Second, "first frames", func() bool { return len(r.snapshot()) >= 3 })

	if err := srv.Run(context.Background()); err == nil {
		t.Fatal("second Run succeeded")
	}

	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	t.Logf("shutdown took %v", time.Since(start).Round(time.Millisecond))
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close: %v, want ErrClosed", err)
	}
	// The client is disconnected once the server is closed.
	select {
	case <-clientDone(r):
	case <-time.After(5 * time.Second):
		t.Fatal("client still connected 5s after Close")
	}
	// Listening port released.
	l, err := net.Listen("tcp", srv.Addr())
	if err != nil {
		t.Fatalf("port not released after Close: %v", err)
	}
	l.Close()
	if !strings.Contains(logs.String(), "camera_id=cam-01") || !strings.Contains(logs.String(), "component=camsim") {
		t.Errorf("logs lack component/camera_id attributes")
	}
}

func TestCacheReuse(t *testing.T) {
	requireTool(t, "ffmpeg")
	video := testVideo(t)
	dir := t.TempDir()
	short := filepath.Join(dir, "short.avi")
	if out, err := exec.Command("ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", video,
		"-t", "1", "-c", "copy", short).CombinedOutput(); err != nil {
		t.Fatalf("make short clip: %v: %s", err, out)
	}
	cache := filepath.Join(dir, "cache") // created by New
	for i, wantCached := range []string{"cached=false", "cached=true"} {
		log, logs := testLogger(t)
		srv, err := New(Config{Listen: "127.0.0.1:0", CacheDir: cache,
			Cameras: []Camera{{ID: "cam-01", Path: short}}}, log)
		if err != nil {
			t.Fatal(err)
		}
		_ = srv.Close()
		if !strings.Contains(logs.String(), wantCached) {
			t.Errorf("start %d: logs lack %q:\n%s", i+1, wantCached, logs)
		}
	}
	entries, err := os.ReadDir(cache)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || !strings.HasSuffix(entries[0].Name(), ".ts") {
		t.Fatalf("cache dir holds %v, want exactly one .ts file", entries)
	}
}

func TestCloseWithoutRun(t *testing.T) {
	requireTool(t, "ffmpeg")
	video := testVideo(t)
	srv, err := New(Config{Listen: "127.0.0.1:0", CacheDir: sharedCacheDir,
		Cameras: []Camera{{ID: "cam-01", Path: video}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port not released: %v", err)
	}
	l.Close()
}

// clientDone returns a channel closed when the reader's client has terminated.
func clientDone(r *reader) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		_ = r.client.Wait()
		close(ch)
	}()
	return ch
}

// An H.264 input is served as it is, not transcoded: its own GOP (7
// frames here, where camsim's transcode would make 20) reaches the client.
func TestH264InputIsCopied(t *testing.T) {
	requireTool(t, "ffmpeg")
	in := filepath.Join(t.TempDir(), "gop7.mp4")
	if out, err := exec.Command("ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", testVideo(t), "-t", "3",
		"-an", "-c:v", "libx264", "-preset", "veryfast", "-g", "7", "-bf", "0", "-pix_fmt", "yuv420p", in).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, out)
	}
	log, logs := testLogger(t)
	srv, err := New(Config{Listen: "127.0.0.1:0", Cameras: []Camera{{ID: "cam", Path: in}}, CacheDir: t.TempDir()}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() { cancel(); <-done; srv.Close() }()
	if !strings.Contains(logs.String(), "copy=true") {
		t.Errorf("H.264 input not copied:\n%s", logs.String())
	}
	r := play(t, srv.URL("cam"))
	waitFor(t, 10*time.Second, "three key frames", func() bool {
		n := 0
		for _, au := range r.snapshot() {
			if au.idr {
				n++
			}
		}
		return n >= 3
	})
	var idrs []int
	for i, au := range r.snapshot() {
		if au.idr {
			idrs = append(idrs, i)
		}
	}
	if gap := idrs[2] - idrs[1]; gap != 7 {
		t.Errorf("%d frames between key frames, want the input's 7", gap)
	}
}
