// Package rtsp pulls H.264 and H.265 video from a camera over RTSP (or
// RTSPS) with gortsplib and hands every access unit to a callback.
//
// A Client keeps one camera connected: it reconnects with jittered
// exponential backoff after errors, tears the session down when no access
// unit arrives for the stall timeout, and, with Transport "auto", falls back
// between TCP and UDP when the server answers 461 Unsupported Transport.
// Anything the server sends — garbage, a bad SDP, broken RTP — ends up as a
// logged, counted error and a reconnect, never as a crash.
//
// Lifecycle: New (validates) → Run(ctx) (connects and reconnects until ctx
// ends) → Close.
package rtsp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph265"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"
	"github.com/pion/rtp"
)

// Transports.
const (
	TransportTCP  = "tcp"  // RTP interleaved in the RTSP connection (the default)
	TransportUDP  = "udp"  // RTP and RTCP over UDP
	TransportAuto = "auto" // TCP first; UDP when the server refuses TCP with 461, and vice versa
)

// Defaults.
const (
	DefaultReadTimeout  = 10 * time.Second
	DefaultStallTimeout = 10 * time.Second
	DefaultReconnectMin = time.Second
	// MaxReconnectDelay caps ReconnectMax.
	MaxReconnectDelay = 30 * time.Second
)

// Errors.
var (
	// ErrClosed is returned by Run after Close.
	ErrClosed = errors.New("rtsp: client closed")
	// ErrStalled ends a session in which no access unit arrived for the
	// stall timeout.
	ErrStalled = errors.New("rtsp: no access unit within the stall timeout")
	// ErrNoVideo is returned when the SDP offers no H.264 or H.265 video.
	ErrNoVideo = errors.New("rtsp: the stream has no H.264 or H.265 video media")
)

// Config configures a Client.
type Config struct {
	// CameraID labels metrics and logs. Required.
	CameraID string
	// Stream labels metrics and logs: StreamDetect (the default) or
	// StreamRecord.
	Stream string
	// URL is rtsp:// or rtsps://; credentials in the URL
	// (rtsp://user:pass@host/path) are used for basic or digest auth.
	URL string
	// Transport is "tcp" (default), "udp" or "auto".
	Transport string
	// ReadTimeout bounds every RTSP request and, once playing, the silence
	// gortsplib tolerates on the connection. Default 10 s.
	ReadTimeout time.Duration
	// StallTimeout: when no access unit arrives for this long after PLAY the
	// session is torn down and the client reconnects. Default 10 s.
	StallTimeout time.Duration
	// ReconnectMin is the first reconnect delay (default 1 s); it doubles
	// after every failed attempt up to ReconnectMax (default and at most
	// 30 s). Each delay is jittered to between half and all of its value.
	// The delay returns to ReconnectMin after a session that delivered video.
	ReconnectMin time.Duration
	ReconnectMax time.Duration
	// TLSConfig is used for rtsps:// (nil: system roots, host name checked).
	TLSConfig *tls.Config

	// OnAccessUnit receives every access unit, in order, from one goroutine
	// at a time. It runs on the network reader: it must return quickly
	// (hand heavy work to a bounded queue). May be nil.
	OnAccessUnit func(AccessUnit)
	// OnState is called with up=true when a session delivers its first
	// access unit, and with up=false and the reason after every failed
	// attempt or lost session (err is nil when Run ends because its
	// context ended). Calls never overlap. May be nil.
	OnState func(up bool, err error)
	// ReadInterval, when positive, makes the client read a TCP session in
	// batches once it plays: it sleeps this long, then takes everything
	// buffered, instead of waking for every packet. That costs up to this
	// much latency and saves much of the CPU a camera's stream takes on
	// small boxes (see pacedConn). 0 reads packets as they arrive; at most
	// MaxReadInterval. RTP over UDP is always read as it arrives.
	ReadInterval time.Duration
}

// MaxReadInterval caps Config.ReadInterval.
const MaxReadInterval = time.Second

