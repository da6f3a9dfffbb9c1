package camsim

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
)

// exchange sends one request on a fresh connection and returns what comes
// back within wait (nil when nothing does).
func exchange(t *testing.T, addr, method, url string, wait time.Duration) []byte {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(method + " " + url + " RTSP/1.0\r\nCSeq: 1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 4096)
	var out []byte
	for {
		n, err := conn.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, io.EOF) {
				return out
			}
			t.Fatalf("read: %v", err)
		}
		if strings.Contains(string(out), "\r\n\r\n") && !strings.Contains(string(out), "Content-Length") {
			return out
		}
	}
}

func TestFaultStop(t *testing.T) {
	t.Parallel()
	srv := startServer(t, Camera{ID: "cam-01", Path: testVideo(t)}, Camera{ID: "cam-02", Path: testVideo(t)})
	r := play(t, srv.URL("cam-01"))
	other := play(t, srv.URL("cam-02"))
	waitFor(t, 5*time.Second, "frames", func() bool { return len(r.snapshot()) > 3 })

	if err := srv.SetFault("cam-01", FaultStop, 0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-clientDone(r):
	case <-time.After(5 * time.Second):
		t.Fatal("the client of a stopped camera is still connected")
	}
	if code := rawRTSP(t, srv.Addr(), "DESCRIBE", srv.URL("cam-01")); code != 404 {
		t.Fatalf("DESCRIBE of a stopped camera: %d, want 404", code)
	}
	if code := rawRTSP(t, srv.Addr(), "DESCRIBE", srv.URL("cam-02")); code != 200 {
		t.Fatalf("DESCRIBE of the other camera: %d, want 200", code)
	}
	n := len(other.snapshot())
	waitFor(t, 5*time.Second, "the other camera to go on", func() bool { return len(other.snapshot()) > n+3 })
	if got := srv.ActiveFaults(); got["cam-01"] != FaultStop || len(got) != 1 {
		t.Fatalf("active faults %v", got)
	}

	if err := srv.ClearFault("cam-01"); err != nil {
		t.Fatal(err)
	}
	r2 := play(t, srv.URL("cam-01"))
	waitFor(t, 5*time.Second, "frames after the camera came back", func() bool { return len(r2.snapshot()) > 3 })
}

func TestFaultDrop(t *testing.T) {
	t.Parallel()
	srv := startServer(t, Camera{ID: "cam-01", Path: testVideo(t)})
	r := play(t, srv.URL("cam-01"))
	waitFor(t, 5*time.Second, "frames", func() bool { return len(r.snapshot()) > 3 })
	if err := srv.SetFault("cam-01", FaultDrop, 0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-clientDone(r):
	case <-time.After(5 * time.Second):
		t.Fatal("client still connected after drop")
	}
	if len(srv.ActiveFaults()) != 0 {
		t.Errorf("drop left a lasting fault: %v", srv.ActiveFaults())
	}
	r2 := play(t, srv.URL("cam-01")) // the camera serves on
	waitFor(t, 5*time.Second, "frames after the drop", func() bool { return len(r2.snapshot()) > 3 })
}

