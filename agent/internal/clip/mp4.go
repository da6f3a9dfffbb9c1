package clip

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/pmp4"

	"github.com/xueliang/xl/agent/internal/rtsp"
)

const timeScale = 90000 // the RTP clock of H.264/H.265

// ErrEmpty is returned when a clip has no access unit to write.
var ErrEmpty = errors.New("clip: no video in the clip")

// MP4Info describes a written MP4.
type MP4Info struct {
	Codec     string
	Width     int
	Height    int
	Frames    int
	KeyFrames int
	Duration  time.Duration
	Bytes     int64
	// Cut is true when the parameter sets (and so possibly the resolution)
	// changed inside the clip: the MP4 ends before the change.
	Cut bool
}

// WriteMP4 writes the clip as a progressive MP4 (ftyp, moov, mdat) with
// one video track holding the access units as received: no re-encoding.
func (c *Clip) WriteMP4(w io.Writer) (MP4Info, error) {
	aus := c.AUs
	if len(aus) == 0 {
		return MP4Info{}, ErrEmpty
	}
	first := aus[0]
	if !first.KeyFrame {
		return MP4Info{}, errors.New("clip: the clip does not start at a key frame")
	}
	codec := first.Codec
	params := paramsOf(first)
	if !params.Complete(codec) {
		return MP4Info{}, fmt.Errorf("clip: no complete %s parameter sets at the first key frame", codec)
	}
	info := MP4Info{Codec: codec}
	info.Width, info.Height, _ = params.Resolution(codec)

	var track pmp4.Track
	track.ID, track.TimeScale = 1, timeScale
	var extract func([][]byte, int64) (int64, error)
	switch codec {
	case rtsp.CodecH264:
		track.Codec = &codecs.H264{SPS: params.SPS, PPS: params.PPS}
		var ex h264.DTSExtractor
		ex.Initialize()
		extract = ex.Extract
	case rtsp.CodecH265:
		track.Codec = &codecs.H265{VPS: params.VPS, SPS: params.SPS, PPS: params.PPS}
		var ex h265.DTSExtractor
		ex.Initialize()
		extract = ex.Extract
	default:
		return MP4Info{}, fmt.Errorf("clip: unsupported codec %q", codec)
	}

	// Cut at a change of parameter sets: the sample entry has one set.
	for i := 1; i < len(aus); i++ {
		if p := paramsOf(aus[i]); p != nil && !sameParams(p, params) {
			aus, info.Cut = aus[:i], true
			break
		}
	}

	pts := make([]int64, len(aus))
	dts := make([]int64, len(aus))
	extracted := true
	for i, au := range aus {
		pts[i] = int64((au.PTS - first.PTS) * timeScale / time.Second)
		if !extracted {
			continue
		}
		d, err := extractSafe(extract, au.NALUs, pts[i])
		if err != nil || (i > 0 && d <= dts[i-1]) {
			extracted = false
			continue
		}
		dts[i] = d
	}
	if !extracted {
		// The DTS could not be derived (an unusual stream): decode in
		// arrival order, one tick apart at least.
		for i := range aus {
			dts[i] = pts[i]
			if i > 0 && dts[i] <= dts[i-1] {
				dts[i] = dts[i-1] + 1
			}
		}
	}

	// Composition times are shifted so that the first picture is presented
	// at zero (ctts version 1 allows the negative offsets this can give), and
	// the last sample lasts long enough for the last picture in presentation
	// order to be shown for one frame.
	shift := pts[0] - dts[0]
	frame := frameTicks(pts)
	maxPTS := slices.Max(pts)
	samples := make([]*pmp4.Sample, 0, len(aus))
	var total int64
	for i, au := range aus {
		payload, err := samplePayload(codec, au.NALUs)
		if err != nil {
			return MP4Info{}, fmt.Errorf("clip: access unit %d: %w", i, err)
		}
		var dur int64
		if i+1 < len(aus) {
			dur = dts[i+1] - dts[i]
		} else {
			dur = max(frame, maxPTS-pts[0]+frame-(dts[i]-dts[0]))
		}
		samples = append(samples, &pmp4.Sample{
			Duration:        uint32(dur),
			PTSOffset:       int32(pts[i] - dts[i] - shift),
			IsNonSyncSample: !au.KeyFrame,
			PayloadSize:     uint32(len(payload)),
			GetPayload:      func() ([]byte, error) { return payload, nil },
		})
		total += dur
		info.Frames++
		if au.KeyFrame {
			info.KeyFrames++
		}
	}
	info.Duration = time.Duration(total) * time.Second / timeScale
	track.Samples = samples

	cw := &countingWriter{w: w}
	if err := (&pmp4.Presentation{Tracks: []*pmp4.Track{&track}}).Marshal(cw); err != nil {
		return MP4Info{}, fmt.Errorf("clip: write MP4: %w", err)
	}
	info.Bytes = cw.n
	return info, nil
}

