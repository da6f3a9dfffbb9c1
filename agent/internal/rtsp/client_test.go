package rtsp

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/auth"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xueliang/xl/agent/internal/rtsp/rtsptest"
	"github.com/xueliang/xl/internal/testenv"
)

// checkStream checks a camsim-like stream: it starts at a key frame with
// parameter sets, PTS increases, and the pictures are 768x576.
func checkStream(t *testing.T, aus []AccessUnit, codec string, width, height int) {
	t.Helper()
	if len(aus) == 0 {
		t.Fatal("no access units")
	}
	if !aus[0].KeyFrame {
		t.Errorf("first access unit is not a key frame")
	}
	keys := 0
	for i, au := range aus {
		if au.Codec != codec {
			t.Fatalf("AU %d: codec %q, want %q", i, au.Codec, codec)
		}
		if len(au.NALUs) == 0 {
			t.Fatalf("AU %d: no NALUs", i)
		}
		if au.Session != aus[0].Session {
			continue
		}
		if i > 0 && au.PTS <= aus[i-1].PTS {
			t.Fatalf("AU %d: PTS %v after %v", i, au.PTS, aus[i-1].PTS)
		}
		if au.KeyFrame {
			keys++
			var kinds []naluKind
			for _, n := range au.NALUs {
				kinds = append(kinds, classify(codec, n))
			}
			want := []naluKind{naluSPS, naluPPS}
			if codec == CodecH265 {
				want = []naluKind{naluVPS, naluSPS, naluPPS}
			}
			for _, k := range want {
				found := false
				for _, got := range kinds {
					found = found || got == k
				}
				if !found {
					t.Fatalf("key frame %d lacks parameter set kind %d: %v", i, k, kinds)
				}
			}
		}
	}
	w, h, ok := aus[len(aus)-1].Params.Resolution(codec)
	if !ok || w != width || h != height {
		t.Errorf("resolution %dx%d (ok %v), want %dx%d", w, h, ok, width, height)
	}
	if keys == 0 {
		t.Errorf("no key frames")
	}
}

func TestPlayCamsim(t *testing.T) {
	for _, tc := range []struct {
		name      string
		transport string
		serverUDP bool
		interval  time.Duration
	}{
		{"tcp", TransportTCP, false, 0},
		{"tcp_paced", TransportTCP, false, 300 * time.Millisecond},
		{"udp", TransportUDP, true, 0},
		{"udp_paced", TransportUDP, true, 300 * time.Millisecond}, // RTP over UDP is never paced
		{"auto", TransportAuto, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, _ := startCamsim(t, "127.0.0.1:0", tc.serverUDP)
			_, rec, m := runClient(t, Config{URL: srv.URL("cam"), Transport: tc.transport, ReconnectMin: 100 * time.Millisecond,
				ReadInterval: tc.interval})
			waitFor(t, 10*time.Second, "3 s of video", func() bool {
				aus, _ := rec.snapshot()
				return len(aus) > 1 && aus[len(aus)-1].PTS-aus[0].PTS >= 3*time.Second
			})
			aus, states := rec.snapshot()
			checkStream(t, aus, CodecH264, 768, 576)
			span := aus[len(aus)-1].PTS - aus[0].PTS
			if fps := float64(len(aus)-1) / span.Seconds(); fps < 8 || fps > 12 {
				t.Errorf("%.1f access units per second of PTS, want about 10", fps)
			}
			if len(states) == 0 || !states[0].up {
				t.Errorf("states %v, want up first", states)
			}
			if got := testutil.ToFloat64(m.AccessUnits.WithLabelValues("cam", StreamDetect)); got < float64(len(aus)) {
				t.Errorf("access units metric %v < %d delivered", got, len(aus))
			}
			if got := testutil.ToFloat64(m.BytesIn.WithLabelValues("cam", StreamDetect)); got < 10000 {
				t.Errorf("bytes metric %v", got)
			}
			if got := testutil.ToFloat64(m.Up.WithLabelValues("cam", StreamDetect)); got != 1 {
				t.Errorf("up metric %v, want 1", got)
			}
			if got := testutil.ToFloat64(m.Reconnects.WithLabelValues("cam", StreamDetect)); got != 0 {
				t.Errorf("reconnects metric %v, want 0", got)
			}
			// Wall times follow the camera's clock, even when access units
			// arrive in batches: never after an access unit was handed
			// over, never more than the interval and a second before, and
			// spaced as their PTS rather than bunched per batch.
			recv := rec.receipts()
			var steps []time.Duration
			for i, au := range aus {
				if au.Wall.After(recv[i]) || recv[i].Sub(au.Wall) > tc.interval+time.Second {
					t.Errorf("AU %d: wall time %v, handed over at %v", i, au.Wall, recv[i])
				}
				if i > 0 {
					steps = append(steps, au.Wall.Sub(aus[i-1].Wall))
				}
			}
			slices.Sort(steps)
			if med := steps[len(steps)/2]; med < 90*time.Millisecond || med > 110*time.Millisecond {
				t.Errorf("median step between access units' wall times %v, want the 100 ms between frames", med)
			}
		})
	}
}

