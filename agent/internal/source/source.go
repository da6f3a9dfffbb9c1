// Package source reads frames from a camera and hands them to analysis
// through a bounded queue that drops the oldest frame when analysis falls
// behind (counted).
//
// RTSP cameras are pulled with gortsplib (agent/internal/rtsp) and decoded
// with libavcodec (agent/internal/decode): frames at the analysis rate are
// handed on, converted at the analysis width; the others are decoded only
// when a later analysed frame depends on them (the tail of a GOP before an
// IDR never is), and in key-frame-only mode nothing but key frames is
// decoded. file://
// recordings are read through OpenCV's FFmpeg backend (gocv.VideoCapture),
// at their own pace or as fast as analysis allows.
package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gocv.io/x/gocv"

	"github.com/xueliang/xl/agent/internal/decode"
	"github.com/xueliang/xl/agent/internal/rtsp"
	"github.com/xueliang/xl/internal/queue"
)

func init() {
	// OpenCV's FFmpeg backend reads RTSP over UDP unless told otherwise; TCP
	// is what survives NAT and lossy links. A user's own setting wins.
	if _, ok := os.LookupEnv("OPENCV_FFMPEG_CAPTURE_OPTIONS"); !ok {
		os.Setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
	}
}

// Frame is one decoded frame. Whoever pops it from the queue owns the
// Picture and must Close it.
type Frame struct {
	Pic *decode.Picture
	At  time.Time // capture time (wall clock for streams, media time for files)
	Seq uint64
}

// Config configures one source.
type Config struct {
	URL          string        // rtsp://, rtsps:// or file://
	FPS          float64       // frames per second handed to analysis
	Realtime     bool          // for files: pace at the recording's rate
	QueueSize    int           // frames waiting for analysis
	ReconnectMin time.Duration // first reconnect delay
	ReconnectMax time.Duration // cap of the backoff
	OnState      func(State)   // called on every state change, may be nil
	// Width is analysis's frame width: RTSP frames are converted to BGR at
	// this width as they are decoded, and at full size only when analysis
	// asks (decode.Picture). 0: full size only.
	Width int

	// Files only (replays). MediaStart is the time given to the first frame
	// (default: when the file is opened); Until ends the file after this
	// much media time (0: at its end).
	MediaStart time.Time
	Until      time.Duration

	// RTSP only.
	Transport    string        // tcp (default), udp or auto
	KeyframeOnly bool          // decode key frames only (low-power mode)
	StallTimeout time.Duration // no video this long: reconnect (default 10 s)
	ReadInterval time.Duration // read TCP sessions in batches this far apart (rtsp.Config.ReadInterval)
	// OnAccessUnit, when set, receives every encoded access unit before it
	// is decoded (for the evidence clip buffer). It runs on the network
	// reader and must return quickly; it must not modify the access unit.
	OnAccessUnit func(rtsp.AccessUnit)
}

// State is a source's connection state.
type State string

// States.
const (
	StateConnecting State = "connecting"
	StateStreaming  State = "streaming"
	StateDown       State = "down"
	StateEnded      State = "ended" // a file source reached its end
)

// Metrics are the per-camera source metrics, registered once per agent.
type Metrics struct {
	FramesRead    *prometheus.CounterVec
	NotDecoded    *prometheus.CounterVec
	FramesQueued  *prometheus.CounterVec
	FramesDropped *prometheus.CounterVec
	Reconnects    *prometheus.CounterVec
	Up            *prometheus.GaugeVec
	DecodeSeconds *prometheus.HistogramVec
	DecodeErrors  *prometheus.CounterVec
	LastFrame     *prometheus.GaugeVec
	RTSP          *rtsp.Metrics
	ages          *ageCollector
}

