// Package decode decodes H.264 and H.265 access units into BGR gocv Mats
// with libavcodec (through cgo) at the source resolution.
//
// A Decoder drops access units until the first key frame (a reader that
// joins mid-GOP), follows resolution changes, and turns corrupt input into
// an error, after which it again waits for a key frame: analysis never sees
// the smeared, concealed pictures a damaged reference produces. With
// KeyframeOnly it decodes key frames only, for low-power analysis.
//
// A Decoder is not safe for concurrent use; use one per camera goroutine.
package decode

/*
#cgo pkg-config: libavcodec libavutil libswscale
#include <libavcodec/avcodec.h>
#include <libavutil/error.h>
#include <libavutil/log.h>
#include <libswscale/swscale.h>

static int xl_eagain(void) { return AVERROR(EAGAIN); }
static int xl_eof(void) { return AVERROR_EOF; }
static int xl_invaliddata(void) { return AVERROR_INVALIDDATA; }

static void xl_error_string(int err, char *buf, size_t size) {
	if (av_strerror(err, buf, size) < 0) {
		snprintf(buf, size, "libav error %d", err);
	}
}

// xl_scale converts (and scales) frame into one packed BGR24 plane at dst.
static int xl_scale(struct SwsContext *sws, const AVFrame *frame, uint8_t *dst, int dst_stride) {
	uint8_t *planes[4] = {dst, NULL, NULL, NULL};
	int strides[4] = {dst_stride, 0, 0, 0};
	return sws_scale(sws, (const uint8_t * const *)frame->data, frame->linesize, 0, frame->height, planes, strides);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"image"
	"time"
	"unsafe"

	"gocv.io/x/gocv"
)

// Codec names, as in rtsp.AccessUnit.Codec.
const (
	CodecH264 = "h264"
	CodecH265 = "h265"
)

// Errors.
var (
	// ErrCorrupt wraps errors caused by input the decoder rejected.
	ErrCorrupt = errors.New("decode: corrupt input")
	// ErrClosed is returned by Decode after Close.
	ErrClosed = errors.New("decode: decoder closed")
)

// Option configures a Decoder.
type Option func(*options)

type options struct {
	threads      int
	keyframeOnly bool
	conceal      bool
}

// WithThreads sets libavcodec's thread count (default 1: one core per
// camera, the frame is out as soon as its access unit is in; more threads
// may add frames of latency). 0 lets libavcodec choose.
func WithThreads(n int) Option { return func(o *options) { o.threads = max(n, 0) } }

// KeyframeOnly makes Decode skip every access unit that is not a key frame
// before decoding it.
func KeyframeOnly() Option { return func(o *options) { o.keyframeOnly = true } }

// ConcealErrors makes the decoder tolerate damaged input the way players
// do: it conceals what it cannot decode and keeps going, instead of
// returning an error and waiting for the next key frame.
func ConcealErrors() Option { return func(o *options) { o.conceal = true } }

// Decoder decodes one stream.
type Decoder struct {
	codec string
	opts  options

	ctx   *C.AVCodecContext
	frame *C.AVFrame
	pkt   *C.AVPacket
	buf   unsafe.Pointer // Annex-B input with AV_INPUT_BUFFER_PADDING_SIZE zero bytes after it
	bufN  int

	full   scaler // to BGR at the source size
	scaled scaler // to BGR at a Picture's analysis size

	needKey bool
	lastPTS time.Duration
}

// New returns a decoder for codec "h264" or "h265".
func New(codec string, opts ...Option) (*Decoder, error) {
	o := options{threads: 1}
	for _, opt := range opts {
		opt(&o)
	}
	var id C.enum_AVCodecID
	switch codec {
	case CodecH264:
		id = C.AV_CODEC_ID_H264
	case CodecH265:
		id = C.AV_CODEC_ID_HEVC
	default:
		return nil, fmt.Errorf("decode: unsupported codec %q (want h264 or h265)", codec)
	}
	// libav logs every decoding error to stderr; here they are returned as
	// errors instead. (The level is process-wide: OpenCV's FFmpeg backend
	// sets it too, so it is set again for every decoder.)
	C.av_log_set_level(C.AV_LOG_FATAL)

	dec := C.avcodec_find_decoder(id)
	if dec == nil {
		return nil, fmt.Errorf("decode: libavcodec has no %s decoder", codec)
	}
	d := &Decoder{codec: codec, opts: o, needKey: true}
	d.ctx = C.avcodec_alloc_context3(dec)
	if d.ctx == nil {
		return nil, errors.New("decode: avcodec_alloc_context3 failed")
	}
	d.ctx.thread_count = C.int(o.threads)
	if !o.conceal {
		d.ctx.err_recognition |= C.AV_EF_EXPLODE
	}
	if ret := C.avcodec_open2(d.ctx, dec, nil); ret < 0 {
		d.Close()
		return nil, fmt.Errorf("decode: avcodec_open2: %w", avError(ret))
	}
	d.frame = C.av_frame_alloc()
	d.pkt = C.av_packet_alloc()
	if d.frame == nil || d.pkt == nil {
		d.Close()
		return nil, errors.New("decode: out of memory")
	}
	return d, nil
}

// Codec returns the codec the decoder was made for.
func (d *Decoder) Codec() string { return d.codec }

// LastPTS returns the pts passed with the access unit of the last frame
// Decode returned (frames can come out later than their access unit went
// in when the stream reorders or with more than one thread).
func (d *Decoder) LastPTS() time.Duration { return d.lastPTS }

// Decode decodes one access unit (NAL units without start codes; key
// frames need their parameter sets in front, as the rtsp package delivers
// them). It returns a new BGR Mat owned by the caller when ok is true, and
// ok false while the decoder needs more data, before the first key frame,
// and for access units skipped by KeyframeOnly. After an error the decoder
// waits for the next key frame.
func (d *Decoder) Decode(au [][]byte, pts time.Duration) (frame gocv.Mat, ok bool, err error) {
	err = d.decode(au, pts, func() error {
		m, err := d.full.convert(d.frame, int(d.frame.width), int(d.frame.height))
		if err == nil {
			if ok {
				frame.Close() // an earlier frame of the same access unit
			}
			frame, ok = m, true
		}
		return err
	})
	if err != nil && ok {
		frame.Close()
		return gocv.Mat{}, false, err
	}
	return frame, ok, err
}

// DecodePicture is Decode for analysis: the picture it returns holds the
// frame converted to BGR at width pixels across (height in proportion;
// 0 or the source width: no scaled copy), and converts the full-size BGR
// frame only when asked (Picture.Full). Motion analysis needs the first,
// only the detector and snapshots the second. The caller owns the Picture.
func (d *Decoder) DecodePicture(au [][]byte, pts time.Duration, width int) (pic *Picture, ok bool, err error) {
	err = d.decode(au, pts, func() error {
		p := &Picture{size: image.Pt(int(d.frame.width), int(d.frame.height)), frame: C.av_frame_alloc()}
		if p.frame == nil {
			return errors.New("decode: out of memory")
		}
		if p.size.X <= 0 || p.size.Y <= 0 {
			p.Close()
			return fmt.Errorf("%w: frame size %dx%d", ErrCorrupt, p.size.X, p.size.Y)
		}
		C.av_frame_move_ref(p.frame, d.frame)
		if sz := ScaledSize(p.size, width); sz != p.size {
			m, err := d.scaled.convert(p.frame, sz.X, sz.Y)
			if err != nil {
				p.Close()
				return err
			}
			p.small = m
		}
		if pic != nil {
			pic.Close() // an earlier frame of the same access unit
		}
		pic, ok = p, true
		return nil
	})
	if err != nil && ok {
		pic.Close()
		return nil, false, err
	}
	return pic, ok, err
}

// Skip decodes an access unit the caller does not need as a picture (the
// frames after it still depend on it) without converting it to BGR, which
// costs about as much as the decoding itself. It returns the same errors as
// Decode.
func (d *Decoder) Skip(au [][]byte, pts time.Duration) error {
	return d.decode(au, pts, nil)
}

// decode sends au to the decoder and calls out for every frame that comes
// out, with the frame in d.frame (unreferenced afterwards); a nil out
// drops the frames.
func (d *Decoder) decode(au [][]byte, pts time.Duration, out func() error) error {
	if d.ctx == nil {
		return ErrClosed
	}
	key := IsKeyFrame(d.codec, au)
	if (d.opts.keyframeOnly || d.needKey) && !key {
		return nil
	}
	n := d.fill(au)
	if n == 0 {
		return nil
	}
	d.needKey = false

	C.av_packet_unref(d.pkt)
	d.pkt.data = (*C.uint8_t)(d.buf)
	d.pkt.size = C.int(n)
	d.pkt.pts = C.int64_t(pts)
	if ret := C.avcodec_send_packet(d.ctx, d.pkt); ret < 0 && ret != C.xl_eagain() {
		d.pkt.data, d.pkt.size = nil, 0
		return d.fail(ret)
	}
	d.pkt.data, d.pkt.size = nil, 0

	// Usually one frame per access unit; out keeps the newest if more came.
	for {
		ret := C.avcodec_receive_frame(d.ctx, d.frame)
		if ret == C.xl_eagain() || ret == C.xl_eof() {
			return nil
		}
		if ret < 0 {
			return d.fail(ret)
		}
		if d.frame.decode_error_flags != 0 && !d.opts.conceal {
			flags := d.frame.decode_error_flags
			C.av_frame_unref(d.frame)
			d.needKey = true
			return fmt.Errorf("%w: frame decoded with errors (flags %#x)", ErrCorrupt, int(flags))
		}
		framePTS := time.Duration(d.frame.pts)
		var err error
		if out != nil {
			err = out()
		}
		C.av_frame_unref(d.frame)
		if err != nil {
			return err
		}
		d.lastPTS = framePTS
	}
}

// fail turns a libav error into a Go error and makes the decoder wait for
// the next key frame.
func (d *Decoder) fail(ret C.int) error {
	d.needKey = true
	if ret == C.xl_invaliddata() {
		return fmt.Errorf("%w: %w", ErrCorrupt, avError(ret))
	}
	return fmt.Errorf("decode: %w", avError(ret))
}

// fill writes au as Annex-B into the C input buffer and returns its size.
func (d *Decoder) fill(au [][]byte) int {
	n := 0
	for _, nalu := range au {
		if len(nalu) > 0 {
			n += 4 + len(nalu)
		}
	}
	if n == 0 {
		return 0
	}
	if n > d.bufN {
		if d.buf != nil {
			C.av_free(d.buf)
		}
		size := n + n/2
		d.buf = C.av_malloc(C.size_t(size + C.AV_INPUT_BUFFER_PADDING_SIZE))
		if d.buf == nil {
			d.bufN = 0
			return 0
		}
		d.bufN = size
	}
	dst := unsafe.Slice((*byte)(d.buf), d.bufN+C.AV_INPUT_BUFFER_PADDING_SIZE)
	pos := 0
	for _, nalu := range au {
		if len(nalu) == 0 {
			continue
		}
		pos += copy(dst[pos:], []byte{0, 0, 0, 1})
		pos += copy(dst[pos:], nalu)
	}
	clear(dst[pos : pos+C.AV_INPUT_BUFFER_PADDING_SIZE])
	return pos
}

// scaler converts decoded frames to BGR Mats with one cached swscale
// context. Not safe for concurrent use.
type scaler struct {
	sws                      *C.struct_SwsContext
	srcW, srcH, srcFmt, w, h C.int
}

// convert returns frame as a new BGR Mat of w×h.
func (s *scaler) convert(frame *C.AVFrame, w, h int) (gocv.Mat, error) {
	sw, sh, sf := frame.width, frame.height, C.int(frame.format)
	if sw <= 0 || sh <= 0 || w <= 0 || h <= 0 {
		return gocv.Mat{}, fmt.Errorf("%w: frame size %dx%d", ErrCorrupt, int(sw), int(sh))
	}
	dw, dh := C.int(w), C.int(h)
	if s.sws == nil || sw != s.srcW || sh != s.srcH || sf != s.srcFmt || dw != s.w || dh != s.h {
		// Bilinear: a plain colour conversion at the same size, and a
		// filter as wide as the scale factor (an area average) when
		// shrinking.
		s.sws = C.sws_getCachedContext(s.sws, sw, sh, int32(sf), dw, dh, C.AV_PIX_FMT_BGR24,
			C.SWS_BILINEAR, nil, nil, nil)
		if s.sws == nil {
			s.srcW = 0
			return gocv.Mat{}, fmt.Errorf("decode: no conversion from pixel format %d to BGR", int(sf))
		}
		s.srcW, s.srcH, s.srcFmt, s.w, s.h = sw, sh, sf, dw, dh
	}
	// NewMatWithSizes leaves the pixels uninitialised; NewMatWithSize would
	// zero them first (a memset of the whole picture, 2.7 MB at 720p, which
	// sws_scale overwrites anyway).
	m := gocv.NewMatWithSizes([]int{h, w}, gocv.MatTypeCV8UC3)
	data, err := m.DataPtrUint8()
	if err != nil || len(data) < w*h*3 {
		m.Close()
		return gocv.Mat{}, fmt.Errorf("decode: Mat buffer: %v", err)
	}
	if ret := C.xl_scale(s.sws, frame, (*C.uint8_t)(unsafe.Pointer(&data[0])), C.int(m.Step())); ret != dh {
		m.Close()
		return gocv.Mat{}, fmt.Errorf("decode: sws_scale wrote %d of %d rows", int(ret), h)
	}
	return m, nil
}

func (s *scaler) free() {
	if s.sws != nil {
		C.sws_freeContext(s.sws)
		s.sws = nil
	}
}

// Close frees the decoder. It is safe to call more than once.
func (d *Decoder) Close() {
	d.full.free()
	d.scaled.free()
	if d.pkt != nil {
		C.av_packet_free(&d.pkt)
	}
	if d.frame != nil {
		C.av_frame_free(&d.frame)
	}
	if d.ctx != nil {
		C.avcodec_free_context(&d.ctx)
	}
	if d.buf != nil {
		C.av_free(d.buf)
		d.buf, d.bufN = nil, 0
	}
}

func avError(ret C.int) error {
	var buf [128]C.char
	C.xl_error_string(ret, &buf[0], C.size_t(len(buf)))
	return errors.New(C.GoString(&buf[0]))
}

// IsKeyFrame reports whether au holds a random access picture: an H.264
// IDR slice, an H.265 IRAP (BLA, IDR, CRA) slice.
func IsKeyFrame(codec string, au [][]byte) bool {
	for _, n := range au {
		if len(n) == 0 {
			continue
		}
		switch codec {
		case CodecH264:
			if n[0]&0x1f == 5 {
				return true
			}
		case CodecH265:
			if t := (n[0] >> 1) & 0x3f; t >= 16 && t <= 21 {
				return true
			}
		}
	}
	return false
}
