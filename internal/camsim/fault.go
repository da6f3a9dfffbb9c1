package camsim

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v5"
)

// Fault is a misbehaviour a camera simulates on demand, for tests of the
// clients that read it.
type Fault string

// Faults.
const (
	FaultNone Fault = ""
	// FaultDrop closes every connection and session of the camera at once;
	// the camera goes on serving, so clients may reconnect. It is not a
	// lasting state.
	FaultDrop Fault = "drop"
	// FaultStall keeps the connections open and sends nothing on them — no
	// RTSP response, no RTP, no RTCP — and no RTP over UDP either: a camera
	// that froze without closing its socket.
	FaultStall Fault = "stall"
	// FaultStop stops serving the path: its connections are closed and
	// DESCRIBE and SETUP are answered 404 Not Found.
	FaultStop Fault = "stop"
	// FaultGarbage replaces everything sent on the camera's connections
	// (RTSP responses and interleaved RTP) with random bytes.
	FaultGarbage Fault = "garbage"
	// FaultBadRTP sends RTP packets with valid headers and random payloads
	// instead of the video.
	FaultBadRTP Fault = "bad_rtp"
	// FaultBadSDP answers DESCRIBE with 200 OK and an SDP that does not
	// parse.
	FaultBadSDP Fault = "bad_sdp"
)

// Faults lists the faults SetFault accepts.
var Faults = []Fault{FaultDrop, FaultStall, FaultStop, FaultGarbage, FaultBadRTP, FaultBadSDP}

// ParseFault parses a fault name ("none" or "" clears).
func ParseFault(s string) (Fault, error) {
	if s == "" || s == "none" {
		return FaultNone, nil
	}
	for _, f := range Faults {
		if string(f) == s {
			return f, nil
		}
	}
	names := make([]string, len(Faults))
	for i, f := range Faults {
		names[i] = string(f)
	}
	return FaultNone, fmt.Errorf("camsim: unknown fault %q (want none, %s)", s, strings.Join(names, ", "))
}

// badSDP is what FaultBadSDP serves.
const badSDP = "v=0\r\nthis is not an SDP\r\nm=video\r\n"

// faults is the fault state of a server's cameras and the connections and
// sessions through which they are served.
type faults struct {
	mu       sync.Mutex
	active   map[string]Fault       // camera ID → lasting fault
	timers   map[string]*time.Timer // camera ID → clears its fault
	conns    map[*faultConn]struct{}
	sessions map[*gortsplib.ServerSession]struct{}
}

func newFaults() *faults {
	return &faults{active: map[string]Fault{}, timers: map[string]*time.Timer{}, conns: map[*faultConn]struct{}{},
		sessions: map[*gortsplib.ServerSession]struct{}{}}
}

func (f *faults) of(camera string) Fault {
	if camera == "" {
		return FaultNone
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.active[camera]
}

// SetFault makes a camera misbehave. A lasting fault (every one but
// FaultDrop) holds until ClearFault, another SetFault, or — when d is
// positive — for d. Setting FaultNone clears.
func (s *Server) SetFault(cameraID string, fault Fault, d time.Duration) error {
	if _, ok := s.cams[cameraID]; !ok {
		return fmt.Errorf("camsim: no camera %q", cameraID)
	}
	if _, err := ParseFault(string(fault)); err != nil {
		return err
	}
	f := s.faults
	f.mu.Lock()
	if t := f.timers[cameraID]; t != nil {
		t.Stop()
		delete(f.timers, cameraID)
	}
	switch fault {
	case FaultNone:
		delete(f.active, cameraID)
	case FaultDrop:
	default:
		f.active[cameraID] = fault
		if d > 0 {
			f.timers[cameraID] = time.AfterFunc(d, func() { s.expire(cameraID, fault) })
		}
	}
	var conns []*faultConn
	var sessions []*gortsplib.ServerSession
	if fault == FaultDrop || fault == FaultStop {
		for c := range f.conns {
			if c.camera() == cameraID {
				conns = append(conns, c)
			}
		}
		for ss := range f.sessions {
			if cameraOfPath(ss.Path()) == cameraID {
				sessions = append(sessions, ss)
			}
		}
	}
	f.mu.Unlock()

	for _, ss := range sessions {
		ss.Close()
	}
	for _, c := range conns {
		_ = c.Conn.Close()
	}
	if fault == FaultNone {
		s.log.Info("fault cleared", "camera_id", cameraID)
	} else {
		s.log.Warn("fault injected", "camera_id", cameraID, "fault", string(fault), "for", d,
			"connections_closed", len(conns), "sessions_closed", len(sessions))
	}
	return nil
}

// ClearFault ends a camera's fault.
func (s *Server) ClearFault(cameraID string) error { return s.SetFault(cameraID, FaultNone, 0) }

// expire clears a timed fault unless another one replaced it.
func (s *Server) expire(cameraID string, fault Fault) {
	f := s.faults
	f.mu.Lock()
	if f.active[cameraID] != fault {
		f.mu.Unlock()
		return
	}
	delete(f.active, cameraID)
	delete(f.timers, cameraID)
	f.mu.Unlock()
	s.log.Info("fault expired", "camera_id", cameraID, "fault", string(fault))
}

// ActiveFaults returns the lasting faults by camera ID.
func (s *Server) ActiveFaults() map[string]Fault {
	f := s.faults
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]Fault, len(f.active))
	for k, v := range f.active {
		out[k] = v
	}
	return out
}