// NewMetrics registers the source metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		FramesRead: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xl_agent_frames_decoded_total",
			Help: "Frames decoded from the camera."}, []string{"camera_id"}),
		NotDecoded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xl_agent_frames_not_decoded_total",
			Help: "Frames received but never decoded: no analysed frame needed them before the next IDR key frame."}, []string{"camera_id"}),
		FramesQueued: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xl_agent_frames_queued_total",
			Help: "Frames handed to analysis (after rate limiting to the analysis fps)."}, []string{"camera_id"}),
		FramesDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xl_agent_frames_dropped_total",
			Help: "Frames dropped because analysis fell behind."}, []string{"camera_id"}),
		Reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xl_agent_stream_reconnects_total",
			Help: "Times the camera stream was reopened."}, []string{"camera_id"}),
		Up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "xl_agent_stream_up",
			Help: "1 while frames arrive from the camera."}, []string{"camera_id"}),
		DecodeSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "xl_agent_decode_seconds",
			Help: "Time to decode one access unit (RTSP cameras).", Buckets: prometheus.ExponentialBuckets(0.0002, 2, 12)}, []string{"camera_id"}),
		DecodeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xl_agent_decode_errors_total",
			Help: "Access units that did not decode (the decoder resumes at the next key frame)."}, []string{"camera_id"}),
		LastFrame: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "xl_agent_last_frame_timestamp_seconds",
			Help: "Unix time of the last decoded frame (see also xl_agent_last_frame_age_seconds)."}, []string{"camera_id"}),
		ages: newAgeCollector(),
	}
	reg.MustRegister(m.FramesRead, m.NotDecoded, m.FramesQueued, m.FramesDropped, m.Reconnects, m.Up, m.DecodeSeconds, m.DecodeErrors, m.LastFrame, m.ages)
	rm, err := rtsp.NewMetrics(reg)
	if err != nil {
		panic(err) // only on a duplicate registration: a programming error
	}
	m.RTSP = rm
	return m
}

// Source is one camera's frame reader.
type Source struct {
	cfg      Config
	cameraID string
	log      *slog.Logger
	m        *Metrics
	cm       *cameraMetrics
	clock    *frameClock
	q        *queue.DropOldest[Frame]
	isFile   bool
	path     string

	mu        sync.Mutex
	state     State
	fps       float64   // measured
	downSince time.Time // when the source last stopped streaming (or started); zero while streaming
}

// New validates cfg; nothing is opened until Run.
func New(cameraID string, cfg Config, m *Metrics, log *slog.Logger) (*Source, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", cameraID, err)
	}
	s := &Source{cfg: cfg, cameraID: cameraID, m: m, log: log.With("component", "source", "camera_id", cameraID), state: StateConnecting,
		downSince: time.Now()}
	switch u.Scheme {
	case "rtsp", "rtsps":
	case "file":
		s.isFile = true
		s.path = u.Path
		if u.Host != "" && u.Host != "localhost" {
			s.path = u.Host + u.Path // file://relative/path.avi
		}
		if _, err := os.Stat(s.path); err != nil {
			return nil, fmt.Errorf("source %s: %w", cameraID, err)
		}
	default:
		return nil, fmt.Errorf("source %s: scheme %q is not rtsp, rtsps or file", cameraID, u.Scheme)
	}
	if cfg.FPS <= 0 {
		return nil, fmt.Errorf("source %s: fps must be positive", cameraID)
	}
	s.q = queue.New(max(cfg.QueueSize, 1), func(f Frame) { f.Pic.Close() })
	s.cm, s.clock = m.forCamera(cameraID), m.ages.add(cameraID)
	return s, nil
}

// Frames is the queue analysis pops frames from.
func (s *Source) Frames() *queue.DropOldest[Frame] { return s.q }

// State returns the connection state and the measured frame rate.
func (s *Source) State() (State, float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state, s.fps
}

// DownSince is when the source last stopped streaming (or when it started,
// if it never streamed); zero while it streams or after a file ended.
func (s *Source) DownSince() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.downSince
}

func (s *Source) setState(st State) {
	s.mu.Lock()
	changed := s.state != st
	s.state = st
	if st != StateStreaming {
		s.fps = 0
	}
	switch {
	case st == StateStreaming || st == StateEnded:
		s.downSince = time.Time{}
	case s.downSince.IsZero():
		s.downSince = time.Now()
	}
	s.mu.Unlock()
	up := 0.0
	if st == StateStreaming {
		up = 1
	}
	s.cm.up.Set(up)
	if changed {
		s.log.Info("stream state", "state", st)
		if s.cfg.OnState != nil {
			s.cfg.OnState(st)
		}
	}
}

// ErrEnded is returned by Run when a file source reached its end.
var ErrEnded = errors.New("source ended")

// Run reads until ctx is cancelled (or a file ends: then it returns
// ErrEnded). Frames go to Frames().
func (s *Source) Run(ctx context.Context) error {
	if !s.isFile {
		return s.runRTSP(ctx)
	}
	return s.runCapture(ctx)
}