func TestReconnectAfterServerRestart(t *testing.T) {
	t.Parallel()
	addr := testenv.FreeAddr(t)
	srv, stop := startCamsim(t, addr, false)
	_, rec, m := runClient(t, Config{URL: srv.URL("cam"), ReadTimeout: 2 * time.Second,
		ReconnectMin: 200 * time.Millisecond, ReconnectMax: 2 * time.Second})
	waitFor(t, 10*time.Second, "video from the first server", func() bool {
		aus, _ := rec.snapshot()
		return len(aus) >= 5
	})
	stop()
	down := time.Now()
	waitFor(t, 5*time.Second, "the stream to go down", func() bool { return len(rec.downErrors()) > 0 })
	startCamsim(t, addr, false)
	waitFor(t, 10*time.Second, "video from the restarted server", func() bool {
		aus, _ := rec.snapshot()
		return aus[len(aus)-1].Session > aus[0].Session
	})
	t.Logf("reconnected %s after the server went away", time.Since(down).Round(time.Millisecond))
	aus, states := rec.snapshot()
	var second []AccessUnit
	for _, au := range aus {
		if au.Session != aus[0].Session {
			second = append(second, au)
		}
	}
	checkStream(t, second, CodecH264, 768, 576)
	if len(states) < 3 || !states[0].up || states[1].up || !states[len(states)-1].up {
		t.Errorf("states %v, want up, down…, up", states)
	}
	if got := testutil.ToFloat64(m.Reconnects.WithLabelValues("cam", StreamDetect)); got < 1 {
		t.Errorf("reconnects metric %v, want >= 1", got)
	}
}

func TestStallTriggersReconnect(t *testing.T) {
	t.Parallel()
	// A gortsplib server whose stream is never written: SETUP and PLAY
	// succeed, then nothing arrives.
	srv := rtsptest.Start(t, rtsptest.Config{})
	start := time.Now()
	_, rec, m := runClient(t, Config{URL: srv.URL("cam"), StallTimeout: time.Second, ReadTimeout: 10 * time.Second,
		ReconnectMin: 100 * time.Millisecond, ReconnectMax: 200 * time.Millisecond})
	waitFor(t, 8*time.Second, "a second PLAY after a stall", func() bool { return srv.Plays() >= 2 })
	if el := time.Since(start); el < time.Second {
		t.Errorf("reconnected after %s, before the stall timeout", el)
	}
	errs := rec.downErrors()
	if len(errs) == 0 || !errors.Is(errs[0], ErrStalled) {
		t.Fatalf("down errors %v, want ErrStalled", errs)
	}
	if got := testutil.ToFloat64(m.Stalls.WithLabelValues("cam", StreamDetect)); got < 1 {
		t.Errorf("stalls metric %v", got)
	}
	if aus, _ := rec.snapshot(); len(aus) != 0 {
		t.Errorf("%d access units from a silent server", len(aus))
	}
}