func (cfg Config) withDefaults() Config {
	if cfg.Transport == "" {
		cfg.Transport = TransportTCP
	}
	if cfg.Stream == "" {
		cfg.Stream = StreamDetect
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	if cfg.ReconnectMin <= 0 {
		cfg.ReconnectMin = DefaultReconnectMin
	}
	if cfg.ReconnectMax <= 0 || cfg.ReconnectMax > MaxReconnectDelay {
		cfg.ReconnectMax = MaxReconnectDelay
	}
	cfg.ReconnectMin = min(cfg.ReconnectMin, cfg.ReconnectMax)
	return cfg
}

// Client pulls one camera's video.
type Client struct {
	cfg      Config
	u        *base.URL
	redacted string // the URL without the password, for logs
	log      *slog.Logger
	m        *cameraMetrics

	mu      sync.Mutex
	running bool
	closed  bool
	cancel  context.CancelFunc
	done    chan struct{} // closed when Run returns

	stateMu sync.Mutex // serializes OnState; guards up
	up      bool

	// Owned by the Run goroutine.
	preferred gortsplib.Protocol // first protocol tried with TransportAuto
	sessions  uint64
}

// New validates cfg. Nothing is opened until Run. m may be nil (metrics
// are then kept but not registered anywhere); log may be nil.
func New(cfg Config, m *Metrics, log *slog.Logger) (*Client, error) {
	cfg = cfg.withDefaults()
	if cfg.CameraID == "" {
		return nil, errors.New("rtsp: camera ID is required")
	}
	u, err := base.ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("rtsp: camera %s: invalid URL: %w", cfg.CameraID, redactErr(err))
	}
	if u.Scheme != "rtsp" && u.Scheme != "rtsps" {
		return nil, fmt.Errorf("rtsp: camera %s: URL scheme %q is not rtsp or rtsps", cfg.CameraID, u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("rtsp: camera %s: URL has no host", cfg.CameraID)
	}
	switch cfg.Transport {
	case TransportTCP, TransportUDP, TransportAuto:
	default:
		return nil, fmt.Errorf("rtsp: camera %s: transport %q is not tcp, udp or auto", cfg.CameraID, cfg.Transport)
	}
	if cfg.Stream != StreamDetect && cfg.Stream != StreamRecord {
		return nil, fmt.Errorf("rtsp: camera %s: stream %q is not %s or %s", cfg.CameraID, cfg.Stream, StreamDetect, StreamRecord)
	}
	if cfg.ReadInterval < 0 || cfg.ReadInterval > MaxReadInterval {
		return nil, fmt.Errorf("rtsp: camera %s: read interval %v is not between 0 and %v", cfg.CameraID, cfg.ReadInterval, MaxReadInterval)
	}
	if m == nil {
		m, _ = NewMetrics(nil) // never fails without a registry
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	redacted := (*url.URL)(u).Redacted()
	return &Client{
		cfg:       cfg,
		u:         u,
		redacted:  redacted,
		log:       log.With("component", "rtsp", "camera_id", cfg.CameraID, "stream", cfg.Stream),
		m:         m.forCamera(cfg.CameraID, cfg.Stream),
		done:      make(chan struct{}),
		preferred: gortsplib.ProtocolTCP,
	}, nil
}

// redactErr drops the URL (which may hold a password) from a URL parsing
// error, keeping only what is wrong with it.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Run connects and keeps the camera connected until ctx ends; it then
// returns nil. It may be called once.
func (c *Client) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	if c.running {
		c.mu.Unlock()
		return errors.New("rtsp: Run called twice")
	}
	c.running = true
	ctx, cancel := context.WithCancel(ctx)
	c.cancel = cancel
	c.mu.Unlock()
	defer close(c.done)
	defer cancel()

	c.log.Info("rtsp client starting", "url", c.redacted, "transport", c.cfg.Transport)
	backoff := c.cfg.ReconnectMin
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			c.m.reconnects.Inc()
		}
		delivered, err := c.session(ctx)
		if ctx.Err() != nil {
			c.setDown(nil)
			c.log.Info("rtsp client stopped")
			return nil
		}
		c.setDown(err)
		if delivered {
			backoff = c.cfg.ReconnectMin
		}
		wait := jitter(backoff)
		c.log.Warn("rtsp session ended; reconnecting", "error", err, "in", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			c.log.Info("rtsp client stopped")
			return nil
		case <-t.C:
		}
		backoff = min(backoff*2, c.cfg.ReconnectMax)
	}
}

// jitter returns a delay between d/2 and d.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1) // #nosec G404 -- reconnect jitter, not a secret
}