// FaultNames returns the accepted fault names, sorted.
func FaultNames() []string {
	out := []string{"none"}
	for _, f := range Faults {
		out = append(out, string(f))
	}
	sort.Strings(out[1:])
	return out
}

func (f *faults) stopTimers() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, t := range f.timers {
		t.Stop()
		delete(f.timers, id)
	}
}

func (f *faults) addSession(ss *gortsplib.ServerSession) {
	f.mu.Lock()
	f.sessions[ss] = struct{}{}
	f.mu.Unlock()
}

func (f *faults) removeSession(ss *gortsplib.ServerSession) {
	f.mu.Lock()
	delete(f.sessions, ss)
	f.mu.Unlock()
}

// cameraOfPath returns the camera ID of an RTSP path ("/cam-01/trackID=0").
func cameraOfPath(p string) string {
	p = strings.TrimPrefix(p, "/")
	id, _, _ := strings.Cut(p, "/")
	return id
}

// faultListener wraps the RTSP listener so that every connection can be
// attributed to a camera and made to misbehave.
type faultListener struct {
	net.Listener
	f *faults
}

func (l *faultListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	fc := &faultConn{Conn: c, f: l.f}
	l.f.mu.Lock()
	l.f.conns[fc] = struct{}{}
	l.f.mu.Unlock()
	return fc, nil
}

// faultConn is one client connection. It learns its camera from the first
// request line (RTSP clients use one connection per path).
type faultConn struct {
	net.Conn
	f *faults

	mu  sync.Mutex
	cam string
}

func (c *faultConn) camera() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cam
}

func (c *faultConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		if c.cam == "" {
			c.cam = sniffCamera(p[:n])
		}
		c.mu.Unlock()
	}
	return n, err
}

// sniffCamera finds the camera ID in the first request line of data.
func sniffCamera(data []byte) string {
	line, _, _ := bytes.Cut(data, []byte("\r\n"))
	parts := strings.Fields(string(line))
	if len(parts) < 3 || !strings.HasPrefix(parts[2], "RTSP/") {
		return ""
	}
	u, err := url.Parse(parts[1])
	if err != nil {
		return ""
	}
	return cameraOfPath(u.Path)
}

func (c *faultConn) Write(p []byte) (int, error) {
	switch c.f.of(c.camera()) {
	case FaultStall:
		return len(p), nil // swallowed: the client hears nothing
	case FaultGarbage:
		g := make([]byte, len(p))
		_, _ = rand.Read(g)
		if len(g) > 0 && g[0] == '$' { // never a valid interleaved frame start
			g[0] = 0
		}
		if _, err := c.Conn.Write(g); err != nil {
			return 0, err
		}
		return len(p), nil
	case FaultBadSDP:
		if bytes.HasPrefix(p, []byte("RTSP/1.0 200")) && bytes.Contains(p, []byte("application/sdp")) {
			if _, err := c.Conn.Write(badSDPResponse(p)); err != nil {
				return 0, err
			}
			return len(p), nil
		}
	}
	return c.Conn.Write(p)
}

// badSDPResponse turns a DESCRIBE response into one with a broken SDP.
func badSDPResponse(res []byte) []byte {
	cseq := "0"
	for _, line := range strings.Split(string(res), "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "CSeq") {
			cseq = strings.TrimSpace(v)
		}
	}
	return fmt.Appendf(nil, "RTSP/1.0 200 OK\r\nCSeq: %s\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		cseq, len(badSDP), badSDP)
}

func (c *faultConn) Close() error {
	c.f.mu.Lock()
	delete(c.f.conns, c)
	c.f.mu.Unlock()
	return c.Conn.Close()
}
