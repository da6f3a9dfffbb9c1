package rtsp

// Interoperability with RTSP servers other than gortsplib's: GStreamer's
// gst-rtsp-server (testdata/gst_rtsp_server.py, a separate process), and
// raw fakes on loopback for what cameras do that neither GStreamer nor
// gortsplib's server produces on demand.

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xueliang/xl/agent/internal/rtsp/rtsptest"
	"github.com/xueliang/xl/internal/testenv"
)

// ---------------------------------------------------------------- GStreamer

var (
	gstOnce    sync.Once
	gstProblem string
)

// requireGStreamer skips (fails in CI) when gst-rtsp-server cannot run.
func requireGStreamer(t *testing.T) {
	t.Helper()
	gstOnce.Do(func() {
		const check = `import gi
gi.require_version("Gst", "1.0"); gi.require_version("GstRtsp", "1.0"); gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
Gst.init(None)
missing = [e for e in ("filesrc", "tsdemux", "h264parse", "rtph264pay") if Gst.ElementFactory.find(e) is None]
if missing: raise SystemExit("missing GStreamer elements: " + " ".join(missing))`
		if out, err := exec.Command("/usr/bin/python3", "-c", check).CombinedOutput(); err != nil {
			gstProblem = fmt.Sprintf("GStreamer's RTSP server is not usable (%v): %s", err, strings.TrimSpace(string(out)))
		}
	})
	if gstProblem != "" {
		testenv.Missing(t, "%s", gstProblem)
	}
}

// gstServer is a running testdata/gst_rtsp_server.py.
type gstServer struct {
	url  string
	cmd  *exec.Cmd
	logs *testenv.SyncBuffer
	done chan error
}

// startGst serves file (an H.264 MPEG-TS) until the test ends.
func startGst(t *testing.T, file string, args ...string) *gstServer {
	t.Helper()
	requireGStreamer(t)
	port := testenv.FreePort(t)
	script := filepath.Join("testdata", "gst_rtsp_server.py")
	cmd := exec.Command("/usr/bin/python3", append([]string{script, "--port", strconv.Itoa(port), "--file", file}, args...)...)
	g := &gstServer{cmd: cmd, logs: &testenv.SyncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = g.logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() { // ends with the process's stdout
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
				ready <- u
			}
		}
		g.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT) // in case a test froze it
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-g.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-g.done
		}
		if t.Failed() {
			t.Logf("gst-rtsp-server log:\n%s", g.logs.String())
		}
	})
	select {
	case g.url = <-ready:
	case err := <-g.done:
		t.Fatalf("gst_rtsp_server.py exited: %v\n%s", err, g.logs.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("gst_rtsp_server.py not ready after 20 s\n%s", g.logs.String())
	}
	return g
}

// gstMedia encodes the test footage for GStreamer: H.264 in MPEG-TS,
// 768x576 at 10 fps, a key frame every 2 s, no B-frames.
func gstMedia(t *testing.T, seconds float64) string {
	t.Helper()
	return rtsptest.Encode(t, cacheDir, testenv.Video(t), "h264", seconds, "", 20, false)
}