func TestSilentAfterDescribe(t *testing.T) {
	t.Parallel()
	// A raw server that answers OPTIONS and DESCRIBE, then never answers.
	raw := startRawServer(t, func(conn net.Conn, r *bufio.Reader) {
		if _, err := answerUntil(conn, r, h264SDP, "SETUP"); err != nil {
			return
		}
		_, _ = readRequest(r) // block until the client gives up
	})
	_, rec, _ := runClient(t, Config{URL: raw.url(), ReadTimeout: 500 * time.Millisecond,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 100 * time.Millisecond})
	waitFor(t, 5*time.Second, "a second connection", func() bool { return raw.connections() >= 2 })
	errs := rec.downErrors()
	if len(errs) == 0 || !strings.Contains(errs[0].Error(), "SETUP") {
		t.Fatalf("down errors %v, want a SETUP timeout", errs)
	}
}

func TestMisbehavingServers(t *testing.T) {
	garbage := make([]byte, 8192)
	_, _ = rand.Read(garbage)

	for _, tc := range []struct {
		name    string
		handle  func(conn net.Conn, r *bufio.Reader)
		wantErr string // substring of the first down error
		kind    string // error kind counted
	}{
		{
			name: "garbage-response",
			handle: func(conn net.Conn, r *bufio.Reader) {
				if _, err := readRequest(r); err == nil {
					_, _ = conn.Write(garbage)
				}
			},
			wantErr: "DESCRIBE", kind: errKindConnect,
		},
		{
			name: "garbage-rtsp-lookalike",
			handle: func(conn net.Conn, r *bufio.Reader) {
				if _, err := readRequest(r); err == nil {
					_, _ = conn.Write([]byte("RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: 99999999999\r\n\r\n"))
					_, _ = conn.Write(garbage)
				}
			},
			wantErr: "DESCRIBE", kind: errKindConnect,
		},
		{
			name: "bad-sdp",
			handle: func(conn net.Conn, r *bufio.Reader) {
				_, _ = answerUntil(conn, r, "v=0\r\nthis is not an SDP\r\nm=video\r\n", "")
			},
			wantErr: "invalid SDP", kind: errKindSDP,
		},
		{
			name: "sdp-bad-h264-params",
			handle: func(conn net.Conn, r *bufio.Reader) {
				_, _ = answerUntil(conn, r, strings.Replace(h264SDP, "packetization-mode=1",
					"packetization-mode=1; sprop-parameter-sets=!!!,@@@", 1), "")
			},
			wantErr: "SDP", kind: errKindSDP,
		},
		{
			name: "audio-only",
			handle: func(conn net.Conn, r *bufio.Reader) {
				_, _ = answerUntil(conn, r, "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=a\r\nt=0 0\r\n"+
					"m=audio 0 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=control:trackID=0\r\n", "")
			},
			wantErr: ErrNoVideo.Error(), kind: errKindSDP,
		},
		{
			name: "garbage-rtp",
			handle: func(conn net.Conn, r *bufio.Reader) {
				play, err := answerUntil(conn, r, h264SDP, "PLAY")
				if err != nil {
					return
				}
				_ = respond(conn, play, "200 OK", map[string]string{"Session": "12345678"}, "")
				// Not RTP at all, a truncated FU-A, a bogus STAP-A, a garbage
				// SPS, then an "IDR" of random bytes, then random frames.
				frames := [][]byte{
					interleaved(garbage[:100]),
					interleaved(rtpPacket(1, 0, false, []byte{28, 0x85})),
					interleaved(rtpPacket(2, 0, true, []byte{24, 0xff, 0xff, 1, 2})),
					interleaved(rtpPacket(3, 9000, false, append([]byte{0x67}, garbage[:40]...))),
					interleaved(rtpPacket(4, 9000, true, append([]byte{0x65}, garbage[100:600]...))),
				}
				for i := range 50 {
					frames = append(frames, interleaved(rtpPacket(uint16(5+i), uint32(18000+i*9000), i%2 == 0, garbage[i*100:i*100+150])))
				}
				for _, f := range frames {
					if _, err := conn.Write(f); err != nil {
						return
					}
				}
				time.Sleep(200 * time.Millisecond)
			},
			wantErr: "session ended", kind: errKindRTP,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			raw := startRawServer(t, tc.handle)
			_, rec, m := runClient(t, Config{URL: raw.url(), ReadTimeout: time.Second, StallTimeout: 2 * time.Second,
				ReconnectMin: 50 * time.Millisecond, ReconnectMax: 100 * time.Millisecond})
			waitFor(t, 8*time.Second, "a reconnect after the error", func() bool {
				return raw.connections() >= 2 && len(rec.downErrors()) >= 1
			})
			errs := rec.downErrors()
			if !strings.Contains(errs[0].Error(), tc.wantErr) {
				t.Errorf("first error %q, want it to contain %q", errs[0], tc.wantErr)
			}
			t.Logf("error: %v", errs[0])
			if got := testutil.ToFloat64(m.Errors.WithLabelValues("cam", StreamDetect, tc.kind)); got < 1 {
				t.Errorf("errors{kind=%q} = %v, want >= 1", tc.kind, got)
			}
			if got := testutil.ToFloat64(m.Errors.WithLabelValues("cam", StreamDetect, errKindPanic)); got != 0 {
				t.Errorf("recovered %v panics", got)
			}
		})
	}
}

