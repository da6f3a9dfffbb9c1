package source

import (
	"context"
	"errors"
	"time"

	"github.com/xueliang/xl/agent/internal/decode"
	"github.com/xueliang/xl/agent/internal/rtsp"
)

// rtspReader is the state of one RTSP source while it runs; its methods are
// called from the rtsp client's reader goroutine, one at a time.
type rtspReader struct {
	s        *Source
	dec      *decode.Decoder
	interval time.Duration
	lastOut  time.Time
	seq      uint64
	rateN    int
	rateAt   time.Time

	// Access units not analysed, in order, waiting to be decoded when a
	// later analysed one needs them.
	pending      []rtsp.AccessUnit
	pendingBytes int
}

func (s *Source) runRTSP(ctx context.Context) error {
	r := &rtspReader{s: s, interval: time.Duration(float64(time.Second) / s.cfg.FPS), rateAt: time.Now()}
	client, err := rtsp.New(rtsp.Config{
		CameraID: s.cameraID, URL: s.cfg.URL, Transport: s.cfg.Transport,
		StallTimeout: s.cfg.StallTimeout, ReconnectMin: s.cfg.ReconnectMin, ReconnectMax: s.cfg.ReconnectMax,
		OnAccessUnit: r.onAccessUnit,
		OnState:      r.onState,
		ReadInterval: s.cfg.ReadInterval,
	}, s.m.RTSP, s.log)
	if err != nil {
		return err
	}
	err = client.Run(ctx)
	client.Close()
	if r.dec != nil {
		r.dec.Close()
	}
	s.setState(StateDown)
	if ctx.Err() != nil || errors.Is(err, rtsp.ErrClosed) {
		return nil
	}
	return err
}

func (r *rtspReader) onState(up bool, err error) {
	s := r.s
	if up {
		return // streaming is declared on the first decoded frame
	}
	if st, _ := s.State(); st == StateStreaming {
		s.cm.reconnects.Inc()
	}
	if err != nil {
		s.log.Warn("stream down", "err", err)
	}
	s.setState(StateDown)
}

func (r *rtspReader) onAccessUnit(au rtsp.AccessUnit) {
	s := r.s
	if s.cfg.OnAccessUnit != nil {
		s.cfg.OnAccessUnit(au)
	}
	r.rateN++
	if el := time.Since(r.rateAt); el >= 5*time.Second {
		s.mu.Lock()
		s.fps = float64(r.rateN) / el.Seconds()
		s.mu.Unlock()
		r.rateAt, r.rateN = time.Now(), 0
	}
	if r.dec == nil || r.dec.Codec() != au.Codec {
		r.dropPending()
		if r.dec != nil {
			r.dec.Close()
		}
		var opts []decode.Option
		if s.cfg.KeyframeOnly {
			opts = append(opts, decode.KeyframeOnly())
		}
		dec, err := decode.New(au.Codec, opts...)
		if err != nil {
			s.cm.decodeErrors.Inc()
			s.log.Error("decoder", "codec", au.Codec, "err", err)
			return
		}
		r.dec = dec
	}
	if s.cfg.KeyframeOnly && !au.KeyFrame {
		s.cm.notDecoded.Inc()
		return
	}
	// Only the access units analysis takes are converted to pictures, at
	// the analysis width. The others are decoded only when a later one
	// needs them as references: until then they wait, and an IDR key frame
	// (which nothing after it may reference across) discards those still
	// waiting, so the frames after the last analysed one of a GOP are never
	// decoded.
	want := r.lastOut.IsZero() || au.Wall.Sub(r.lastOut) >= r.interval-5*time.Millisecond
	if s.cfg.KeyframeOnly && !want {
		s.cm.notDecoded.Inc() // key frames need no other frames
		return
	}
	if resetsReferences(au) || (len(r.pending) > 0 && r.pending[0].Session != au.Session) {
		r.dropPending() // (a new connection starts over too)
	}
	if !want {
		r.hold(au)
		return
	}
	for _, p := range r.pending {
		r.decode(p, false)
	}
	r.clearPending()
	r.decode(au, true)
}

// Bounds of the access units waiting to be decoded (a long GOP at a low
// analysis rate): beyond them the oldest is decoded at once.
const (
	maxPending      = 250
	maxPendingBytes = 16 << 20
)

// hold keeps au until a later analysed access unit needs it.
func (r *rtspReader) hold(au rtsp.AccessUnit) {
	r.pending = append(r.pending, au)
	r.pendingBytes += au.Size()
	for len(r.pending) > maxPending || (r.pendingBytes > maxPendingBytes && len(r.pending) > 1) {
		r.decode(r.pending[0], false)
		r.pendingBytes -= r.pending[0].Size()
		r.pending[0] = rtsp.AccessUnit{}
		r.pending = r.pending[1:]
	}
}

// dropPending discards the waiting access units: nothing needs them.
func (r *rtspReader) dropPending() {
	r.s.cm.notDecoded.Add(float64(len(r.pending)))
	r.clearPending()
}

func (r *rtspReader) clearPending() {
	clear(r.pending)
	r.pending, r.pendingBytes = r.pending[:0], 0
}

// resetsReferences reports whether au is a picture that no later picture
// may reference across: an H.264 IDR, an H.265 IDR or BLA. (An H.265 CRA
// is not: the RASL pictures after it may reference pictures before it.)
func resetsReferences(au rtsp.AccessUnit) bool {
	if !au.KeyFrame {
		return false
	}
	for _, n := range au.NALUs {
		if len(n) == 0 {
			continue
		}
		switch au.Codec {
		case decode.CodecH264:
			if n[0]&0x1f == 5 {
				return true
			}
		case decode.CodecH265:
			if t := (n[0] >> 1) & 0x3f; t >= 16 && t <= 20 {
				return true
			}
		}
	}
	return false
}

// decode decodes au, as the picture to analyse when want is true.
func (r *rtspReader) decode(au rtsp.AccessUnit, want bool) {
	s := r.s
	start := time.Now()
	var pic *decode.Picture
	var ok bool
	var err error
	if want {
		pic, ok, err = r.dec.DecodePicture(au.NALUs, au.PTS, s.cfg.Width)
	} else {
		err = r.dec.Skip(au.NALUs, au.PTS)
	}
	s.cm.decodeSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		s.cm.decodeErrors.Inc()
		s.log.Debug("access unit not decoded", "err", err)
		return
	}
	s.cm.lastFrame.Set(float64(au.Wall.UnixNano()) / 1e9)
	s.clock.frame(au.Wall)
	s.cm.decoded.Inc()
	if !ok {
		return
	}
	if st, _ := s.State(); st != StateStreaming {
		s.setState(StateStreaming)
		s.log.Info("first frame", "codec", au.Codec, "width", pic.Size().X, "height", pic.Size().Y)
	}
	r.seq++
	r.lastOut = au.Wall
	if s.q.Push(Frame{Pic: pic, At: au.Wall, Seq: r.seq}) {
		s.cm.dropped.Inc()
	}
	s.cm.queued.Inc()
}