func TestGStreamerTransports(t *testing.T) {
	for _, tc := range []struct {
		name      string
		protocols string
		transport string
		setupErr  bool // the client must not get video
		interval  time.Duration
	}{
		{"tcp", "tcp,udp", TransportTCP, false, 0},
		{"tcp-paced", "tcp,udp", TransportTCP, false, 300 * time.Millisecond}, // read in batches
		{"udp", "tcp,udp", TransportUDP, false, 0},
		// A server that offers UDP only answers a TCP SETUP with 461
		// Unsupported Transport: auto moves to UDP by itself…
		{"udp-only-auto", "udp", TransportAuto, false, 0},
		// …and a client held to TCP reports the refusal.
		{"udp-only-tcp", "udp", TransportTCP, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := startGst(t, gstMedia(t, 30), "--protocols", tc.protocols)
			_, rec, m := runClient(t, Config{URL: g.url, Transport: tc.transport, ReadTimeout: 3 * time.Second,
				ReconnectMin: 100 * time.Millisecond, ReconnectMax: 500 * time.Millisecond, ReadInterval: tc.interval})
			if tc.setupErr {
				waitFor(t, 10*time.Second, "a refused SETUP", func() bool {
					return testutil.ToFloat64(m.Errors.WithLabelValues("cam", StreamDetect, errKindSetup)) >= 1
				})
				errs := rec.downErrors()
				if len(errs) == 0 || !strings.Contains(errs[0].Error(), "461") {
					t.Fatalf("down errors %v, want the 461 of the TCP SETUP", errs)
				}
				return
			}
			waitFor(t, 15*time.Second, "3 s of video", func() bool {
				aus, _ := rec.snapshot()
				return len(aus) > 1 && aus[len(aus)-1].PTS-aus[0].PTS >= 3*time.Second
			})
			aus, _ := rec.snapshot()
			checkStream(t, aus, CodecH264, 768, 576)
			if fps := float64(len(aus)-1) / (aus[len(aus)-1].PTS - aus[0].PTS).Seconds(); fps < 8 || fps > 12 {
				t.Errorf("%.1f access units per second, want about 10", fps)
			}
			if n := len(rec.downErrors()); n != 0 && tc.transport != TransportAuto {
				t.Errorf("%d sessions failed: %v", n, rec.downErrors())
			}
		})
	}
}

// A session timeout of 2 s: the client keeps the session alive (keepalive
// requests every second, as gortsplib derives from the timeout) and plays
// on well past it, in one session, over UDP where no TCP connection
// carries the session.
func TestGStreamerSessionTimeoutNeedsKeepalives(t *testing.T) {
	t.Parallel()
	g := startGst(t, gstMedia(t, 30), "--session-timeout", "2")
	_, rec, _ := runClient(t, Config{URL: g.url, Transport: TransportUDP, ReadTimeout: 3 * time.Second,
		StallTimeout: 2 * time.Second, ReconnectMin: 100 * time.Millisecond})
	waitFor(t, 20*time.Second, "8 s of video", func() bool {
		aus, _ := rec.snapshot()
		return len(aus) > 1 && aus[len(aus)-1].PTS-aus[0].PTS >= 8*time.Second
	})
	aus, _ := rec.snapshot()
	if aus[len(aus)-1].Session != aus[0].Session || len(rec.downErrors()) != 0 {
		t.Fatalf("the session did not survive its 2 s timeout: %v", rec.downErrors())
	}
	if strings.Contains(g.logs.String(), "expired sessions") {
		t.Errorf("the server expired a session:\n%s", g.logs.String())
	}
}

// At the end of the file gst-rtsp-server sends RTCP BYE and then nothing,
// on a connection that stays open: the client notices the silence, tears
// the session down and plays again from a new session.
func TestGStreamerByeThenSilence(t *testing.T) {
	t.Parallel()
	g := startGst(t, gstMedia(t, 3))
	_, rec, m := runClient(t, Config{URL: g.url, ReadTimeout: 3 * time.Second, StallTimeout: 1500 * time.Millisecond,
		ReconnectMin: 100 * time.Millisecond})
	waitFor(t, 20*time.Second, "video from a second session", func() bool {
		aus, _ := rec.snapshot()
		return len(aus) > 0 && aus[len(aus)-1].Session > aus[0].Session
	})
	errs := rec.downErrors()
	if len(errs) == 0 || !errors.Is(errs[0], ErrStalled) {
		t.Fatalf("down errors %v, want the stall after the BYE first", errs)
	}
	if got := testutil.ToFloat64(m.Errors.WithLabelValues("cam", StreamDetect, errKindRTP)); got != 0 {
		t.Errorf("%v RTP errors", got)
	}
	aus, _ := rec.snapshot()
	first := 0
	for _, au := range aus {
		if au.Session == aus[0].Session {
			first++
		}
	}
	if first < 25 || first > 31 {
		t.Errorf("first session delivered %d access units, want the file's 30", first)
	}
}

