package camsim

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
)

const (
	clockRate = 90000 // H.264 RTP clock == MPEG-TS clock, no conversion needed
	// defaultFrameTicks is used as frame duration when it can't be measured.
	defaultFrameTicks = clockRate / 25
	// maxLag: if pacing falls this far behind the wall clock (e.g. the
	// process was suspended), re-anchor instead of bursting to catch up.
	maxLag = time.Second
)

// streamer reads one transcoded MPEG-TS file in a loop and writes it, paced
// in real time, to a ServerStream.
type streamer struct {
	id     string
	info   *mediaInfo
	stream *gortsplib.ServerStream
	media  *description.Media
	format *format.H264
	fault  func() Fault
	log    *slog.Logger

	enc     *rtph264.Encoder
	rtpBase uint32 // random initial RTP timestamp

	// timeline, in 90 kHz ticks since the first frame ever sent
	loopOffset  int64 // ticks at which the current loop's first frame is placed
	frameTicks  int64 // last measured frame duration
	anchorWall  time.Time
	anchorTicks int64
	anchored    bool
}

// errStop aborts a read loop when the context is cancelled.
var errStop = errors.New("stop")

func newStreamer(id string, info *mediaInfo, stream *gortsplib.ServerStream, fault func() Fault, log *slog.Logger) (*streamer, error) {
	medi := stream.Desc.Medias[0]
	forma, ok := medi.Formats[0].(*format.H264)
	if !ok {
		return nil, fmt.Errorf("camera %q: unexpected format %T", id, medi.Formats[0])
	}
	enc, err := forma.CreateEncoder()
	if err != nil {
		return nil, fmt.Errorf("camera %q: RTP encoder: %w", id, err)
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("camera %q: random: %w", id, err)
	}
	ft := int64(defaultFrameTicks)
	if info.fps > 0 {
		ft = int64(float64(clockRate)/info.fps + 0.5)
	}
	return &streamer{
		id:         id,
		info:       info,
		stream:     stream,
		media:      medi,
		format:     forma,
		fault:      fault,
		log:        log,
		enc:        enc,
		rtpBase:    binary.BigEndian.Uint32(b[:]),
		frameTicks: ft,
	}, nil
}

// run streams until ctx is cancelled (returns nil) or a fatal error occurs.
func (s *streamer) run(ctx context.Context) error {
	s.log.Info("streaming started", "file", s.info.tsPath)
	defer s.log.Info("streaming stopped")
	for loop := 1; ; loop++ {
		n, lastDTS, err := s.playOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("camera %q: %w", s.id, err)
		}
		if n == 0 {
			return fmt.Errorf("camera %q: no H.264 frames in %q", s.id, s.info.tsPath)
		}
		// next loop starts one frame after the last frame of this one,
		// so RTP timestamps stay monotonic.
		s.loopOffset += lastDTS + s.frameTicks
		s.log.Debug("end of file, looping", "loop", loop, "frames", n)
	}
}

