package rtsp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xueliang/xl/agent/internal/rtsp/rtsptest"
	"github.com/xueliang/xl/internal/camsim"
	"github.com/xueliang/xl/internal/testenv"
)

// cacheDir is shared by the package's tests so the test video is transcoded
// (by camsim) and encoded (by rtsptest.Encode) once per run.
var cacheDir string

func TestMain(m *testing.M) { os.Exit(testenv.RunWithTempDir(m, "rtsp-test-", &cacheDir)) }

// testLog returns a logger writing to the test log.
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var camsimMu sync.Mutex

// startCamsim runs a camsim server for camera "cam" on addr (":0" style
// addresses pick a port) until stopped or the test ends.
func startCamsim(t *testing.T, addr string, udp bool) (srv *camsim.Server, stop func()) {
	t.Helper()
	cfg := camsim.Config{Listen: addr, Cameras: []camsim.Camera{{ID: "cam", Path: testenv.Video(t)}}, CacheDir: cacheDir}
	if udp {
		rtpAddr, rtcpAddr, err := rtsptest.FreeUDPPair()
		if err != nil {
			t.Fatal(err)
		}
		cfg.UDPRTPAddress, cfg.UDPRTCPAddress = rtpAddr, rtcpAddr
	}
	camsimMu.Lock() // the first New transcodes; parallel tests then hit the cache
	srv, err := camsim.New(cfg, nil)
	camsimMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(context.Background()) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = srv.Close()
			if err := <-done; err != nil {
				t.Errorf("camsim Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return srv, stop
}

// recorder collects what a client delivers.
type recorder struct {
	mu     sync.Mutex
	aus    []AccessUnit
	recv   []time.Time // when each access unit was handed over
	states []stateEvent
}

type stateEvent struct {
	up  bool
	err error
}

func (r *recorder) onAU(au AccessUnit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.aus = append(r.aus, au)
	r.recv = append(r.recv, time.Now())
}

// receipts returns when each access unit so far was handed over.
func (r *recorder) receipts() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.recv...)
}

func (r *recorder) onState(up bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.states = append(r.states, stateEvent{up, err})
}

func (r *recorder) snapshot() ([]AccessUnit, []stateEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]AccessUnit(nil), r.aus...), append([]stateEvent(nil), r.states...)
}

// downErrors returns the errors of the down events so far.
func (r *recorder) downErrors() []error {
	_, states := r.snapshot()
	var errs []error
	for _, s := range states {
		if !s.up && s.err != nil {
			errs = append(errs, s.err)
		}
	}
	return errs
}

// runClient creates a client with the recorder's callbacks and fresh
// metrics, and runs it until the test ends.
func runClient(t *testing.T, cfg Config) (*Client, *recorder, *Metrics) {
	t.Helper()
	rec := &recorder{}
	if cfg.CameraID == "" {
		cfg.CameraID = "cam"
	}
	cfg.OnAccessUnit = rec.onAU
	cfg.OnState = rec.onState
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(cfg, m, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	t.Cleanup(func() {
		_ = c.Close()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return c, rec, m
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rawServer is a TCP server whose connections are handled by a test
// function, for servers that misbehave in ways gortsplib's server cannot.
type rawServer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
	count int
}

func startRawServer(t *testing.T, handle func(conn net.Conn, r *bufio.Reader)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, conn)
			s.count++
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer conn.Close()
				handle(conn, bufio.NewReader(conn))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *rawServer) url() string { return "rtsp://" + s.ln.Addr().String() + "/cam" }

func (s *rawServer) connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// rawRequest is an RTSP request read by a raw server.
type rawRequest struct {
	method string
	url    string
	header map[string]string // names in lower case
}

// readRequest reads the next request, skipping the interleaved frames
// (RTCP receiver reports) a client sends on the connection.
func readRequest(r *bufio.Reader) (*rawRequest, error) {
	for {
		b, err := r.Peek(4)
		if err != nil {
			return nil, err
		}
		if b[0] != '$' {
			break
		}
		if _, err := r.Discard(4 + (int(b[2])<<8 | int(b[3]))); err != nil {
			return nil, err
		}
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	fields := strings.Fields(line)
	if len(fields) < 2 {
		return nil, fmt.Errorf("bad request line %q", line)
	}
	req := &rawRequest{method: fields[0], url: fields[1], header: map[string]string{}}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		line = strings.TrimSpace(line)
		if line == "" {
			break
		}
		k, v, _ := strings.Cut(line, ":")
		req.header[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	if n, _ := strconv.Atoi(req.header["content-length"]); n > 0 {
		if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
			return nil, err
		}
	}
	return req, nil
}

// respond writes a response echoing the request's CSeq.
func respond(w io.Writer, req *rawRequest, status string, headers map[string]string, body string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "RTSP/1.0 %s\r\nCSeq: %s\r\n", status, req.header["cseq"])
	for k, v := range headers {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	if body != "" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	_, err := io.WriteString(w, b.String())
	return err
}

// answerUntil answers OPTIONS, DESCRIBE (with sdp), SETUP (interleaved TCP)
// and PLAY until the request whose method is stop; it returns that request.
func answerUntil(conn net.Conn, r *bufio.Reader, sdp, stop string) (*rawRequest, error) {
	for {
		req, err := readRequest(r)
		if err != nil {
			return nil, err
		}
		if req.method == stop {
			return req, nil
		}
		switch req.method {
		case "OPTIONS":
			err = respond(conn, req, "200 OK", map[string]string{"Public": "DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER"}, "")
		case "DESCRIBE":
			err = respond(conn, req, "200 OK", map[string]string{"Content-Type": "application/sdp", "Content-Base": "rtsp://" + conn.LocalAddr().String() + "/cam/"}, sdp)
		case "SETUP":
			err = respond(conn, req, "200 OK", map[string]string{"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1", "Session": "12345678;timeout=60"}, "")
		case "PLAY":
			err = respond(conn, req, "200 OK", map[string]string{"Session": "12345678"}, "")
		default:
			err = respond(conn, req, "200 OK", nil, "")
		}
		if err != nil {
			return nil, err
		}
	}
}

const h264SDP = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=test\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n" +
	"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\na=control:trackID=0\r\n"

// interleaved frames an RTP packet for channel 0.
func interleaved(payload []byte) []byte {
	return append([]byte{'$', 0, byte(len(payload) >> 8), byte(len(payload))}, payload...)
}

// rtpPacket builds a version-2 RTP packet with payload type 96.
func rtpPacket(seq uint16, ts uint32, marker bool, payload []byte) []byte {
	b := []byte{0x80, 96, byte(seq >> 8), byte(seq), byte(ts >> 24), byte(ts >> 16), byte(ts >> 8), byte(ts), 0, 0, 0x12, 0x34}
	if marker {
		b[1] |= 0x80
	}
	return append(b, payload...)
}