// The server process freezes (SIGSTOP): its sockets stay open and the
// kernel still accepts connections, but nothing is answered or sent. The
// client detects the stall, keeps trying, and plays again once the server
// thaws.
func TestGStreamerFreeze(t *testing.T) {
	t.Parallel()
	g := startGst(t, gstMedia(t, 60))
	_, rec, m := runClient(t, Config{URL: g.url, ReadTimeout: 2 * time.Second, StallTimeout: time.Second,
		ReconnectMin: 100 * time.Millisecond, ReconnectMax: 500 * time.Millisecond})
	waitFor(t, 15*time.Second, "video", func() bool { aus, _ := rec.snapshot(); return len(aus) >= 10 })
	if err := g.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	waitFor(t, 5*time.Second, "the stall", func() bool {
		return testutil.ToFloat64(m.Stalls.WithLabelValues("cam", StreamDetect)) >= 1
	})
	t.Logf("stall detected %v after the freeze", time.Since(frozen).Round(time.Millisecond))
	waitFor(t, 10*time.Second, "a reconnect attempt to time out", func() bool {
		return testutil.ToFloat64(m.Errors.WithLabelValues("cam", StreamDetect, errKindConnect)) >= 1
	})
	if err := g.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	aus, _ := rec.snapshot()
	session := aus[len(aus)-1].Session
	waitFor(t, 15*time.Second, "video after the thaw", func() bool {
		aus, _ := rec.snapshot()
		return aus[len(aus)-1].Session > session
	})
}

// Shared media: a reader that joins a running stream gets a key frame
// with the parameter sets first. (gst-rtsp-server starts a late reader of
// shared media at a key frame; the mid-GOP join itself is TestJoinMidGOP.)
func TestGStreamerLateReader(t *testing.T) {
	t.Parallel()
	g := startGst(t, gstMedia(t, 60), "--shared")
	_, first, _ := runClient(t, Config{CameraID: "first", URL: g.url})
	// 3.3 s after the first key frame is 1.3 s into the second 2 s GOP.
	waitFor(t, 15*time.Second, "3.3 s of the first reader's video", func() bool {
		aus, _ := first.snapshot()
		return len(aus) > 0 && time.Since(aus[0].Wall) >= 3300*time.Millisecond
	})
	start := time.Now()
	_, late, _ := runClient(t, Config{CameraID: "late", URL: g.url})
	waitFor(t, 10*time.Second, "the late reader's video", func() bool { aus, _ := late.snapshot(); return len(aus) >= 5 })
	aus, _ := late.snapshot()
	checkStream(t, aus, CodecH264, 768, 576)
	t.Logf("late reader: first access unit (a key frame) %v after joining", aus[0].Wall.Sub(start).Round(time.Millisecond))
	if took := aus[0].Wall.Sub(start); took > 2500*time.Millisecond {
		t.Errorf("first access unit %v after joining, want within one GOP (2 s)", took)
	}
}

// A reader that joins a gortsplib server's running stream in the middle of
// a GOP: what arrives before the next key frame is received and dropped,
// and the first access unit delivered is that key frame, with parameter
// sets.
func TestJoinMidGOP(t *testing.T) {
	t.Parallel()
	aus, cfg := testMedia(t, "h264") // GOP of 10 frames (1 s)
	srv := rtsptest.Start(t, cfg)
	srv.Loop(aus, 10)
	_, first, _ := runClient(t, Config{CameraID: "first", URL: srv.URL("cam")})
	waitFor(t, 10*time.Second, "the first reader 4 frames into a GOP", func() bool {
		got, _ := first.snapshot()
		return len(got) > 0 && len(got)%10 == 4
	})
	m, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var firstAU AccessUnit
	var bytesBefore float64 // RTP bytes received when the first access unit was delivered
	c, err := New(Config{CameraID: "late", URL: srv.URL("cam"), OnAccessUnit: func(au AccessUnit) {
		mu.Lock()
		defer mu.Unlock()
		if firstAU.NALUs == nil {
			firstAU = au
			bytesBefore = testutil.ToFloat64(m.BytesIn.WithLabelValues("late", StreamDetect))
		}
	}}, m, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(t.Context()) }()
	t.Cleanup(func() { _ = c.Close(); <-done })
	waitFor(t, 10*time.Second, "the late reader's first access unit", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return firstAU.NALUs != nil
	})
	mu.Lock()
	defer mu.Unlock()
	checkStream(t, []AccessUnit{firstAU}, CodecH264, 320, 240)
	dropped := bytesBefore - float64(firstAU.Size())
	t.Logf("joined mid-GOP: %.0f RTP bytes received before the key frame (%d bytes) was delivered", dropped, firstAU.Size())
	if dropped < 1000 {
		t.Errorf("only %.0f bytes arrived before the first key frame: the reader did not join mid-GOP", dropped)
	}
}

