package rtsp

import (
	"bytes"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
)

// Codec names as used in AccessUnit.Codec.
const (
	CodecH264 = "h264"
	CodecH265 = "h265"
)

// AccessUnit is one encoded video picture as received from the camera.
//
// Everything it references is owned by the receiver: the client never
// reuses or modifies NALUs or Params after handing the access unit over, so
// it may be kept (in a ring buffer) and shared between goroutines as long as
// nobody writes to it.
type AccessUnit struct {
	// Codec is CodecH264 or CodecH265.
	Codec string
	// PTS is the presentation time since the start of the session (the
	// first access unit after connecting has a PTS of about zero). It
	// restarts after every reconnect; see Session.
	PTS time.Duration
	// Wall is when the picture was taken, on this box's clock: the receipt
	// time of an earlier access unit advanced by the PTS difference, so that
	// access units read in a batch keep their spacing. It is never after
	// the access unit was received, and never more than the read interval
	// plus a second before.
	Wall time.Time
	// NALUs are the access unit's NAL units without start codes. Key frames
	// always carry the parameter sets (VPS for H.265, SPS, PPS) in front, so
	// a decoder or a clip can start at any key frame.
	NALUs [][]byte
	// KeyFrame is true for random access points (H.264 IDR, H.265 IRAP).
	KeyFrame bool
	// Params are the parameter sets in force for this access unit (from the
	// SDP, updated from in-band parameter sets). Nil while none is known.
	Params *ParamSets
	// Session numbers the connection the access unit arrived on, from 1.
	// A new value means PTS restarted and the stream may have changed.
	Session uint64
}

// Size returns the total size of the NAL units in bytes.
func (au AccessUnit) Size() int {
	n := 0
	for _, nalu := range au.NALUs {
		n += len(nalu)
	}
	return n
}

// ParamSets are a stream's parameter sets. A value is never modified after
// it has been handed out: a change produces a new *ParamSets.
type ParamSets struct {
	VPS []byte // H.265 only
	SPS []byte
	PPS []byte
}

// Complete reports whether every parameter set codec needs is present.
func (p *ParamSets) Complete(codec string) bool {
	if p == nil || len(p.SPS) == 0 || len(p.PPS) == 0 {
		return false
	}
	return codec != CodecH265 || len(p.VPS) != 0
}

// Resolution parses the SPS and returns the picture size, or ok false when
// the SPS is missing or cannot be parsed.
func (p *ParamSets) Resolution(codec string) (width, height int, ok bool) {
	if p == nil || len(p.SPS) == 0 {
		return 0, 0, false
	}
	defer func() {
		if recover() != nil { // a hostile SPS must not take the client down
			width, height, ok = 0, 0, false
		}
	}()
	switch codec {
	case CodecH264:
		var sps h264.SPS
		if sps.Unmarshal(p.SPS) != nil {
			return 0, 0, false
		}
		return sps.Width(), sps.Height(), true
	case CodecH265:
		var sps h265.SPS
		if sps.Unmarshal(p.SPS) != nil {
			return 0, 0, false
		}
		return sps.Width(), sps.Height(), true
	}
	return 0, 0, false
}

func (p *ParamSets) equal(o *ParamSets) bool {
	if p == nil || o == nil {
		return p == o
	}
	return bytes.Equal(p.VPS, o.VPS) && bytes.Equal(p.SPS, o.SPS) && bytes.Equal(p.PPS, o.PPS)
}

// naluKind classifies NAL units of either codec.
type naluKind int

const (
	naluOther naluKind = iota
	naluVPS
	naluSPS
	naluPPS
	naluKey // a slice of a random access picture
)

func classify(codec string, nalu []byte) naluKind {
	if len(nalu) == 0 {
		return naluOther
	}
	if codec == CodecH265 {
		if len(nalu) < 2 {
			return naluOther
		}
		switch typ := h265.NALUType((nalu[0] >> 1) & 0b111111); {
		case typ == h265.NALUType_VPS_NUT:
			return naluVPS
		case typ == h265.NALUType_SPS_NUT:
			return naluSPS
		case typ == h265.NALUType_PPS_NUT:
			return naluPPS
		case typ >= h265.NALUType_BLA_W_LP && typ <= h265.NALUType_CRA_NUT:
			return naluKey
		}
		return naluOther
	}
	switch h264.NALUType(nalu[0] & 0x1f) {
	case h264.NALUTypeSPS:
		return naluSPS
	case h264.NALUTypePPS:
		return naluPPS
	case h264.NALUTypeIDR:
		return naluKey
	}
	return naluOther
}

// auBuilder turns depacketized access units into AccessUnits: it tracks the
// parameter sets, marks key frames, prepends missing parameter sets to key
// frames and copies the data into one allocation the receiver owns.
type auBuilder struct {
	codec  string
	params *ParamSets
}

// setInitial sets the codec and the parameter sets from the SDP.
func (b *auBuilder) setInitial(codec string, p *ParamSets) {
	b.codec = codec
	b.params = nil
	if p == nil || (len(p.VPS) == 0 && len(p.SPS) == 0 && len(p.PPS) == 0) {
		return
	}
	b.params = &ParamSets{SPS: bytes.Clone(p.SPS), PPS: bytes.Clone(p.PPS)}
	if codec == CodecH265 {
		b.params.VPS = bytes.Clone(p.VPS)
	}
}

// build returns the access unit and whether the parameter sets changed.
func (b *auBuilder) build(nalus [][]byte) (AccessUnit, bool) {
	var vps, sps, pps []byte
	key := false
	size := 0
	for _, n := range nalus {
		size += len(n)
		switch classify(b.codec, n) {
		case naluVPS:
			vps = n
		case naluSPS:
			sps = n
		case naluPPS:
			pps = n
		case naluKey:
			key = true
		}
	}

	changed := false
	if vps != nil || sps != nil || pps != nil {
		next := &ParamSets{}
		if b.params != nil {
			*next = *b.params
		}
		if vps != nil {
			next.VPS = vps
		}
		if sps != nil {
			next.SPS = sps
		}
		if pps != nil {
			next.PPS = pps
		}
		if !next.equal(b.params) {
			next.VPS = bytes.Clone(next.VPS)
			next.SPS = bytes.Clone(next.SPS)
			next.PPS = bytes.Clone(next.PPS)
			b.params = next
			changed = true
		}
	}

	// Prepend the parameter sets a key frame lacks.
	var prefix [][]byte
	if key && b.params != nil {
		if b.codec == CodecH265 && vps == nil && b.params.VPS != nil {
			prefix = append(prefix, b.params.VPS)
		}
		if sps == nil && b.params.SPS != nil {
			prefix = append(prefix, b.params.SPS)
		}
		if pps == nil && b.params.PPS != nil {
			prefix = append(prefix, b.params.PPS)
		}
	}
	for _, n := range prefix {
		size += len(n)
	}

	buf := make([]byte, 0, size)
	out := make([][]byte, 0, len(prefix)+len(nalus))
	for _, src := range [][][]byte{prefix, nalus} {
		for _, n := range src {
			if len(n) == 0 {
				continue
			}
			start := len(buf)
			buf = append(buf, n...)
			out = append(out, buf[start:len(buf):len(buf)])
		}
	}
	return AccessUnit{Codec: b.codec, NALUs: out, KeyFrame: key, Params: b.params}, changed
}
