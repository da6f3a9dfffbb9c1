package camsim

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/pion/rtp"

	"github.com/xueliang/xl/internal/testenv"
)

// sharedCacheDir is shared by all tests so the test video is transcoded once.
var sharedCacheDir string

func TestMain(m *testing.M) {
	os.Exit(testenv.RunWithTempDir(m, "camsim-test-cache-", &sharedCacheDir))
}

// testVideo locates vtest.avi (see testenv.Video).
func testVideo(t *testing.T) string { return testenv.Video(t) }

// requireTool fails when a tool that `make deps` installs is missing.
func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s not installed (run make deps): %v", name, err)
	}
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string { return testenv.FreeAddr(t) }

type syncBuffer = testenv.SyncBuffer

func testLogger(t *testing.T) (*slog.Logger, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server logs:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// startServer creates and runs a Server; cleanup cancels Run and checks it
// returns nil promptly.
func startServer(t *testing.T, cams ...Camera) *Server {
	t.Helper()
	requireTool(t, "ffmpeg")
	log, _ := testLogger(t)
	srv, err := New(Config{Listen: freeAddr(t), Cameras: cams, CacheDir: sharedCacheDir}, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after cancel, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not return within 5s of cancel")
		}
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return srv
}

// receivedAU is one decoded access unit with its RTP timestamp.
type receivedAU struct {
	ts  uint32
	idr bool
	at  time.Time
}

// reader is a gortsplib TCP client that collects decoded H.264 access units.
type reader struct {
	client *gortsplib.Client
	forma  *format.H264

	mu   sync.Mutex
	aus  []receivedAU
	errs []error
}

func (r *reader) snapshot() []receivedAU {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]receivedAU(nil), r.aus...)
}

// play connects to url over TCP and starts collecting access units.
func play(t *testing.T, url string) *reader {
	t.Helper()
	u, err := base.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	tcp := gortsplib.ProtocolTCP
	c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &tcp}
	if err := c.Start(); err != nil {
		t.Fatalf("client start: %v", err)
	}
	t.Cleanup(c.Close)

	desc, _, err := c.Describe(u)
	if err != nil {
		t.Fatalf("DESCRIBE %s: %v", url, err)
	}
	var forma *format.H264
	medi := desc.FindFormat(&forma)
	if medi == nil {
		t.Fatalf("no H.264 format in SDP")
	}
	dec, err := forma.CreateDecoder()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Setup(desc.BaseURL, medi, 0, 0); err != nil {
		t.Fatalf("SETUP: %v", err)
	}
	r := &reader{client: c, forma: forma}
	c.OnPacketRTP(medi, forma, func(pkt *rtp.Packet) {
		au, err := dec.Decode(pkt)
		if err != nil {
			if !errors.Is(err, rtph264.ErrMorePacketsNeeded) && !errors.Is(err, rtph264.ErrNonStartingPacketAndNoPrevious) {
				r.mu.Lock()
				r.errs = append(r.errs, err)
				r.mu.Unlock()
			}
			return
		}
		r.mu.Lock()
		r.aus = append(r.aus, receivedAU{ts: pkt.Timestamp, idr: h264.IsRandomAccess(au), at: time.Now()})
		r.mu.Unlock()
	})
	if _, err := c.Play(nil); err != nil {
		t.Fatalf("PLAY: %v", err)
	}
	return r
}

// waitFor polls cond until it returns true or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tsDiff is b-a in RTP timestamp serial arithmetic (handles wrap-around).
func tsDiff(a, b uint32) int64 { return int64(int32(b - a)) }

// checkMonotonic asserts RTP timestamps strictly increase and returns the
// total span in 90 kHz ticks.
func checkMonotonic(t *testing.T, aus []receivedAU) int64 {
	t.Helper()
	var span int64
	for i := 1; i < len(aus); i++ {
		d := tsDiff(aus[i-1].ts, aus[i].ts)
		if d <= 0 {
			t.Fatalf("RTP timestamp not increasing at AU %d: %d -> %d (diff %d)", i, aus[i-1].ts, aus[i].ts, d)
		}
		span += d
	}
	return span
}