// ---------------------------------------------------------------- raw fakes

// fakeCam is an RTSP camera written by hand: it serves one H.264 stream
// over interleaved TCP with the quirks it is configured with, and records
// what the client did.
type fakeCam struct {
	aus []rtsptest.AU
	sps []byte
	pps []byte

	// contentBase returns the Content-Base header for the request URL
	// (empty: no header).
	contentBase func(requestURL string) string
	// control returns the video's a=control for the request URL.
	control func(requestURL string) string
	// header spells a header name (for servers that do not use the
	// canonical case).
	header func(string) string
	// sdpBefore is SDP text placed before the video media (padding, other
	// media).
	sdpBefore string
	// sessionTimeout: the session ends when this long passes without a
	// request after PLAY (0: never).
	sessionTimeout time.Duration
	// restartTimestamps restarts the RTP timestamps at every loop of the
	// media, as a camera looping a recording does.
	restartTimestamps bool

	mu         sync.Mutex
	setups     []string // SETUP URLs
	keepalives []string // methods received after PLAY
	pipelined  int      // requests sent before the previous one was answered
	expired    int      // sessions ended for lack of keepalives
	plays      int
}

func (f *fakeCam) handle(conn net.Conn, r *bufio.Reader) {
	var wmu sync.Mutex // responses and RTP share the connection
	write := func(b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		_, err := conn.Write(b)
		return err
	}
	var lastReq time.Time
	var lastMu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		close(stop)
		conn.Close()
		wg.Wait()
	}()
	playing := false
	for {
		req, err := readRequest(r)
		if err != nil {
			return
		}
		lastMu.Lock()
		lastReq = time.Now()
		lastMu.Unlock()
		// One request at a time: nothing more may arrive before the answer.
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
		if b, err := r.Peek(1); err == nil && b[0] != '$' {
			f.mu.Lock()
			f.pipelined++
			f.mu.Unlock()
		}
		_ = conn.SetReadDeadline(time.Time{})

		h := map[string]string{}
		body := ""
		status := "200 OK"
		f.mu.Lock()
		if playing {
			f.keepalives = append(f.keepalives, req.method)
		}
		f.mu.Unlock()
		switch req.method {
		case "OPTIONS":
			h["Public"] = "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER"
		case "DESCRIBE":
			h["Content-Type"] = "application/sdp"
			if cb := f.contentBase(req.url); cb != "" {
				h["Content-Base"] = cb
			}
			body = f.sdp(req.url)
		case "SETUP":
			f.mu.Lock()
			f.setups = append(f.setups, req.url)
			f.mu.Unlock()
			h["Transport"] = "RTP/AVP/TCP;unicast;interleaved=0-1"
			h["Session"] = "12345678"
			if f.sessionTimeout > 0 {
				h["Session"] += fmt.Sprintf(";timeout=%d", int(f.sessionTimeout/time.Second))
			}
		case "PLAY":
			h["Session"] = "12345678"
			h["RTP-Info"] = "url=" + req.url + ";seq=1;rtptime=0"
		case "GET_PARAMETER":
			h["Session"] = "12345678"
		case "TEARDOWN":
			_ = write(f.response(req, status, h, body))
			return
		}
		if err := write(f.response(req, status, h, body)); err != nil {
			return
		}
		if req.method == "PLAY" && !playing {
			playing = true
			f.mu.Lock()
			f.plays++
			f.mu.Unlock()
			wg.Go(func() { f.stream(write, stop) })
			if f.sessionTimeout > 0 {
				wg.Go(func() {
					t := time.NewTicker(100 * time.Millisecond)
					defer t.Stop()
					for {
						select {
						case <-stop:
							return
						case <-t.C:
						}
						lastMu.Lock()
						idle := time.Since(lastReq)
						lastMu.Unlock()
						if idle > f.sessionTimeout {
							f.mu.Lock()
							f.expired++
							f.mu.Unlock()
							conn.Close() // session expired
							return
						}
					}
				})
			}
		}
	}
}