// Close stops Run and waits for it to return. It is safe to call more than
// once, and without Run.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	running := c.running
	if c.cancel != nil {
		c.cancel()
	}
	c.mu.Unlock()
	if running {
		<-c.done
	}
	return nil
}

func (c *Client) setUp(s *stream) {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	if s.ended || c.up {
		return
	}
	c.up = true
	c.m.up.Set(1)
	c.log.Info("stream up", "session", s.session, "transport", s.proto.String())
	if c.cfg.OnState != nil {
		c.cfg.OnState(true, nil)
	}
}

func (c *Client) setDown(err error) {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	wasUp := c.up
	c.up = false
	c.m.up.Set(0)
	if err == nil && !wasUp {
		return
	}
	if c.cfg.OnState != nil {
		c.cfg.OnState(false, err)
	}
}

// protocols returns the transports to try, in order.
func (c *Client) protocols() []gortsplib.Protocol {
	switch c.cfg.Transport {
	case TransportUDP:
		return []gortsplib.Protocol{gortsplib.ProtocolUDP}
	case TransportAuto:
		if c.preferred == gortsplib.ProtocolUDP {
			return []gortsplib.Protocol{gortsplib.ProtocolUDP, gortsplib.ProtocolTCP}
		}
		return []gortsplib.Protocol{gortsplib.ProtocolTCP, gortsplib.ProtocolUDP}
	}
	return []gortsplib.Protocol{gortsplib.ProtocolTCP}
}

// session runs one connection: DESCRIBE, SETUP, PLAY, then reading until
// an error, a stall or the end of ctx. delivered reports whether any access
// unit arrived.
func (c *Client) session(ctx context.Context) (delivered bool, err error) {
	protos := c.protocols()
	for i, proto := range protos {
		c.sessions++
		s := &stream{c: c, session: c.sessions, proto: proto, fatal: make(chan error, 1)}
		delivered, err = s.run(ctx)
		if ctx.Err() != nil {
			return delivered, nil
		}
		if c.cfg.Transport == TransportAuto {
			switch {
			case delivered:
				c.preferred = proto
			case proto == gortsplib.ProtocolUDP && s.played:
				// UDP played but nothing came through (a firewall, NAT):
				// start with TCP next time.
				c.preferred = gortsplib.ProtocolTCP
			}
		}
		if s.refused && i+1 < len(protos) {
			c.log.Info("server refused transport; trying the next one",
				"refused", proto.String(), "next", protos[i+1].String())
			continue
		}
		return delivered, err
	}
	return delivered, err
}

// stream is one RTSP session.
type stream struct {
	c       *Client
	session uint64
	proto   gortsplib.Protocol
	fatal   chan error // first fatal error from the packet handler
	refused bool       // SETUP was answered with 461 Unsupported Transport
	played  bool       // PLAY succeeded

	// Set before PLAY, then used by the packet handler only.
	codec   string
	builder auBuilder
	decode  func(*rtp.Packet) ([][]byte, error)

	gc        *gortsplib.Client
	lastAU    atomic.Int64 // unix nanoseconds of the last access unit (or of PLAY)
	delivered atomic.Bool
	paced     atomic.Bool // read the connection in batches (pacedConn)
	wall      wallClock   // access units' wall-clock times, from their PTS
	ended     bool        // guarded by c.stateMu: no more callbacks
}