// playOnce sends the whole file once. It returns the number of access units
// sent and the DTS of the last one relative to the first one.
func (s *streamer) playOnce(ctx context.Context) (int, int64, error) {
	f, err := os.Open(s.info.tsPath)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()

	r := &mpegts.Reader{R: bufio.NewReaderSize(f, 64*1024)}
	if err := r.Initialize(); err != nil {
		return 0, 0, fmt.Errorf("read MPEG-TS: %w", err)
	}
	track := findH264Track(r)
	if track == nil {
		return 0, 0, errors.New("no H.264 track in MPEG-TS")
	}
	r.OnDecodeError(func(err error) {
		s.log.Debug("MPEG-TS decode error", "error", err)
	})

	var (
		ptsDec, dtsDec mpegts.TimeDecoder
		first          = true
		firstDTS       int64
		prevDTS        int64
		n              int
	)
	ptsDec.Initialize()
	dtsDec.Initialize()

	r.OnDataH264(track, func(rawPTS, rawDTS int64, au [][]byte) error {
		pts, dts := ptsDec.Decode(rawPTS), dtsDec.Decode(rawDTS)
		if first {
			first = false
			firstDTS = dts
		} else if d := dts - firstDTS - prevDTS; d > 0 {
			s.frameTicks = d
		}
		relDTS := dts - firstDTS
		prevDTS = relDTS

		dtsTicks := s.loopOffset + relDTS
		ptsTicks := s.loopOffset + (pts - firstDTS)

		wall, err := s.pace(ctx, dtsTicks)
		if err != nil {
			return err
		}
		ntp := wall.Add(ticksToDuration(ptsTicks - dtsTicks))
		if err := s.write(au, ptsTicks, ntp); err != nil {
			return err
		}
		n++
		return nil
	})

	for {
		err := r.Read()
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			return n, prevDTS, nil
		case errors.Is(err, errStop):
			return n, prevDTS, nil
		default:
			return n, prevDTS, err
		}
	}
}

// pace waits until the wall-clock instant of the frame at ticks and returns it.
func (s *streamer) pace(ctx context.Context, ticks int64) (time.Time, error) {
	now := time.Now()
	if !s.anchored {
		s.anchored = true
		s.anchorWall, s.anchorTicks = now, ticks
	}
	target := s.anchorWall.Add(ticksToDuration(ticks - s.anchorTicks))
	if lag := now.Sub(target); lag > maxLag {
		s.log.Warn("streaming fell behind real time, re-anchoring", "lag", lag.Round(time.Millisecond))
		s.anchorWall, s.anchorTicks = now, ticks
		return now, nil
	}
	if wait := target.Sub(now); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return time.Time{}, errStop
		case <-t.C:
		}
	} else if ctx.Err() != nil {
		return time.Time{}, errStop
	}
	return target, nil
}

// write packetizes one access unit and hands it to the stream.
func (s *streamer) write(au [][]byte, ptsTicks int64, ntp time.Time) error {
	fault := s.fault()
	if fault == FaultStall || fault == FaultStop {
		return nil // the timeline goes on; nothing is sent
	}
	au = withParams(au, s.info.sps, s.info.pps)
	pkts, err := s.enc.Encode(au)
	if err != nil {
		return fmt.Errorf("RTP encode: %w", err)
	}
	if fault == FaultBadRTP {
		for _, p := range pkts {
			_, _ = rand.Read(p.Payload)
		}
	}
	ts := uint32(int64(s.rtpBase) + ptsTicks) // wraps modulo 2^32, as RTP expects
	for _, p := range pkts {
		p.Timestamp = ts
		if err := s.stream.WritePacketRTPWithNTP(s.media, p, ntp); err != nil {
			return fmt.Errorf("write RTP: %w", err)
		}
	}
	return nil
}

// withParams prepends SPS and PPS to IDR access units that lack them, so a
// client joining mid-stream can start decoding at any IDR.
func withParams(au [][]byte, sps, pps []byte) [][]byte {
	idr, hasSPS, hasPPS := false, false, false
	for _, nalu := range au {
		if len(nalu) == 0 {
			continue
		}
		switch h264.NALUType(nalu[0] & 0x1f) {
		case h264.NALUTypeIDR:
			idr = true
		case h264.NALUTypeSPS:
			hasSPS = true
		case h264.NALUTypePPS:
			hasPPS = true
		}
	}
	if !idr || (hasSPS && hasPPS) {
		return au
	}
	out := make([][]byte, 0, len(au)+2)
	if !hasSPS {
		out = append(out, sps)
	}
	if !hasPPS {
		out = append(out, pps)
	}
	return append(out, au...)
}

// ticksToDuration converts 90 kHz ticks to a Duration without overflowing
// for long-running streams.
func ticksToDuration(t int64) time.Duration {
	return time.Duration(t/clockRate)*time.Second + time.Duration(t%clockRate)*time.Second/clockRate
}