func (f *fakeCam) response(req *rawRequest, status string, h map[string]string, body string) []byte {
	name := f.header
	if name == nil {
		name = func(s string) string { return s }
	}
	var b strings.Builder
	fmt.Fprintf(&b, "RTSP/1.0 %s\r\n%s: %s\r\n", status, name("CSeq"), req.header["cseq"])
	for k, v := range h {
		fmt.Fprintf(&b, "%s: %s\r\n", name(k), v)
	}
	if body != "" {
		fmt.Fprintf(&b, "%s: %d\r\n", name("Content-Length"), len(body))
	}
	b.WriteString("\r\n" + body)
	return []byte(b.String())
}

func (f *fakeCam) sdp(requestURL string) string {
	return "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=fake camera\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\na=control:*\r\n" + f.sdpBefore +
		"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n" +
		"a=fmtp:96 packetization-mode=1;sprop-parameter-sets=" + base64.StdEncoding.EncodeToString(f.sps) + "," +
		base64.StdEncoding.EncodeToString(f.pps) + "\r\na=control:" + f.control(requestURL) + "\r\n"
}

// stream sends the media as interleaved RTP in real time, looping.
func (f *fakeCam) stream(write func([]byte) error, stop <-chan struct{}) {
	enc, err := (&format.H264{PayloadTyp: 96, PacketizationMode: 1}).CreateEncoder()
	if err != nil {
		panic(err)
	}
	frame := 100 * time.Millisecond
	start := time.Now()
	var offset time.Duration
	for {
		for _, au := range f.aus {
			pts := offset + au.PTS - f.aus[0].PTS
			wait := time.NewTimer(time.Until(start.Add(pts)))
			select {
			case <-stop:
				wait.Stop()
				return
			case <-wait.C:
			}
			pkts, err := enc.Encode(au.NALUs)
			if err != nil {
				continue
			}
			ts := uint32(pts * 90000 / time.Second)
			if f.restartTimestamps {
				ts = uint32((au.PTS - f.aus[0].PTS) * 90000 / time.Second)
			}
			for _, p := range pkts {
				p.Timestamp = ts
				b, err := p.Marshal()
				if err != nil {
					continue
				}
				if err := write(append([]byte{'$', 0, byte(len(b) >> 8), byte(len(b))}, b...)); err != nil {
					return
				}
			}
		}
		offset += f.aus[len(f.aus)-1].PTS - f.aus[0].PTS + frame
	}
}

func newFakeCam(t *testing.T) *fakeCam {
	t.Helper()
	aus, cfg := testMedia(t, "h264") // 4 s of 320x240, GOP 1 s
	return &fakeCam{aus: aus, sps: cfg.SPS, pps: cfg.PPS,
		contentBase: func(u string) string { return u + "/" },
		control:     func(string) string { return "trackID=0" },
	}
}

func (f *fakeCam) setupURLs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.setups...)
}

// playFake runs a client against the fake until it has 2 s of video and
// returns what it received.
func playFake(t *testing.T, f *fakeCam, cfg Config) ([]AccessUnit, *rawServer, *Metrics) {
	t.Helper()
	raw := startRawServer(t, f.handle)
	cfg.URL = raw.url()
	cfg.ReconnectMin, cfg.ReconnectMax = 100*time.Millisecond, 200*time.Millisecond
	_, rec, m := runClient(t, cfg)
	waitFor(t, 10*time.Second, "2 s of video", func() bool {
		aus, _ := rec.snapshot()
		return len(aus) > 1 && aus[len(aus)-1].PTS-aus[0].PTS >= 2*time.Second
	})
	aus, _ := rec.snapshot()
	if errs := rec.downErrors(); len(errs) > 0 {
		t.Errorf("sessions failed: %v", errs)
	}
	return aus, raw, m
}

