package recorder

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xueliang/xl/agent/internal/outbox"
	"github.com/xueliang/xl/agent/internal/publish"
	"github.com/xueliang/xl/agent/internal/rtsp"
	"github.com/xueliang/xl/internal/camsim"
	"github.com/xueliang/xl/internal/mqttc"
	"github.com/xueliang/xl/internal/testenv"
	"github.com/xueliang/xl/internal/wire"
)

var cacheDir string

func TestMain(m *testing.M) { os.Exit(testenv.RunWithTempDir(m, "recorder-test-", &cacheDir)) }

// gop is camsim's key frame interval: 20 frames of the 10 fps footage.
const gop = 2 * time.Second

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var camsimMu sync.Mutex

// startCamsim serves the test footage as camera "cam" until the test ends.
func startCamsim(t *testing.T) *camsim.Server {
	t.Helper()
	camsimMu.Lock() // the first New transcodes; the others use the cache
	srv, err := camsim.New(camsim.Config{Listen: "127.0.0.1:0", Cameras: []camsim.Camera{{ID: "cam", Path: testenv.Video(t)}}, CacheDir: cacheDir}, nil)
	camsimMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(context.Background()) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; err != nil {
			t.Errorf("camsim: %v", err)
		}
	})
	return srv
}

// outboxSink is the agent's real path for evidence: the publisher writing
// into a durable outbox (no broker needed to write).
func outboxSink(t *testing.T) (*publish.Publisher, *outbox.Outbox) {
	t.Helper()
	reg := prometheus.NewRegistry()
	ob, err := outbox.Open(filepath.Join(t.TempDir(), "outbox.db"), outbox.Limits{MaxBytes: 1 << 30, MaxAge: time.Hour}, reg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ob.Close() })
	cfg := mqttc.Default()
	cfg.URL = "tcp://127.0.0.1:1" // never connected: Run is not called
	pub, err := publish.New("agent-1", cfg, ob, time.Minute, func() wire.Status { return wire.Status{} }, nil, reg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	return pub, ob
}