// WriteMP4File writes the clip to path atomically (a temporary file in the
// same directory, renamed when complete).
func (c *Clip) WriteMP4File(path string) (MP4Info, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return MP4Info{}, fmt.Errorf("clip: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this fails harmlessly
	bw := bufio.NewWriterSize(tmp, 256<<10)
	info, err := c.WriteMP4(bw)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return MP4Info{}, fmt.Errorf("clip: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return MP4Info{}, fmt.Errorf("clip: %w", err)
	}
	return info, nil
}

// frameTicks returns the typical frame duration: the median gap between
// consecutive presentation times (1/10 s when it cannot be told).
func frameTicks(pts []int64) int64 {
	sorted := slices.Clone(pts)
	slices.Sort(sorted)
	var gaps []int64
	for i := 1; i < len(sorted); i++ {
		if g := sorted[i] - sorted[i-1]; g > 0 {
			gaps = append(gaps, g)
		}
	}
	if len(gaps) == 0 {
		return timeScale / 10
	}
	slices.Sort(gaps)
	return gaps[len(gaps)/2]
}

// extractSafe runs a DTS extractor, which parses untrusted bitstream.
func extractSafe(extract func([][]byte, int64) (int64, error), au [][]byte, pts int64) (dts int64, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("DTS extraction: %v", r)
		}
	}()
	return extract(au, pts)
}

// samplePayload returns the access unit in AVCC form (length-prefixed NAL
// units) without parameter sets (they are in the sample entry) and access
// unit delimiters.
func samplePayload(codec string, nalus [][]byte) ([]byte, error) {
	keep := make(h264.AVCC, 0, len(nalus))
	for _, n := range nalus {
		if len(n) == 0 {
			continue
		}
		if codec == rtsp.CodecH265 {
			if len(n) < 2 {
				continue
			}
			switch h265.NALUType((n[0] >> 1) & 0x3f) {
			case h265.NALUType_VPS_NUT, h265.NALUType_SPS_NUT, h265.NALUType_PPS_NUT, h265.NALUType_AUD_NUT:
				continue
			}
		} else {
			switch h264.NALUType(n[0] & 0x1f) {
			case h264.NALUTypeSPS, h264.NALUTypePPS, h264.NALUTypeAccessUnitDelimiter:
				continue
			}
		}
		keep = append(keep, n)
	}
	if len(keep) == 0 {
		return nil, errors.New("no picture data")
	}
	return keep.Marshal()
}

// paramsOf returns the parameter sets carried in a key frame, falling back
// to au.Params.
func paramsOf(au rtsp.AccessUnit) *rtsp.ParamSets {
	var p rtsp.ParamSets
	for _, n := range au.NALUs {
		if len(n) == 0 {
			continue
		}
		if au.Codec == rtsp.CodecH265 {
			if len(n) < 2 {
				continue
			}
			switch h265.NALUType((n[0] >> 1) & 0x3f) {
			case h265.NALUType_VPS_NUT:
				p.VPS = n
			case h265.NALUType_SPS_NUT:
				p.SPS = n
			case h265.NALUType_PPS_NUT:
				p.PPS = n
			}
			continue
		}
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeSPS:
			p.SPS = n
		case h264.NALUTypePPS:
			p.PPS = n
		}
	}
	if p.SPS == nil && p.PPS == nil && p.VPS == nil {
		return au.Params
	}
	if au.Params != nil { // fill in what the access unit lacks
		if p.VPS == nil {
			p.VPS = au.Params.VPS
		}
		if p.SPS == nil {
			p.SPS = au.Params.SPS
		}
		if p.PPS == nil {
			p.PPS = au.Params.PPS
		}
	}
	return &p
}

func sameParams(a, b *rtsp.ParamSets) bool {
	return bytes.Equal(a.VPS, b.VPS) && bytes.Equal(a.SPS, b.SPS) && bytes.Equal(a.PPS, b.PPS)
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