// Content-Base with and without a trailing slash, none at all, relative
// and absolute control attributes: the SETUP goes to the track URL a
// camera expects.
func TestControlURLs(t *testing.T) {
	for _, tc := range []struct {
		name        string
		contentBase func(u string) string
		control     func(u string) string
		want        func(u string) string // the SETUP URL
	}{
		{"base-with-slash-relative", func(u string) string { return u + "/" }, func(string) string { return "trackID=0" },
			func(u string) string { return u + "/trackID=0" }},
		{"base-without-slash-relative", func(u string) string { return u }, func(string) string { return "trackID=0" },
			func(u string) string { return u + "/trackID=0" }},
		{"no-base-relative", func(string) string { return "" }, func(string) string { return "trackID=0" },
			func(u string) string { return u + "/trackID=0" }},
		{"base-with-slash-absolute", func(u string) string { return u + "/" }, func(u string) string { return u + "/video1" },
			func(u string) string { return u + "/video1" }},
		{"other-base-absolute", func(u string) string { return strings.Replace(u, "/cam", "/live/ch00_0", 1) + "/" },
			func(u string) string { return strings.Replace(u, "/cam", "/live/ch00_0", 1) + "/track1" },
			func(u string) string { return strings.Replace(u, "/cam", "/live/ch00_0", 1) + "/track1" }},
		{"query-relative", func(u string) string { return u + "?channel=1/" }, func(string) string { return "trackID=1" },
			func(u string) string { return u + "?channel=1/trackID=1" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeCam(t)
			f.contentBase, f.control = tc.contentBase, tc.control
			aus, raw, _ := playFake(t, f, Config{})
			checkStream(t, aus, CodecH264, 320, 240)
			if got, want := f.setupURLs(), tc.want(raw.url()); len(got) != 1 || got[0] != want {
				t.Errorf("SETUP %v, want %s", got, want)
			}
		})
	}
}

// Header names in any letter case, and requests strictly one at a time.
func TestHeaderCaseAndNoPipelining(t *testing.T) {
	for name, spell := range map[string]func(string) string{
		"lower": strings.ToLower,
		"upper": strings.ToUpper,
		"mixed": func(s string) string { // cSeQ, cOnTeNt-bAsE …
			b := []byte(strings.ToLower(s))
			for i := 1; i < len(b); i += 2 {
				b[i] = strings.ToUpper(string(b[i]))[0]
			}
			return string(b)
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFakeCam(t)
			f.header = spell
			aus, _, _ := playFake(t, f, Config{})
			checkStream(t, aus, CodecH264, 320, 240)
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.pipelined != 0 {
				t.Errorf("%d requests sent before the previous answer", f.pipelined)
			}
		})
	}
}

// A camera whose session ends after 3 s without a request: the client
// sends keepalives (GET_PARAMETER, which the camera lists) and the session
// lives on.
func TestKeepalivesHoldTheSession(t *testing.T) {
	t.Parallel()
	// Paced reads answer keepalives too: their replies arrive with the
	// video, read in batches.
	for _, interval := range []time.Duration{0, 300 * time.Millisecond} {
		t.Run(fmt.Sprintf("read_interval=%v", interval), func(t *testing.T) {
			t.Parallel()
			testKeepalivesHoldTheSession(t, interval)
		})
	}
}

