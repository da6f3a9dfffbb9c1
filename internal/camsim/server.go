// Package camsim is a camera simulator: an RTSP server that serves video
// files as looping live H.264 cameras, for tests and demos.
//
// Each input is prepared once with ffmpeg as MPEG-TS/H.264 (cached by
// content hash): H.264 inputs are copied as they are (their GOP, bitrate
// and B-frames), others are transcoded. The file is then read in a loop
// and sent as RTP paced in real time.
package camsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
)

// ErrClosed is returned by Run when the Server has already been closed.
var ErrClosed = errors.New("camsim: server closed")

// Server serves the configured cameras over RTSP.
//
// Lifecycle: New (validates, transcodes, binds the listen address) → Run
// (streams until the context is cancelled) → Close. Close may be called
// without Run, and more than once.
type Server struct {
	log  *slog.Logger
	cfg  Config
	addr string // host:port used in URLs (actual bound port)

	rtsp      *gortsplib.Server
	cams      map[string]*camera
	order     []*camera
	faults    *faults
	streamsMu sync.RWMutex // guards camera.stream while streams are being created

	mu        sync.Mutex
	running   bool
	closed    bool
	runCancel context.CancelFunc
	wg        sync.WaitGroup // camera streaming goroutines
	closeOnce sync.Once
}

type camera struct {
	Camera
	info     *mediaInfo
	stream   *gortsplib.ServerStream
	streamer *streamer
	log      *slog.Logger
}

// New validates cfg, prepares the media of every camera (running ffmpeg when
// no cached transcode exists) and starts listening. A listen address that is
// already in use is reported here. Streaming starts with Run.
// log may be nil, which discards logs.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "camsim")

	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.CacheDir, 0o750); err != nil {
		return nil, fmt.Errorf("camsim: create cache dir: %w", err)
	}

	s := &Server{
		log:    log,
		cfg:    cfg,
		cams:   make(map[string]*camera, len(cfg.Cameras)),
		faults: newFaults(),
	}

	for _, c := range cfg.Cameras {
		clog := log.With("camera_id", c.ID)
		info, err := prepareMedia(c, cfg.CacheDir, cfg.FFmpeg, clog)
		if err != nil {
			return nil, fmt.Errorf("camsim: %w", err)
		}
		clog.Info("media ready", "input", c.Path, "width", info.width, "height", info.height, "fps", info.fps)
		cam := &camera{Camera: c, info: info, log: clog}
		s.cams[c.ID] = cam
		s.order = append(s.order, cam)
	}

	s.rtsp = &gortsplib.Server{
		Handler:        &handler{s: s},
		RTSPAddress:    cfg.Listen,
		UDPRTPAddress:  cfg.UDPRTPAddress,
		UDPRTCPAddress: cfg.UDPRTCPAddress,
		// Every connection goes through the fault injector.
		Listen: func(network, address string) (net.Listener, error) {
			l, err := net.Listen(network, address)
			if err != nil {
				return nil, err
			}
			return &faultListener{Listener: l, f: s.faults}, nil
		},
	}

	// Hold the lock so requests arriving between Start and the creation of
	// the streams wait instead of seeing half-initialized cameras.
	s.streamsMu.Lock()
	if err := s.rtsp.Start(); err != nil {
		s.streamsMu.Unlock()
		return nil, fmt.Errorf("camsim: listen on %s: %w", cfg.Listen, err)
	}
	err = s.createStreams()
	s.streamsMu.Unlock()
	if err != nil {
		s.closeStreams()
		s.rtsp.Close()
		return nil, err
	}

	s.addr = urlHostPort(cfg.Listen, s.rtsp.NetListener().Addr())
	transports := "tcp"
	if cfg.UDPRTPAddress != "" {
		transports = "tcp,udp"
	}
	log.Info("rtsp server listening", "address", s.addr, "transports", transports, "cameras", len(s.order))
	return s, nil
}

func (s *Server) createStreams() error {
	for _, cam := range s.order {
		desc := &description.Session{
			Medias: []*description.Media{{
				Type: description.MediaTypeVideo,
				Formats: []format.Format{&format.H264{
					PayloadTyp:        96,
					PacketizationMode: 1,
					SPS:               cam.info.sps,
					PPS:               cam.info.pps,
				}},
			}},
		}
		st := &gortsplib.ServerStream{Server: s.rtsp, Desc: desc}
		if err := st.Initialize(); err != nil {
			return fmt.Errorf("camsim: camera %q: create stream: %w", cam.ID, err)
		}
		cam.stream = st
		id := cam.ID
		sr, err := newStreamer(cam.ID, cam.info, st, func() Fault { return s.faults.of(id) }, cam.log)
		if err != nil {
			return fmt.Errorf("camsim: %w", err)
		}
		cam.streamer = sr
	}
	return nil
}