// h264Media returns a short H.264 clip's access units and parameter sets.
func testMedia(t *testing.T, codec string) ([]rtsptest.AU, rtsptest.Config) {
	t.Helper()
	path := rtsptest.Encode(t, cacheDir, testenv.Video(t), codec, 4, "320x240", 10, false)
	_, aus, err := rtsptest.ReadTS(path)
	if err != nil {
		t.Fatal(err)
	}
	vps, sps, pps := rtsptest.Params(codec, aus)
	return aus, rtsptest.Config{Codec: codec, VPS: vps, SPS: sps, PPS: pps}
}

func TestTransportFallback(t *testing.T) {
	t.Parallel()
	aus, base := testMedia(t, "h264")

	// The server refuses TCP: auto moves to UDP.
	cfg := base
	cfg.UDP, cfg.RefuseTCP = true, true
	srv := rtsptest.Start(t, cfg)
	srv.Loop(aus, 10)
	addr := srv.Addr()
	c, rec, _ := runClient(t, Config{URL: srv.URL("cam"), Transport: TransportAuto, ReadTimeout: 2 * time.Second,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 100 * time.Millisecond})
	waitFor(t, 10*time.Second, "video over UDP", func() bool { got, _ := rec.snapshot(); return len(got) >= 5 })
	if srv.Setups("tcp") != 1 || srv.Setups("udp") != 1 {
		t.Errorf("SETUPs tcp %d udp %d, want 1 and 1", srv.Setups("tcp"), srv.Setups("udp"))
	}
	checkStream(t, func() []AccessUnit { got, _ := rec.snapshot(); return got }(), CodecH264, 320, 240)

	// The camera comes back refusing UDP: the client tries UDP first (it
	// worked last time), then falls back to TCP.
	srv.Close()
	cfg = base
	cfg.UDP, cfg.RefuseUDP = true, true
	srv2, err := rtsptest.New(cfg, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv2.Close)
	srv2.Loop(aus, 10)
	waitFor(t, 10*time.Second, "video over TCP", func() bool {
		got, _ := rec.snapshot()
		return got[len(got)-1].Session > got[0].Session+1
	})
	if srv2.Setups("udp") != 1 || srv2.Setups("tcp") != 1 {
		t.Errorf("second server SETUPs tcp %d udp %d, want 1 and 1", srv2.Setups("tcp"), srv2.Setups("udp"))
	}
	_ = c
}

