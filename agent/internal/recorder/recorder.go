// Package recorder turns events into evidence clips: it keeps each
// camera's recent encoded video in a clip.Buffer and, when asked for a clip
// (an event started, or an explicit request), writes pre + post seconds
// around the instant as an MP4 (no re-encoding) and hands it to the outbox
// as the alert's clip evidence.
//
// A camera's video comes from its record stream (the main stream, pulled
// by a dedicated RTSP client and never decoded) when it names one, and from
// the access units of its detect stream (Feed) otherwise.
//
// Lifecycle: New (validates) → Run(ctx) (pulls the record streams) → Close
// (ends the clips in progress with what they have, publishes them, stops).
package recorder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xueliang/xl/agent/internal/clip"
	"github.com/xueliang/xl/agent/internal/rtsp"
	"github.com/xueliang/xl/internal/wire"
)

// Sink takes finished clips as evidence of an alert and must keep them
// durably (the publisher's outbox).
type Sink interface {
	PublishEvidence(cameraID, alertID string, kind wire.EvidenceKind, payload []byte) error
}

// Defaults.
const (
	DefaultPre  = 6 * time.Second
	DefaultPost = 6 * time.Second
	// DefaultMaxBytes is the contract's limit for one clip message; a
	// larger max_bytes makes clips travel in parts.
	DefaultMaxBytes = wire.MaxClipBytes
	// DefaultMaxPending bounds the clips a camera collects at once; a new
	// request beyond it ends the oldest capture early (it is published with
	// what it has, marked truncated).
	DefaultMaxPending = 4
	// lagMargin is kept in the buffer beyond Pre: an event is reported by
	// analysis a moment after its frame arrived.
	lagMargin = 3 * time.Second
	// overrun: a capture whose camera stopped sending is ended this long
	// after its window should have closed.
	overrun = 15 * time.Second
)

// Camera configures the clips of one camera.
type Camera struct {
	ID string
	// Record is the rtsp:// or rtsps:// URL of the stream clips are cut
	// from; empty means the detect stream, fed through Feed.
	Record string
	// For the record stream's client.
	Transport    string
	StallTimeout time.Duration
	ReadInterval time.Duration // rtsp.Config.ReadInterval
	// Pre and Post are the seconds before and after the requested instant
	// (defaults 6 s each); the clip starts at the key frame at or before
	// at-Pre, so it may be up to one GOP longer.
	Pre, Post time.Duration
	// MaxBytes bounds one clip's MP4 (default and at most the contract's
	// wire.MaxClipBytes); a longer clip is shortened to fit.
	MaxBytes int
}

// Metrics are the recorder's metrics, registered once per agent.
type Metrics struct {
	Clips       *prometheus.CounterVec // camera_id, result
	ClipBytes   prometheus.Histogram
	BufferBytes *prometheus.GaugeVec // camera_id
}

// Results of xl_agent_clips_total.
const (
	ResultComplete  = "complete"  // the whole window
	ResultTruncated = "truncated" // the stream restarted, the agent stopped or a newer request ended it early
	ResultShortened = "shortened" // cut to max_bytes
	ResultEmpty     = "empty"     // no video for the window (the camera was down)
	ResultFailed    = "failed"    // the MP4 could not be written or stored
	ResultRejected  = "rejected"  // the request came after Close
)