func (s *stream) run(ctx context.Context) (bool, error) {
	c := s.c
	proto := s.proto
	s.gc = &gortsplib.Client{
		Scheme:       s.c.u.Scheme,
		Host:         s.c.u.Host,
		Protocol:     &proto,
		ReadTimeout:  c.cfg.ReadTimeout,
		WriteTimeout: c.cfg.ReadTimeout,
		TLSConfig:    c.cfg.TLSConfig,
		DialContext:  pacedDialer(c.cfg.ReadInterval, &s.paced),
		OnTransportSwitch: func(err error) {
			c.log.Info("transport switch", "reason", err)
		},
		OnPacketsLost: func(lost uint64) {
			c.m.packetsLost.Add(float64(lost))
		},
		OnDecodeError: func(err error) {
			c.m.error(errKindRTP)
			c.log.Debug("rtsp decode error", "error", err)
		},
	}
	if err := s.gc.Start(); err != nil {
		c.m.error(errKindConnect)
		return false, fmt.Errorf("rtsp: start: %w", err)
	}
	// Close the connection when ctx ends, so blocking requests return.
	ctxClosed := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(ctxClosed)
		s.gc.Close()
	})
	defer func() {
		if !stop() {
			<-ctxClosed
		}
		s.gc.Close()
		c.stateMu.Lock()
		s.ended = true
		c.stateMu.Unlock()
	}()

	if err := s.setup(); err != nil {
		return false, err
	}
	if _, err := s.gc.Play(nil); err != nil {
		c.m.error(errKindPlay)
		return false, fmt.Errorf("rtsp: PLAY: %w", err)
	}
	s.played = true
	s.paced.Store(proto == gortsplib.ProtocolTCP) // RTP comes in the RTSP connection
	c.log.Info("playing", "session", s.session, "transport", proto.String(), "codec", s.codec)
	s.lastAU.Store(time.Now().UnixNano())

	waitErr := make(chan error, 1)
	go func() { waitErr <- s.gc.Wait() }() // ends when gc closes; joined below

	period := min(max(c.cfg.StallTimeout/4, 20*time.Millisecond), time.Second)
	tick := time.NewTicker(period)
	defer tick.Stop()
	var err error
	for err == nil {
		select {
		case werr := <-waitErr:
			if ctx.Err() != nil {
				return s.delivered.Load(), nil
			}
			c.m.error(errKindStream)
			return s.delivered.Load(), fmt.Errorf("rtsp: session ended: %w", werr)
		case err = <-s.fatal:
		case <-tick.C:
			if since := time.Since(time.Unix(0, s.lastAU.Load())); since >= c.cfg.StallTimeout {
				c.m.stalls.Inc()
				c.m.error(errKindStall)
				err = fmt.Errorf("%w (%s)", ErrStalled, since.Round(time.Millisecond))
			}
		}
	}
	s.gc.Close()
	<-waitErr
	return s.delivered.Load(), err
}

// setup sends DESCRIBE and SETUP for the first H.264/H.265 video media.
func (s *stream) setup() error {
	c := s.c
	desc, _, err := s.gc.Describe(s.c.u)
	if err != nil {
		var sdpErr liberrors.ErrClientSDPInvalid
		if errors.As(err, &sdpErr) {
			c.m.error(errKindSDP)
			return fmt.Errorf("rtsp: DESCRIBE: invalid SDP: %w", err)
		}
		c.m.error(errKindConnect)
		return fmt.Errorf("rtsp: DESCRIBE: %w", err)
	}
	tr, err := videoTrack(desc)
	if err != nil {
		c.m.error(errKindSDP)
		return err
	}
	medi, forma := tr.media, tr.format
	s.codec = tr.codec
	s.decode = tr.decode
	s.builder.setInitial(tr.codec, tr.params)
	if w, h, ok := s.builder.params.Resolution(s.codec); ok {
		c.log.Debug("SDP parameter sets", "codec", s.codec, "width", w, "height", h)
	}

	if _, err := s.gc.Setup(desc.BaseURL, medi, 0, 0); err != nil {
		var bad liberrors.ErrClientBadStatusCode
		if errors.As(err, &bad) && bad.Code == base.StatusUnsupportedTransport {
			s.refused = true
		}
		c.m.error(errKindSetup)
		return fmt.Errorf("rtsp: SETUP (%s): %w", s.proto.String(), err)
	}
	s.gc.OnPacketRTP(medi, forma, func(pkt *rtp.Packet) { s.onPacket(medi, pkt) })
	return nil
}

// track is the video media of a session the client reads, with what the
// SDP says about it.
type track struct {
	media  *description.Media
	format format.Format
	codec  string // CodecH264 or CodecH265
	params *ParamSets
	decode func(*rtp.Packet) ([][]byte, error)
}