func TestTransportRefusedWithoutFallback(t *testing.T) {
	t.Parallel()
	srv := rtsptest.Start(t, rtsptest.Config{RefuseTCP: true, UDP: true})
	_, rec, m := runClient(t, Config{URL: srv.URL("cam"), Transport: TransportTCP,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 100 * time.Millisecond})
	waitFor(t, 5*time.Second, "two refused SETUPs", func() bool { return srv.Setups("tcp") >= 2 })
	if srv.Setups("udp") != 0 {
		t.Errorf("tcp-only client sent %d UDP SETUPs", srv.Setups("udp"))
	}
	errs := rec.downErrors()
	if len(errs) == 0 || !strings.Contains(errs[0].Error(), "461") {
		t.Errorf("down errors %v, want 461", errs)
	}
	if got := testutil.ToFloat64(m.Errors.WithLabelValues("cam", StreamDetect, errKindSetup)); got < 1 {
		t.Errorf("setup errors %v", got)
	}
}

func TestAuth(t *testing.T) {
	aus, base := testMedia(t, "h264")
	for _, tc := range []struct {
		name    string
		methods []auth.VerifyMethod
		creds   string
		ok      bool
	}{
		{"basic", []auth.VerifyMethod{auth.VerifyMethodBasic}, "admin:s3cret", true},
		{"digest", []auth.VerifyMethod{auth.VerifyMethodDigestMD5}, "admin:s3cret", true},
		{"wrong-password", []auth.VerifyMethod{auth.VerifyMethodDigestMD5}, "admin:wrong", false},
		{"no-credentials", nil, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := base
			cfg.User, cfg.Pass, cfg.AuthMethods = "admin", "s3cret", tc.methods
			srv := rtsptest.Start(t, cfg)
			srv.Loop(aus, 10)
			u := srv.URL("cam")
			if tc.creds != "" {
				u = strings.Replace(u, "rtsp://", "rtsp://"+tc.creds+"@", 1)
			}
			_, rec, _ := runClient(t, Config{URL: u, ReconnectMin: 100 * time.Millisecond, ReconnectMax: 200 * time.Millisecond})
			if tc.ok {
				waitFor(t, 10*time.Second, "video", func() bool { got, _ := rec.snapshot(); return len(got) >= 3 })
				return
			}
			waitFor(t, 5*time.Second, "an auth error", func() bool { return len(rec.downErrors()) >= 1 })
			err := rec.downErrors()[0]
			t.Logf("error: %v", err)
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "wrong") {
				t.Errorf("error leaks the password: %v", err)
			}
			if got, _ := rec.snapshot(); len(got) != 0 {
				t.Errorf("%d access units without valid credentials", len(got))
			}
		})
	}
}

func TestRTSPS(t *testing.T) {
	t.Parallel()
	aus, base := testMedia(t, "h264")
	serverTLS, pool := rtsptest.SelfSignedTLS(t)
	base.TLSConfig = serverTLS
	srv := rtsptest.Start(t, base)
	srv.Loop(aus, 10)
	if !strings.HasPrefix(srv.URL("cam"), "rtsps://") {
		t.Fatalf("URL %s", srv.URL("cam"))
	}

	t.Run("trusted", func(t *testing.T) {
		t.Parallel()
		_, rec, _ := runClient(t, Config{URL: srv.URL("cam"), TLSConfig: &tls.Config{RootCAs: pool}})
		waitFor(t, 10*time.Second, "video over RTSPS", func() bool { got, _ := rec.snapshot(); return len(got) >= 3 })
	})
	t.Run("trusted_paced", func(t *testing.T) {
		t.Parallel()
		// TLS over a paced connection: records span batches.
		_, rec, _ := runClient(t, Config{URL: srv.URL("cam"), TLSConfig: &tls.Config{RootCAs: pool}, ReadInterval: 300 * time.Millisecond})
		waitFor(t, 10*time.Second, "2 s of video over paced RTSPS", func() bool {
			got, _ := rec.snapshot()
			return len(got) > 1 && got[len(got)-1].PTS-got[0].PTS >= 2*time.Second
		})
		if errs := rec.downErrors(); len(errs) != 0 {
			t.Errorf("sessions failed: %v", errs)
		}
	})
	t.Run("untrusted", func(t *testing.T) {
		t.Parallel()
		_, rec, _ := runClient(t, Config{URL: srv.URL("cam"), ReconnectMin: 100 * time.Millisecond})
		waitFor(t, 5*time.Second, "a certificate error", func() bool { return len(rec.downErrors()) >= 1 })
		if err := rec.downErrors()[0]; !strings.Contains(err.Error(), "certificate") {
			t.Errorf("error %v, want a certificate error", err)
		}
	})
}