// startRecorder runs a recorder until the test ends.
func startRecorder(t *testing.T, cams []Camera, sink Sink) (*Recorder, *Metrics) {
	t.Helper()
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	rm, err := rtsp.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(cams, sink, m, rm, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	t.Cleanup(func() {
		_ = r.Close()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return r, m
}

// waitClip polls the outbox's clip lane for the clip of alertID.
func waitClip(t *testing.T, ob *outbox.Outbox, alertID string, timeout time.Duration) []byte {
	t.Helper()
	topic := wire.EvidenceTopic("agent-1", alertID, wire.EvidenceClip)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		msgs, err := ob.Pending(t.Context(), 100, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if m.Topic == topic {
				if m.Lane != outbox.LaneClip || m.CameraID != "cam" {
					t.Fatalf("clip in lane %v for camera %q", m.Lane, m.CameraID)
				}
				return m.Payload
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no clip for %s in the outbox after %v", alertID, timeout)
	return nil
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// probe decodes every frame of the MP4 with ffprobe; any message on stderr
// fails the test. It returns the frames decoded and the duration.
func probe(t *testing.T, mp4 []byte) (frames int, dur time.Duration) {
	t.Helper()
	if err := wire.CheckEvidence(wire.EvidenceClip, mp4); err != nil {
		t.Fatalf("clip fails the contract: %v", err)
	}
	path := filepath.Join(t.TempDir(), "clip.mp4")
	if err := os.WriteFile(path, mp4, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=codec_name,width,height,nb_read_frames:format=duration", "-of", "json", path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("ffprobe: %v\n%s", err, stderr.String())
	}
	var res struct {
		Streams []struct {
			CodecName    string `json:"codec_name"`
			Width        int    `json:"width"`
			NbReadFrames string `json:"nb_read_frames"`
		} `json:"streams"`
		Format struct {
			Duration string `json:"duration"`
		} `json:"format"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || len(res.Streams) != 1 {
		t.Fatalf("ffprobe output (%v): %s", err, stdout.String())
	}
	if s := res.Streams[0]; s.CodecName != "h264" || s.Width != 768 {
		t.Errorf("ffprobe: %s width %d, want h264 768", s.CodecName, s.Width)
	}
	frames, _ = strconv.Atoi(res.Streams[0].NbReadFrames)
	sec, _ := strconv.ParseFloat(res.Format.Duration, 64)
	return frames, time.Duration(sec * float64(time.Second))
}

// An event (a clip request, as the pipeline makes at an event's start) on
// camsim footage yields clip evidence in the outbox that ffprobe decodes
// and that covers the requested window within one GOP — from a record
// stream of its own and from the detect stream's access units.
func TestClipOnEvent(t *testing.T) {
	for _, source := range []string{"record", "detect"} {
		t.Run(source, func(t *testing.T) {
			t.Parallel()
			srv := startCamsim(t)
			pub, ob := outboxSink(t)
			const pre, post = 3 * time.Second, 2 * time.Second
			cam := Camera{ID: "cam", Pre: pre, Post: post}
			if source == "record" {
				cam.Record = srv.URL("cam")
			}
			r, m := startRecorder(t, []Camera{cam}, pub)
			if source == "detect" {
				feed := r.Feed("cam")
				if feed == nil {
					t.Fatal("no feed for a camera without a record stream")
				}
				c, err := rtsp.New(rtsp.Config{CameraID: "cam", URL: srv.URL("cam"), OnAccessUnit: feed}, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				done := make(chan struct{})
				go func() { defer close(done); _ = c.Run(context.Background()) }()
				t.Cleanup(func() { _ = c.Close(); <-done })
			} else if r.Feed("cam") != nil {
				t.Error("a camera with a record stream also takes the detect stream")
			}
			buf := r.cams["cam"].buf
			waitFor(t, 20*time.Second, "4 s of buffered video", func() bool { return buf.Stats().Duration >= 4*time.Second })

			at := time.Now()
			alertID := wire.NewULID(at)
			r.RequestClip("cam", alertID, at)
			r.RequestClip("no-such-camera", wire.NewULID(at), at) // ignored
			mp4 := waitClip(t, ob, alertID, 15*time.Second)
			if waited := time.Since(at); waited < post {
				t.Errorf("clip stored %v after the request, before the post window of %v ended", waited, post)
			}
			frames, dur := probe(t, mp4)
			t.Logf("clip: %d bytes, %d frames, %v", len(mp4), frames, dur)
			// pre+post, plus at most one GOP before (the clip starts at a key frame).
			if dur < pre+post-150*time.Millisecond || dur > pre+post+gop+150*time.Millisecond {
				t.Errorf("duration %v, want %v .. %v", dur, pre+post, pre+post+gop)
			}
			if want := int(dur / (100 * time.Millisecond)); frames < want-2 || frames > want+2 {
				t.Errorf("%d frames for %v at 10 fps", frames, dur)
			}
			if got := testutil.ToFloat64(m.Clips.WithLabelValues("cam", ResultComplete)); got != 1 {
				t.Errorf("clips{result=complete} = %v, want 1", got)
			}
		})
	}
}

// Stopping the agent in the middle of a clip's post window still stores
// what was recorded, marked truncated; a request after Close is rejected.
func TestCloseStoresClipsInProgress(t *testing.T) {
	t.Parallel()
	srv := startCamsim(t)
	pub, ob := outboxSink(t)
	r, m := startRecorder(t, []Camera{{ID: "cam", Record: srv.URL("cam"), Pre: 2 * time.Second, Post: time.Minute}}, pub)
	waitFor(t, 20*time.Second, "3 s of buffered video", func() bool { return r.cams["cam"].buf.Stats().Duration >= 3*time.Second })
	at := time.Now()
	alertID := wire.NewULID(at)
	r.RequestClip("cam", alertID, at)
	time.Sleep(500 * time.Millisecond) // some post-event video
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	frames, dur := probe(t, waitClip(t, ob, alertID, time.Second)) // stored before Close returned
	t.Logf("truncated clip: %d frames, %v", frames, dur)
	if dur < 2*time.Second || dur > 5*time.Second {
		t.Errorf("duration %v, want the 2 s before the event and what followed", dur)
	}
	if got := testutil.ToFloat64(m.Clips.WithLabelValues("cam", ResultTruncated)); got != 1 {
		t.Errorf("clips{result=truncated} = %v, want 1", got)
	}
	r.RequestClip("cam", wire.NewULID(time.Now()), time.Now())
	if got := testutil.ToFloat64(m.Clips.WithLabelValues("cam", ResultRejected)); got != 1 {
		t.Errorf("clips{result=rejected} = %v, want 1", got)
	}
}

// More clips in progress than a camera may hold: the oldest is ended early
// and stored with what it has, the newest runs to its end.
func TestTooManyClipsEndsTheOldest(t *testing.T) {
	t.Parallel()
	srv := startCamsim(t)
	pub, ob := outboxSink(t)
	r, m := startRecorder(t, []Camera{{ID: "cam", Record: srv.URL("cam"), Pre: time.Second, Post: 2 * time.Second}}, pub)
	r.maxPending = 1
	waitFor(t, 20*time.Second, "2 s of buffered video", func() bool { return r.cams["cam"].buf.Stats().Duration >= 2*time.Second })
	first, second := wire.NewULID(time.Now()), wire.NewULID(time.Now())
	r.RequestClip("cam", first, time.Now().Add(time.Hour)) // would wait an hour
	r.RequestClip("cam", second, time.Now())
	probe(t, waitClip(t, ob, first, 5*time.Second))
	probe(t, waitClip(t, ob, second, 10*time.Second))
	if a, b := testutil.ToFloat64(m.Clips.WithLabelValues("cam", ResultTruncated)), testutil.ToFloat64(m.Clips.WithLabelValues("cam", ResultComplete)); a != 1 || b != 1 {
		t.Errorf("truncated %v, complete %v; want 1 and 1", a, b)
	}
}

// A camera that is down when the event happens gives no clip, counted as
// empty, once the window plus the overrun has passed.
func TestClipWithoutVideo(t *testing.T) {
	t.Parallel()
	pub, ob := outboxSink(t)
	r, m := startRecorder(t, []Camera{{ID: "cam", Record: "rtsp://127.0.0.1:1/cam", Pre: time.Second, Post: time.Second}}, pub)
	at := time.Now().Add(-time.Minute) // its window and overrun are long past
	r.RequestClip("cam", wire.NewULID(at), at)
	waitFor(t, 5*time.Second, "the empty clip to be counted", func() bool {
		return testutil.ToFloat64(m.Clips.WithLabelValues("cam", ResultEmpty)) == 1
	})
	if n, _ := ob.Stats(); n != 0 {
		t.Errorf("%d messages in the outbox for a clip without video", n)
	}
}

func TestNewValidates(t *testing.T) {
	pub, _ := outboxSink(t)
	for _, tc := range []struct {
		name string
		cams []Camera
		want string
	}{
		{"no-id", []Camera{{}}, "ID"},
		{"duplicate", []Camera{{ID: "a"}, {ID: "a"}}, "twice"},
		{"negative", []Camera{{ID: "a", Pre: -time.Second}}, "negative"},
		{"over-contract", []Camera{{ID: "a", MaxBytes: wire.MaxClipTotalBytes + 1}}, "max bytes"},
		{"bad-record-url", []Camera{{ID: "a", Record: "http://x/y"}}, "scheme"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cams, pub, nil, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := New(nil, nil, nil, nil, nil); err == nil {
		t.Error("no sink accepted")
	}
	var r *Recorder // no camera has clips: the app passes a nil recorder
	r.RequestClip("a", "b", time.Now())
	if r.Feed("a") != nil || r.Records("a") {
		t.Error("nil recorder records")
	}
}