func TestFaultStall(t *testing.T) {
	t.Parallel()
	srv := startServer(t, Camera{ID: "cam-01", Path: testVideo(t)})
	r := play(t, srv.URL("cam-01"))
	waitFor(t, 5*time.Second, "frames", func() bool { return len(r.snapshot()) > 3 })
	if err := srv.SetFault("cam-01", FaultStall, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // what was in flight arrives
	n := len(r.snapshot())
	// Nothing for a second, and a new request is not answered; the
	// connection stays open.
	if out := exchange(t, srv.Addr(), "OPTIONS", srv.URL("cam-01"), time.Second); len(out) != 0 {
		t.Fatalf("a stalled camera answered: %q", out)
	}
	if got := len(r.snapshot()); got != n {
		t.Fatalf("%d access units arrived from a stalled camera", got-n)
	}
	select {
	case <-clientDone(r):
		t.Fatal("the stalled camera closed the connection")
	default:
	}
	if err := srv.ClearFault("cam-01"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "frames after the stall", func() bool { return len(r.snapshot()) > n+3 })
}

func TestFaultTimed(t *testing.T) {
	t.Parallel()
	srv := startServer(t, Camera{ID: "cam-01", Path: testVideo(t)})
	if err := srv.SetFault("cam-01", FaultStall, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if srv.ActiveFaults()["cam-01"] != FaultStall {
		t.Fatal("fault not active")
	}
	waitFor(t, 5*time.Second, "the fault to expire", func() bool { return len(srv.ActiveFaults()) == 0 })
	if code := rawRTSP(t, srv.Addr(), "OPTIONS", srv.URL("cam-01")); code != 200 {
		t.Fatalf("OPTIONS after the stall expired: %d", code)
	}
	if err := srv.SetFault("no-such-cam", FaultStall, 0); err == nil {
		t.Error("fault on an unknown camera accepted")
	}
	if err := srv.SetFault("cam-01", Fault("melt"), 0); err == nil {
		t.Error("unknown fault accepted")
	}
}

func TestFaultGarbageAndBadSDP(t *testing.T) {
	t.Parallel()
	srv := startServer(t, Camera{ID: "cam-01", Path: testVideo(t)}, Camera{ID: "cam-02", Path: testVideo(t)})
	if err := srv.SetFault("cam-01", FaultGarbage, 0); err != nil {
		t.Fatal(err)
	}
	if err := srv.SetFault("cam-02", FaultBadSDP, 0); err != nil {
		t.Fatal(err)
	}
	out := exchange(t, srv.Addr(), "OPTIONS", srv.URL("cam-01"), time.Second)
	if len(out) == 0 || strings.HasPrefix(string(out), "RTSP/") {
		t.Fatalf("garbage fault answered %q", out)
	}
	out = exchange(t, srv.Addr(), "DESCRIBE", srv.URL("cam-02"), time.Second)
	if !strings.HasPrefix(string(out), "RTSP/1.0 200 OK\r\nCSeq: 1\r\n") || !strings.HasSuffix(string(out), badSDP) {
		t.Fatalf("bad SDP fault answered %q", out)
	}
	// A real client fails on it with an SDP error.
	u, err := base.ParseURL(srv.URL("cam-02"))
	if err != nil {
		t.Fatal(err)
	}
	tcp := gortsplib.ProtocolTCP
	c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &tcp}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, _, err := c.Describe(u); err == nil || !strings.Contains(strings.ToLower(err.Error()), "sdp") {
		t.Fatalf("DESCRIBE with a bad SDP: %v", err)
	}
}

func TestFaultBadRTP(t *testing.T) {
	t.Parallel()
	srv := startServer(t, Camera{ID: "cam-01", Path: testVideo(t)})
	r := play(t, srv.URL("cam-01"))
	waitFor(t, 5*time.Second, "frames", func() bool { return len(r.snapshot()) > 3 })
	if err := srv.SetFault("cam-01", FaultBadRTP, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "depacketization errors", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.errs) > 0
	})
	if err := srv.ClearFault("cam-01"); err != nil {
		t.Fatal(err)
	}
	n := len(r.snapshot())
	waitFor(t, 5*time.Second, "a key frame after the fault", func() bool {
		aus := r.snapshot()
		for _, au := range aus[n:] {
			if au.idr {
				return true
			}
		}
		return false
	})
}

func TestControlHandler(t *testing.T) {
	t.Parallel()
	srv := startServer(t, Camera{ID: "cam-01", Path: testVideo(t)})
	hs := httptest.NewServer(srv.ControlHandler())
	defer hs.Close()
	do := func(method, path string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(method, hs.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(bufio.NewReader(resp.Body)).Decode(&out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		return resp.StatusCode, out
	}
	if code, out := do("POST", "/cameras/cam-01/fault?kind=stall&for=1h"); code != 200 || out["fault"] != "stall" || out["for"] != "1h0m0s" {
		t.Fatalf("POST stall: %d %v", code, out)
	}
	if code, out := do("GET", "/faults"); code != 200 || out["cam-01"] != "stall" {
		t.Fatalf("GET: %d %v", code, out)
	}
	if code, out := do("DELETE", "/cameras/cam-01/fault"); code != 200 || out["fault"] != "none" {
		t.Fatalf("DELETE: %d %v", code, out)
	}
	if code, out := do("GET", "/faults"); code != 200 || len(out) != 0 {
		t.Fatalf("GET after DELETE: %d %v", code, out)
	}
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/cameras/nope/fault?kind=stall", 404},
		{"/cameras/cam-01/fault?kind=melt", 400},
		{"/cameras/cam-01/fault", 400},
		{"/cameras/cam-01/fault?kind=stall&for=-1s", 400},
	} {
		if code, out := do("POST", tc.path); code != tc.code || out["error"] == "" {
			t.Errorf("POST %s: %d %v, want %d with an error", tc.path, code, out, tc.code)
		}
	}
}