func TestH265(t *testing.T) {
	t.Parallel()
	aus, cfg := testMedia(t, "h265")
	if !aus[0].Key {
		t.Fatal("test media does not start with a key frame")
	}
	srv := rtsptest.Start(t, cfg)
	srv.Loop(aus, 10)
	_, rec, _ := runClient(t, Config{URL: srv.URL("cam")})
	waitFor(t, 10*time.Second, "2 s of H.265", func() bool {
		got, _ := rec.snapshot()
		return len(got) > 1 && got[len(got)-1].PTS-got[0].PTS >= 2*time.Second
	})
	got, _ := rec.snapshot()
	checkStream(t, got, CodecH265, 320, 240)
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"ok", Config{CameraID: "c", URL: "rtsp://127.0.0.1:554/x"}, ""},
		{"ok-rtsps-auto", Config{CameraID: "c", URL: "rtsps://u:p@cam.example:322/x", Transport: "auto"}, ""},
		{"no-camera", Config{URL: "rtsp://127.0.0.1/x"}, "camera ID"},
		{"http", Config{CameraID: "c", URL: "http://127.0.0.1/x"}, "scheme"},
		{"garbage-url", Config{CameraID: "c", URL: "rtsp://a b:%zz@host/"}, "invalid URL"},
		{"password-not-leaked", Config{CameraID: "c", URL: "rtsp://user:hunter2@[::1/x"}, "missing ']'"},
		{"no-host", Config{CameraID: "c", URL: "rtsp:///x"}, "host"},
		{"transport", Config{CameraID: "c", URL: "rtsp://h/x", Transport: "quic"}, "transport"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, nil, nil)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c, err := New(Config{CameraID: "c", URL: "rtsp://h/x", ReconnectMin: time.Minute, ReconnectMax: time.Hour}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.cfg.ReconnectMax != MaxReconnectDelay || c.cfg.ReconnectMin != MaxReconnectDelay {
		t.Errorf("reconnect %v..%v, want capped at %v", c.cfg.ReconnectMin, c.cfg.ReconnectMax, MaxReconnectDelay)
	}
	if c.cfg.Transport != TransportTCP || c.cfg.ReadTimeout != DefaultReadTimeout || c.cfg.StallTimeout != DefaultStallTimeout {
		t.Errorf("defaults %+v", c.cfg)
	}
}

func TestJitter(t *testing.T) {
	for _, d := range []time.Duration{0, 1, time.Millisecond, time.Second, MaxReconnectDelay} {
		for range 1000 {
			if j := jitter(d); j < d/2 || j > d {
				t.Fatalf("jitter(%v) = %v, outside [%v, %v]", d, j, d/2, d)
			}
		}
	}
}

func TestCloseWithoutRun(t *testing.T) {
	c, err := New(Config{CameraID: "c", URL: "rtsp://127.0.0.1:1/x"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Run(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close: %v", err)
	}
}

func TestRunEndsWithContext(t *testing.T) {
	t.Parallel()
	// A server that accepts and never answers: Run must still return
	// promptly when its context ends, in the middle of a request.
	raw := startRawServer(t, func(_ net.Conn, r *bufio.Reader) { _, _ = readRequest(r); _, _ = readRequest(r) })
	c, err := New(Config{CameraID: "c", URL: raw.url(), ReadTimeout: time.Minute}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	waitFor(t, 5*time.Second, "the connection", func() bool { return raw.connections() >= 1 })
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	t.Logf("Run returned %s after cancel", time.Since(start).Round(time.Millisecond))
	_ = c.Close()
}