// runCapture reads a file (or, in principle, any URL) through OpenCV.
func (s *Source) runCapture(ctx context.Context) error {
	backoff := s.cfg.ReconnectMin
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			s.cm.reconnects.Inc()
		}
		s.setState(StateConnecting)
		got, err := s.readOnce(ctx)
		if ctx.Err() != nil {
			s.setState(StateDown)
			return nil
		}
		if errors.Is(err, ErrEnded) {
			s.setState(StateEnded)
			return err
		}
		s.setState(StateDown)
		if got {
			backoff = s.cfg.ReconnectMin
		}
		// Full jitter keeps a fleet of agents from reconnecting in step.
		d := time.Duration(rand.Int64N(int64(backoff))) + backoff/2 // #nosec G404 -- reconnect jitter, not a secret
		s.log.Warn("stream lost; reconnecting", "err", err, "in", d.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d):
		}
		backoff = min(backoff*2, s.cfg.ReconnectMax)
	}
}

// readOnce opens the camera and reads until an error; got reports whether
// any frame arrived.
func (s *Source) readOnce(ctx context.Context) (got bool, err error) {
	target := s.cfg.URL
	if s.isFile {
		target = s.path
	}
	vc, err := gocv.OpenVideoCaptureWithAPI(target, gocv.VideoCaptureFFmpeg)
	if err != nil {
		return false, fmt.Errorf("open: %w", err)
	}
	defer vc.Close()
	if !vc.IsOpened() {
		return false, errors.New("open: the stream did not open")
	}
	srcFPS := vc.Get(gocv.VideoCaptureFPS)
	if srcFPS <= 0 || srcFPS > 240 {
		srcFPS = 25
	}
	mat := gocv.NewMat()
	defer func() { mat.Close() }()
	var (
		seq       uint64
		start     = time.Now()
		lastOut   time.Time
		interval  = time.Duration(float64(time.Second) / s.cfg.FPS)
		rateStart = time.Now()
		rateN     int
	)
	for ctx.Err() == nil {
		if !vc.Read(&mat) || mat.Empty() {
			if s.isFile {
				return got, ErrEnded
			}
			return got, errors.New("read: no frame (stream closed or timed out)")
		}
		if !got {
			got = true
			s.setState(StateStreaming)
			s.log.Info("first frame", "width", mat.Cols(), "height", mat.Rows(), "source_fps", srcFPS)
		}
		s.cm.decoded.Inc()
		read := time.Now()
		s.cm.lastFrame.Set(float64(read.UnixNano()) / 1e9)
		s.clock.frame(read)
		seq++
		at := time.Now()
		if s.isFile {
			// Media time: replays behave like the live stream, at any speed.
			offset := time.Duration(float64(seq-1) / srcFPS * float64(time.Second))
			if s.cfg.Until > 0 && offset >= s.cfg.Until {
				return got, ErrEnded
			}
			if s.cfg.Realtime {
				if d := time.Until(start.Add(offset)); d > 0 {
					select {
					case <-ctx.Done():
						return got, nil
					case <-time.After(d):
					}
				}
			}
			at = start.Add(offset)
			if !s.cfg.MediaStart.IsZero() {
				at = s.cfg.MediaStart.Add(offset)
			}
		}
		rateN++
		if el := time.Since(rateStart); el >= 5*time.Second {
			s.mu.Lock()
			s.fps = float64(rateN) / el.Seconds()
			s.mu.Unlock()
			rateStart, rateN = time.Now(), 0
		}
		// Hand over at most FPS frames per second (5 ms slack for jitter).
		if !lastOut.IsZero() && at.Sub(lastOut) < interval-5*time.Millisecond {
			continue
		}
		lastOut = at
		if s.isFile && !s.cfg.Realtime {
			// As fast as possible, but never faster than analysis: a replay
			// must see every frame it asked for.
			for s.q.Len() >= max(s.cfg.QueueSize, 1) && ctx.Err() == nil {
				time.Sleep(time.Millisecond)
			}
		}
		if s.q.Push(Frame{Pic: decode.FromMat(mat), At: at, Seq: seq}) {
			s.cm.dropped.Inc()
		}
		s.cm.queued.Inc()
		mat = gocv.NewMat() // the queue owns the pushed one now
	}
	return got, nil
}

// Close drops the frames still queued.
func (s *Source) Close() error {
	s.q.Close()
	s.m.ages.remove(s.cameraID, s.clock)
	return nil
}
