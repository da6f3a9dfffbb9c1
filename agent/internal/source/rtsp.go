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
	if r.dec == nil || r.dec.Codec() != au.Codec {
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
	// Every access unit is decoded (the next ones depend on it), but only
	// those analysis will take are converted to BGR pictures, at the
	// analysis width.
	want := r.lastOut.IsZero() || au.Wall.Sub(r.lastOut) >= r.interval-5*time.Millisecond
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
	r.rateN++
	if el := time.Since(r.rateAt); el >= 5*time.Second {
		s.mu.Lock()
		s.fps = float64(r.rateN) / el.Seconds()
		s.mu.Unlock()
		r.rateAt, r.rateN = time.Now(), 0
	}
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