// urlHostPort builds the host:port for URLs: the configured host (loopback
// when unspecified) with the port actually bound.
func urlHostPort(listen string, bound net.Addr) string {
	host, port, _ := net.SplitHostPort(listen)
	if ta, ok := bound.(*net.TCPAddr); ok {
		port = fmt.Sprint(ta.Port)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// URL returns the RTSP URL of a camera (rtsp://listen/ID). For an unspecified
// listen host (":8554", "0.0.0.0:8554") the loopback address is used.
func (s *Server) URL(cameraID string) string {
	return "rtsp://" + s.addr + "/" + cameraID
}

// Addr returns the host:port clients should connect to.
func (s *Server) Addr() string { return s.addr }

// CameraIDs returns the configured camera IDs in configuration order.
func (s *Server) CameraIDs() []string {
	ids := make([]string, len(s.order))
	for i, c := range s.order {
		ids[i] = c.ID
	}
	return ids
}

// Run streams all cameras until ctx is cancelled, then shuts the server down.
// It returns nil on cancellation (or when Close is called concurrently), and
// an error if the RTSP server or a camera fails. Run may be called only once.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.running {
		s.mu.Unlock()
		return errors.New("camsim: Run called twice")
	}
	s.running = true
	runCtx, cancel := context.WithCancel(ctx)
	s.runCancel = cancel
	camErr := make(chan error, len(s.order))
	for _, cam := range s.order {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := cam.streamer.run(runCtx); err != nil {
				cam.log.Error("camera failed", "error", err)
				camErr <- err
			}
		}()
	}
	s.mu.Unlock()

	// The RTSP server's own goroutines end only when it is closed; this
	// watcher is joined below after shutdown closes the server.
	srvDone := make(chan error, 1)
	go func() { srvDone <- s.rtsp.Wait() }()

	var err error
	srvExited := false
	select {
	case <-runCtx.Done():
	case err = <-camErr:
	case e := <-srvDone:
		srvExited = true
		err = fmt.Errorf("camsim: rtsp server stopped: %w", e)
	}
	cancel()
	s.shutdown()
	if !srvExited {
		<-srvDone
	}
	return err
}

// Close stops streaming, closes the streams and the RTSP server, and waits
// for all goroutines. It is safe to call more than once and concurrently
// with Run (which then returns nil).
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	if s.runCancel != nil {
		s.runCancel()
	}
	s.mu.Unlock()
	s.shutdown()
	return nil
}

func (s *Server) shutdown() {
	s.closeOnce.Do(func() {
		s.faults.stopTimers()
		s.wg.Wait()
		s.closeStreams()
		s.rtsp.Close()
		s.log.Info("rtsp server stopped")
	})
}

func (s *Server) closeStreams() {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	for _, cam := range s.order {
		if cam.stream != nil {
			cam.stream.Close()
		}
	}
}

// lookup returns the stream for an RTSP path ("/cam-01", "/cam-01/").
func (s *Server) lookup(path string) (*camera, *gortsplib.ServerStream) {
	id := strings.Trim(path, "/")
	cam, ok := s.cams[id]
	if !ok {
		return nil, nil
	}
	s.streamsMu.RLock()
	defer s.streamsMu.RUnlock()
	return cam, cam.stream
}

// handler implements the gortsplib server callbacks.
type handler struct{ s *Server }

func (h *handler) OnConnOpen(ctx *gortsplib.ServerHandlerOnConnOpenCtx) {
	h.s.log.Debug("rtsp connection opened", "remote", ctx.Conn.NetConn().RemoteAddr().String())
}

func (h *handler) OnConnClose(ctx *gortsplib.ServerHandlerOnConnCloseCtx) {
	h.s.log.Debug("rtsp connection closed", "remote", ctx.Conn.NetConn().RemoteAddr().String(), "reason", ctx.Error)
}

func (h *handler) OnSessionOpen(ctx *gortsplib.ServerHandlerOnSessionOpenCtx) {
	h.s.faults.addSession(ctx.Session)
}

func (h *handler) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	h.s.faults.removeSession(ctx.Session)
	if p := ctx.Session.Path(); p != "" {
		h.s.log.Info("client session closed", "camera_id", strings.Trim(p, "/"), "reason", ctx.Error)
	}
}

func (h *handler) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	cam, st := h.s.lookup(ctx.Path)
	if st == nil {
		h.s.log.Info("DESCRIBE for unknown camera", "path", ctx.Path)
		return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
	}
	if h.s.faults.of(cam.ID) == FaultStop {
		cam.log.Info("DESCRIBE refused: the camera is stopped (fault)")
		return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
	}
	cam.log.Debug("DESCRIBE", "remote", ctx.Conn.NetConn().RemoteAddr().String())
	return &base.Response{StatusCode: base.StatusOK}, st, nil
}

func (h *handler) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	cam, st := h.s.lookup(ctx.Path)
	if st == nil {
		h.s.log.Info("SETUP for unknown camera", "path", ctx.Path)
		return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
	}
	if h.s.faults.of(cam.ID) == FaultStop {
		return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
	}
	cam.log.Debug("SETUP", "remote", ctx.Conn.NetConn().RemoteAddr().String())
	return &base.Response{StatusCode: base.StatusOK}, st, nil
}

func (h *handler) OnPlay(ctx *gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	transport := "unknown"
	if t := ctx.Session.Transport(); t != nil {
		transport = t.Protocol.String()
	}
	h.s.log.Info("client playing", "camera_id", strings.Trim(ctx.Path, "/"),
		"remote", ctx.Conn.NetConn().RemoteAddr().String(), "transport", transport)
	return &base.Response{StatusCode: base.StatusOK}, nil
}