// NewMetrics registers the recorder metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Clips: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xl_agent_clips_total",
			Help: "Evidence clips by result (complete, truncated, shortened, empty, failed, rejected)."}, []string{"camera_id", "result"}),
		ClipBytes: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "xl_agent_clip_bytes",
			Help: "Size of the evidence clips written.", Buckets: prometheus.ExponentialBuckets(64<<10, 2, 10)}),
		BufferBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "xl_agent_clip_buffer_bytes",
			Help: "Encoded video held for pre-event clips."}, []string{"camera_id"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.Clips, m.ClipBytes, m.BufferBytes} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("recorder: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

// camera is one camera's buffer and captures in progress.
type camera struct {
	cfg    Camera
	buf    *clip.Buffer
	client *rtsp.Client // nil without a record stream
	log    *slog.Logger

	pending []*pending // guarded by Recorder.mu
}

type pending struct {
	alertID string
	at      time.Time
	cap     *clip.Capture
}

// Recorder records the clips of an agent's cameras.
type Recorder struct {
	sink Sink
	m    *Metrics
	log  *slog.Logger
	cams map[string]*camera
	// MaxPending per camera; see DefaultMaxPending.
	maxPending int

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // clip writers
	stop   chan struct{}  // closed by Close: writers stop waiting

	runMu   sync.Mutex
	running bool
	runWG   sync.WaitGroup // record stream clients
	cancel  context.CancelFunc
}

// New validates the cameras and creates their buffers (and the RTSP
// clients of their record streams; nothing is opened until Run). rm are
// the RTSP metrics the record streams report in (stream="record"); m may
// be nil (unregistered metrics).
func New(cams []Camera, sink Sink, m *Metrics, rm *rtsp.Metrics, log *slog.Logger) (*Recorder, error) {
	if sink == nil {
		return nil, errors.New("recorder: a sink is required")
	}
	if m == nil {
		m, _ = NewMetrics(nil)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Recorder{sink: sink, m: m, log: log.With("component", "recorder"), cams: map[string]*camera{},
		maxPending: DefaultMaxPending, stop: make(chan struct{})}
	for _, cc := range cams {
		if err := r.add(cc, rm); err != nil {
			r.Close()
			return nil, err
		}
	}
	return r, nil
}

func (r *Recorder) add(cc Camera, rm *rtsp.Metrics) error {
	if cc.ID == "" {
		return errors.New("recorder: camera ID is required")
	}
	if _, dup := r.cams[cc.ID]; dup {
		return fmt.Errorf("recorder: camera %s listed twice", cc.ID)
	}
	if cc.Pre == 0 {
		cc.Pre = DefaultPre
	}
	if cc.Post == 0 {
		cc.Post = DefaultPost
	}
	if cc.MaxBytes == 0 {
		cc.MaxBytes = DefaultMaxBytes
	}
	if cc.Pre < 0 || cc.Post < 0 {
		return fmt.Errorf("recorder: camera %s: negative pre (%v) or post (%v)", cc.ID, cc.Pre, cc.Post)
	}
	if cc.MaxBytes < 0 || cc.MaxBytes > wire.MaxClipTotalBytes {
		return fmt.Errorf("recorder: camera %s: max bytes %d outside 1..%d", cc.ID, cc.MaxBytes, wire.MaxClipTotalBytes)
	}
	// The buffer keeps the pre window plus what analysis may lag behind; a
	// capture may hold twice the clip limit, so that a clip over it can be
	// shortened around the event rather than simply cut.
	buf, err := clip.NewBuffer(clip.BufferConfig{Pre: cc.Pre + lagMargin, MaxBytes: 2 * cc.MaxBytes})
	if err != nil {
		return fmt.Errorf("recorder: camera %s: %w", cc.ID, err)
	}
	cam := &camera{cfg: cc, buf: buf, log: r.log.With("camera_id", cc.ID)}
	r.cams[cc.ID] = cam
	if cc.Record != "" {
		cam.client, err = rtsp.New(rtsp.Config{
			CameraID: cc.ID, Stream: rtsp.StreamRecord, URL: cc.Record, Transport: cc.Transport,
			StallTimeout: cc.StallTimeout, ReadInterval: cc.ReadInterval, OnAccessUnit: r.pushFunc(cam),
		}, rm, r.log)
		if err != nil {
			return fmt.Errorf("recorder: record stream: %w", err)
		}
	}
	r.m.BufferBytes.WithLabelValues(cc.ID).Set(0)
	for _, res := range []string{ResultComplete, ResultTruncated, ResultShortened, ResultEmpty, ResultFailed} {
		r.m.Clips.WithLabelValues(cc.ID, res)
	}
	return nil
}

// pushFunc returns the function that adds one access unit to cam's buffer.
func (r *Recorder) pushFunc(cam *camera) func(rtsp.AccessUnit) {
	gauge := r.m.BufferBytes.WithLabelValues(cam.cfg.ID)
	n := 0
	return func(au rtsp.AccessUnit) {
		cam.buf.Push(au)
		if n++; n%25 == 0 { // the gauge needs no per-frame precision
			gauge.Set(float64(cam.buf.Stats().Bytes))
		}
	}
}

// Feed returns the function the detect stream's access units go to for a
// camera whose clips are cut from it; nil when the camera has no clips or a
// record stream of its own. The returned function must be called from one
// goroutine at a time, in the order access units arrive.
func (r *Recorder) Feed(cameraID string) func(rtsp.AccessUnit) {
	if r == nil {
		return nil
	}
	cam := r.cams[cameraID]
	if cam == nil || cam.client != nil {
		return nil
	}
	return r.pushFunc(cam)
}

// Records reports whether the recorder makes clips for the camera.
func (r *Recorder) Records(cameraID string) bool {
	return r != nil && r.cams[cameraID] != nil
}

// RequestClip asks for the camera's clip around at, to be published as
// evidence of kind clip for alertID. It returns at once: the pre-event
// video is copied now, the clip is written when the post-event video has
// arrived. A camera without clips is ignored.
func (r *Recorder) RequestClip(cameraID, alertID string, at time.Time) {
	if r == nil {
		return
	}
	cam := r.cams[cameraID]
	if cam == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		r.m.Clips.WithLabelValues(cameraID, ResultRejected).Inc()
		cam.log.Warn("clip requested after the recorder closed", "alert_id", alertID)
		return
	}
	c, err := cam.buf.Capture(at, cam.cfg.Pre, cam.cfg.Post)
	if err != nil {
		r.m.Clips.WithLabelValues(cameraID, ResultRejected).Inc()
		cam.log.Warn("clip not started", "alert_id", alertID, "err", err)
		return
	}
	if len(cam.pending) >= r.maxPending {
		oldest := cam.pending[0]
		cam.log.Warn("too many clips in progress: ending the oldest early", "alert_id", oldest.alertID, "pending", len(cam.pending))
		oldest.cap.Stop()
	}
	p := &pending{alertID: alertID, at: at, cap: c}
	cam.pending = append(cam.pending, p)
	cam.log.Debug("clip requested", "alert_id", alertID, "at", at, "pre", cam.cfg.Pre, "post", cam.cfg.Post)
	r.wg.Go(func() { r.finish(cam, p) })
}

// finish waits for a capture, writes its MP4 and hands it to the sink.
func (r *Recorder) finish(cam *camera, p *pending) {
	defer func() {
		r.mu.Lock()
		for i, q := range cam.pending {
			if q == p {
				cam.pending = append(cam.pending[:i], cam.pending[i+1:]...)
				break
			}
		}
		r.mu.Unlock()
	}()
	// The window ends post after at; a camera that went silent is not
	// waited for much longer than that.
	deadline := time.NewTimer(time.Until(p.at.Add(cam.cfg.Post + overrun)))
	defer deadline.Stop()
	select {
	case <-p.cap.Done():
	case <-deadline.C:
		p.cap.Stop()
	case <-r.stop:
		p.cap.Stop()
	}
	cl, err := p.cap.Wait(context.Background()) // done: returns at once
	if err != nil || len(cl.AUs) == 0 {
		r.m.Clips.WithLabelValues(cam.cfg.ID, ResultEmpty).Inc()
		cam.log.Warn("no video for the clip (is the camera down?)", "alert_id", p.alertID)
		return
	}
	mp4, info, shortened, err := cl.EncodeMP4(cam.cfg.MaxBytes, p.at)
	if err != nil {
		r.m.Clips.WithLabelValues(cam.cfg.ID, ResultFailed).Inc()
		cam.log.Error("clip not written", "alert_id", p.alertID, "err", err)
		return
	}
	if err := r.sink.PublishEvidence(cam.cfg.ID, p.alertID, wire.EvidenceClip, mp4); err != nil {
		r.m.Clips.WithLabelValues(cam.cfg.ID, ResultFailed).Inc()
		cam.log.Error("clip not stored", "alert_id", p.alertID, "err", err)
		return
	}
	result := ResultComplete
	switch {
	case shortened:
		result = ResultShortened
	case cl.Truncated:
		result = ResultTruncated
	}
	r.m.Clips.WithLabelValues(cam.cfg.ID, result).Inc()
	r.m.ClipBytes.Observe(float64(len(mp4)))
	cam.log.Info("clip stored", "alert_id", p.alertID, "result", result, "bytes", len(mp4),
		"duration", info.Duration.Round(time.Millisecond), "frames", info.Frames, "width", info.Width, "height", info.Height)
}

// Run pulls the record streams until ctx ends.
func (r *Recorder) Run(ctx context.Context) error {
	r.runMu.Lock()
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed || r.running {
		r.runMu.Unlock()
		return errors.New("recorder: Run after Close or twice")
	}
	r.running = true
	ctx, cancel := context.WithCancel(ctx)
	r.cancel = cancel
	for _, cam := range r.cams {
		if cam.client == nil {
			continue
		}
		r.runWG.Go(func() {
			if err := cam.client.Run(ctx); err != nil {
				cam.log.Error("record stream", "err", err)
			}
		})
	}
	r.runMu.Unlock()
	<-ctx.Done()
	r.runWG.Wait()
	return nil
}

// Close stops the record streams, ends the clips in progress with what they
// have (they are still published) and waits for them.
func (r *Recorder) Close() error {
	r.runMu.Lock()
	if r.cancel != nil {
		r.cancel()
	}
	r.runMu.Unlock()
	r.runWG.Wait()

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.stop)
	r.mu.Unlock()
	r.wg.Wait()
	for _, cam := range r.cams {
		if cam.client != nil {
			_ = cam.client.Close()
		}
		_ = cam.buf.Close()
	}
	return nil
}