// videoTrack picks the first H.264 or H.265 video media of a session
// description and prepares its RTP depacketizer and parameter sets.
func videoTrack(desc *description.Session) (track, error) {
	medi, forma := pickVideo(desc)
	if medi == nil {
		return track{}, fmt.Errorf("%w (%d media)", ErrNoVideo, len(desc.Medias))
	}
	tr := track{media: medi, format: forma}
	switch f := forma.(type) {
	case *format.H264:
		dec, err := f.CreateDecoder()
		if err != nil {
			return track{}, fmt.Errorf("rtsp: H.264 RTP decoder: %w", err)
		}
		tr.codec, tr.decode = CodecH264, dec.Decode
		sps, pps := f.SafeParams()
		tr.params = &ParamSets{SPS: sps, PPS: pps}
	case *format.H265:
		dec, err := f.CreateDecoder()
		if err != nil {
			return track{}, fmt.Errorf("rtsp: H.265 RTP decoder: %w", err)
		}
		tr.codec, tr.decode = CodecH265, dec.Decode
		vps, sps, pps := f.SafeParams()
		tr.params = &ParamSets{VPS: vps, SPS: sps, PPS: pps}
	}
	return tr, nil
}

// pickVideo returns the first video media with an H.264 or H.265 format.
func pickVideo(desc *description.Session) (*description.Media, format.Format) {
	for _, m := range desc.Medias {
		if m == nil || m.IsBackChannel {
			continue
		}
		for _, f := range m.Formats {
			switch f.(type) {
			case *format.H264, *format.H265:
				return m, f
			}
		}
	}
	return nil, nil
}

// onPacket handles one RTP packet of the video media. It runs on
// gortsplib's reader goroutine.
func (s *stream) onPacket(medi *description.Media, pkt *rtp.Packet) {
	c := s.c
	defer func() {
		if r := recover(); r != nil {
			c.m.error(errKindPanic)
			c.log.Error("panic while handling an RTP packet", "panic", r, "stack", string(debug.Stack()))
			select {
			case s.fatal <- fmt.Errorf("rtsp: panic while handling an RTP packet: %v", r):
			default:
			}
		}
	}()
	c.m.bytesIn.Add(float64(pkt.MarshalSize()))

	pts, ok := s.gc.PacketPTS(medi, pkt)
	if !ok {
		return // no timing yet: waiting for a random access point
	}
	nalus, err := s.decode(pkt)
	if err != nil {
		if !errors.Is(err, rtph264.ErrMorePacketsNeeded) && !errors.Is(err, rtph264.ErrNonStartingPacketAndNoPrevious) &&
			!errors.Is(err, rtph265.ErrMorePacketsNeeded) && !errors.Is(err, rtph265.ErrNonStartingPacketAndNoPrevious) {
			c.m.error(errKindRTP)
			c.log.Debug("RTP depacketization error", "error", err)
		}
		return
	}
	if len(nalus) == 0 {
		return
	}
	au, changed := s.builder.build(nalus)
	if len(au.NALUs) == 0 {
		return
	}
	now := time.Now()
	au.PTS = ticksToDuration(pts, 90000)
	au.Wall = s.wall.at(au.PTS, now, c.cfg.ReadInterval+time.Second)
	au.Session = s.session
	if changed {
		w, h, _ := au.Params.Resolution(s.codec)
		c.log.Info("parameter sets changed", "codec", s.codec, "width", w, "height", h)
	}

	s.lastAU.Store(now.UnixNano())
	c.m.accessUnits.Inc()
	if !s.delivered.Swap(true) {
		c.setUp(s)
	}
	if cb := c.cfg.OnAccessUnit; cb != nil {
		cb(au)
	}
}

// ticksToDuration converts clock ticks to a Duration without overflow.
func ticksToDuration(t int64, clockRate int64) time.Duration {
	return time.Duration(t/clockRate)*time.Second + time.Duration(t%clockRate)*time.Second/time.Duration(clockRate)
}

// wallClock gives access units wall-clock times from their presentation
// times, anchored at a receipt time: access units read in batches (or
// delayed by the network) arrive in bursts, but the camera's clock spaces
// them as they were captured. The mapping is re-anchored to the receipt
// time whenever it would put an access unit in the future (the earliest
// arrival wins, as in NTP's minimum filter) or more than maxLag in the past
// (a PTS jump, a looping source, a camera clock slower than ours).
type wallClock struct {
	wall time.Time
	pts  time.Duration
	set  bool
}

func (w *wallClock) at(pts time.Duration, now time.Time, maxLag time.Duration) time.Time {
	if w.set {
		t := w.wall.Add(pts - w.pts)
		if !t.After(now) && now.Sub(t) <= maxLag {
			return t
		}
	}
	w.wall, w.pts, w.set = now, pts, true
	return now
}