func testKeepalivesHoldTheSession(t *testing.T, interval time.Duration) {
	f := newFakeCam(t)
	f.sessionTimeout = 3 * time.Second
	raw := startRawServer(t, f.handle)
	_, rec, _ := runClient(t, Config{URL: raw.url(), StallTimeout: 2 * time.Second, ReconnectMin: 100 * time.Millisecond,
		ReadInterval: interval})
	waitFor(t, 20*time.Second, "8 s of video", func() bool {
		aus, _ := rec.snapshot()
		return len(aus) > 1 && aus[len(aus)-1].PTS-aus[0].PTS >= 8*time.Second
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	t.Logf("keepalives: %v", f.keepalives)
	if f.expired != 0 || f.plays != 1 || raw.connections() != 1 {
		t.Errorf("%d sessions expired, %d PLAYs, %d connections; want one session", f.expired, f.plays, raw.connections())
	}
	if len(f.keepalives) < 3 {
		t.Errorf("%d keepalives in 8 s", len(f.keepalives))
	}
	for _, m := range f.keepalives {
		if m != "GET_PARAMETER" && m != "OPTIONS" {
			t.Errorf("keepalive %s", m)
		}
	}
}

// An SDP of several kilobytes, with the video after other media.
func TestLargeSDP(t *testing.T) {
	t.Parallel()
	var pad strings.Builder
	pad.WriteString("a=tool:fake-nvr\r\n")
	for i := range 60 {
		fmt.Fprintf(&pad, "a=x-vendor-attribute-%02d:%s\r\n", i, strings.Repeat("v", 80))
	}
	pad.WriteString("m=audio 0 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=control:trackID=1\r\n")
	pad.WriteString("m=application 0 RTP/AVP 107\r\na=rtpmap:107 vnd.onvif.metadata/90000\r\na=control:trackID=2\r\n")
	f := newFakeCam(t)
	f.sdpBefore = pad.String()
	if n := len(f.sdp("rtsp://127.0.0.1:554/cam")); n < 6000 {
		t.Fatalf("SDP of %d bytes, want several kilobytes", n)
	}
	aus, _, _ := playFake(t, f, Config{})
	checkStream(t, aus, CodecH264, 320, 240)
	if got := f.setupURLs(); len(got) != 1 || !strings.HasSuffix(got[0], "/trackID=0") {
		t.Errorf("SETUP %v, want only the video track", got)
	}
}

// RTP timestamps that step back: a camera looping a 4 s recording restarts
// them at every loop. Video keeps coming in one session.
func TestTimestampsStepBack(t *testing.T) {
	t.Parallel()
	for _, interval := range []time.Duration{0, 300 * time.Millisecond} {
		t.Run(fmt.Sprintf("read_interval=%v", interval), func(t *testing.T) {
			t.Parallel()
			testTimestampsStepBack(t, interval)
		})
	}
}

func testTimestampsStepBack(t *testing.T, interval time.Duration) {
	f := newFakeCam(t)
	f.restartTimestamps = true
	raw := startRawServer(t, f.handle)
	_, rec, m := runClient(t, Config{URL: raw.url(), StallTimeout: 2 * time.Second, ReconnectMin: 100 * time.Millisecond,
		ReadInterval: interval})
	n := len(f.aus)
	waitFor(t, 20*time.Second, "two loops and a half", func() bool { aus, _ := rec.snapshot(); return len(aus) >= 2*n+5 })
	aus, _ := rec.snapshot()
	back := 0
	for i := 1; i < len(aus); i++ {
		if aus[i].PTS < aus[i-1].PTS {
			back++
		}
	}
	if back < 2 || len(rec.downErrors()) != 0 || raw.connections() != 1 {
		t.Errorf("%d steps back, down errors %v, %d connections; want 2+ steps in one session", back, rec.downErrors(), raw.connections())
	}
	if got := testutil.ToFloat64(m.Errors.WithLabelValues("cam", StreamDetect, errKindRTP)); got != 0 {
		t.Errorf("%v RTP errors", got)
	}
}

// B-frames: presentation timestamps out of decoding order.
func TestBFrames(t *testing.T) {
	t.Parallel()
	path := rtsptest.Encode(t, cacheDir, testenv.Video(t), "h264", 4, "320x240", 10, true)
	_, aus, err := rtsptest.ReadTS(path)
	if err != nil {
		t.Fatal(err)
	}
	vps, sps, pps := rtsptest.Params("h264", aus)
	srv := rtsptest.Start(t, rtsptest.Config{VPS: vps, SPS: sps, PPS: pps})
	srv.Loop(aus, 10)
	_, rec, _ := runClient(t, Config{URL: srv.URL("cam")})
	waitFor(t, 10*time.Second, "30 access units", func() bool { got, _ := rec.snapshot(); return len(got) >= 30 })
	got, _ := rec.snapshot()
	reordered := 0
	for i := 1; i < len(got); i++ {
		if got[i].PTS < got[i-1].PTS {
			reordered++
		}
	}
	if !got[0].KeyFrame || reordered == 0 {
		t.Errorf("first key %v, %d reordered of %d; want B-frames delivered in decoding order", got[0].KeyFrame, reordered, len(got))
	}
}
