package rtsp

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/sdpunmarshaler"
	"github.com/pion/rtp"
)

const sdpHead = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=cam\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"

// sdpSeeds are answers to DESCRIBE as cameras send them, and broken ones.
var sdpSeeds = []string{
	sdpHead + "m=video 0 RTP/AVP 96\r\na=control:trackID=0\r\na=rtpmap:96 H264/90000\r\n" +
		"a=fmtp:96 packetization-mode=1;profile-level-id=64001f;sprop-parameter-sets=Z2QAH6zZQFAFuhAAAAMAEAAAAwPI8YMZYA==,aOvjyyLA\r\n",
	sdpHead + "m=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\nm=video 0 RTP/AVP 97\r\na=rtpmap:97 H265/90000\r\n" +
		"a=fmtp:97 sprop-vps=QAEMAf//AWAAAAMAkAAAAwAAAwBdlZgJ;sprop-sps=QgEBAWAAAAMAkAAAAwAAAwBdoAKAgC0WWVmkkyvAQAAA+kAAF3AC;sprop-pps=RAHBcrRiQA==\r\n",
	sdpHead + "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1; sprop-parameter-sets=!!!,@@@\r\n",
	sdpHead + "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=2\r\n",
	sdpHead + "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 sprop-parameter-sets=Z0IAHg==,\r\n",
	sdpHead + "m=video 0 RTP/AVP 26\r\na=rtpmap:26 JPEG/90000\r\n",
	sdpHead + "m=video 0 RTP/AVP 96\r\na=sendonly\r\na=rtpmap:96 H264/90000\r\nm=video 0 RTP/AVP 98\r\na=rtpmap:98 H265/90000\r\n",
	sdpHead + "m=application 0 RTP/AVP 107\r\na=rtpmap:107 vnd.onvif.metadata/90000\r\n",
	sdpHead,
	"v=0\r\n",
	"",
}

// rtpSeeds are payloads of one RTP packet: single NAL units, STAP-A and
// FU-A for H.264; a single NAL unit, AP and FU for H.265.
var rtpSeeds = [][]byte{
	{0x65, 0x88, 0x84, 0x00},
	{0x18, 0x00, 0x02, 0x67, 0x64, 0x00, 0x02, 0x68, 0xeb, 0x00, 0x02, 0x65, 0x88},
	{0x7c, 0x85, 0x88, 0x84},
	{0x26, 0x01, 0xaf, 0x06},
	{0x60, 0x01, 0x00, 0x03, 0x40, 0x01, 0x0c, 0x00, 0x03, 0x42, 0x01, 0x01},
	{0x62, 0x01, 0x93, 0xaf},
	{},
}

// FuzzSDP drives what the client does with a camera's answer to DESCRIBE:
// gortsplib parses the SDP, videoTrack picks the video track and its
// depacketizer and reads the parameter sets, and the first RTP packet goes
// through the depacketizer into the access-unit builder. Nothing may
// panic; a track is always H.264 or H.265 video; access units hold no
// empty NAL units, own their bytes and carry the parameter sets in front
// of key frames once they are known.
func FuzzSDP(f *testing.F) {
	for _, s := range sdpSeeds {
		for _, p := range rtpSeeds {
			f.Add([]byte(s), p)
		}
	}
	f.Fuzz(func(t *testing.T, sdp, payload []byte) {
		ssd, err := sdpunmarshaler.Unmarshal(sdp)
		if err != nil {
			return
		}
		var desc description.Session
		if err := desc.Unmarshal2(ssd); err != nil {
			return
		}
		tr, err := videoTrack(&desc)
		if err != nil {
			if m, _ := pickVideo(&desc); m == nil && !errors.Is(err, ErrNoVideo) {
				t.Fatalf("no video, but error %v", err)
			}
			return
		}
		if tr.media == nil || tr.media.Type != description.MediaTypeVideo || tr.media.IsBackChannel || tr.decode == nil {
			t.Fatalf("picked %+v", tr.media)
		}
		if !slices.Contains(tr.media.Formats, tr.format) {
			t.Fatal("the format is not one of the media's")
		}
		switch tr.format.(type) {
		case *format.H264:
			if tr.codec != CodecH264 {
				t.Fatalf("H.264 format, codec %q", tr.codec)
			}
		case *format.H265:
			if tr.codec != CodecH265 {
				t.Fatalf("H.265 format, codec %q", tr.codec)
			}
		default:
			t.Fatalf("picked format %T", tr.format)
		}
		var b auBuilder
		b.setInitial(tr.codec, tr.params)
		if w, h, ok := b.params.Resolution(tr.codec); ok && (w < 0 || h < 0) {
			t.Fatalf("resolution %dx%d", w, h)
		}

		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, PayloadType: tr.format.PayloadType(), SequenceNumber: 1}, Payload: payload}
		nalus, err := tr.decode(pkt)
		if err != nil || len(nalus) == 0 {
			return
		}
		in := make([][]byte, len(nalus))
		for i, n := range nalus {
			in[i] = bytes.Clone(n)
		}
		au, _ := b.build(nalus)
		for _, n := range au.NALUs {
			if len(n) == 0 {
				t.Fatal("empty NAL unit in an access unit")
			}
		}
		if au.KeyFrame && au.Params.Complete(tr.codec) {
			kinds := map[naluKind]bool{}
			for _, n := range au.NALUs {
				kinds[classify(tr.codec, n)] = true
			}
			if !kinds[naluSPS] || !kinds[naluPPS] || (tr.codec == CodecH265 && !kinds[naluVPS]) {
				t.Fatalf("key frame without its parameter sets: % x", au.NALUs)
			}
		}
		// The access unit owns its bytes: scribbling over what the
		// depacketizer returned changes nothing.
		want := make([][]byte, len(au.NALUs))
		for i, n := range au.NALUs {
			want[i] = bytes.Clone(n)
		}
		for _, n := range nalus {
			for i := range n {
				n[i] ^= 0xff
			}
		}
		for i := range want {
			if !bytes.Equal(want[i], au.NALUs[i]) {
				t.Fatal("access unit shares memory with the depacketizer's output")
			}
		}
		// The same NAL units again change no parameter set.
		if _, changed := b.build(in); changed {
			t.Fatal("parameter sets changed on a repeat of the same access unit")
		}
	})
}
