package rtsp

import (
	"bytes"
	"testing"
)

func TestAUBuilder(t *testing.T) {
	sps, pps := []byte{0x67, 1, 2, 3}, []byte{0x68, 4, 5}
	sps2 := []byte{0x67, 9, 9, 9}
	idr, slice, sei := []byte{0x65, 0xaa, 0xbb}, []byte{0x41, 0xcc}, []byte{0x06, 0x01}
	vps5, sps5, pps5 := []byte{0x40, 0x01, 7}, []byte{0x42, 0x01, 8}, []byte{0x44, 0x01, 9}
	idr5, cra5, trail5 := []byte{0x26, 0x01, 0xaa}, []byte{0x2a, 0x01, 0xab}, []byte{0x02, 0x01, 0xac}

	type step struct {
		in      [][]byte
		want    [][]byte
		key     bool
		changed bool
	}
	for _, tc := range []struct {
		name  string
		codec string
		sdp   *ParamSets
		steps []step
	}{
		{"h264-params-from-sdp-prepended", CodecH264, &ParamSets{SPS: sps, PPS: pps}, []step{
			{in: [][]byte{idr}, want: [][]byte{sps, pps, idr}, key: true},
			{in: [][]byte{slice}, want: [][]byte{slice}},
		}},
		{"h264-in-band-params-kept", CodecH264, nil, []step{
			{in: [][]byte{slice}, want: [][]byte{slice}},
			{in: [][]byte{sei, sps, pps, idr}, want: [][]byte{sei, sps, pps, idr}, key: true, changed: true},
			{in: [][]byte{idr}, want: [][]byte{sps, pps, idr}, key: true},
		}},
		{"h264-only-missing-prepended", CodecH264, &ParamSets{SPS: sps, PPS: pps}, []step{
			{in: [][]byte{sps2, idr}, want: [][]byte{pps, sps2, idr}, key: true, changed: true},
			{in: [][]byte{idr}, want: [][]byte{sps2, pps, idr}, key: true},
		}},
		{"h264-empty-nalus-dropped", CodecH264, nil, []step{
			{in: [][]byte{{}, slice, nil}, want: [][]byte{slice}},
		}},
		{"h265", CodecH265, &ParamSets{VPS: vps5, SPS: sps5, PPS: pps5}, []step{
			{in: [][]byte{idr5}, want: [][]byte{vps5, sps5, pps5, idr5}, key: true},
			{in: [][]byte{trail5}, want: [][]byte{trail5}},
			{in: [][]byte{cra5}, want: [][]byte{vps5, sps5, pps5, cra5}, key: true},
			{in: [][]byte{{0x40}}, want: [][]byte{{0x40}}}, // truncated header: not a VPS
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b auBuilder
			b.setInitial(tc.codec, tc.sdp)
			for i, st := range tc.steps {
				in := make([][]byte, len(st.in))
				for j := range st.in {
					in[j] = bytes.Clone(st.in[j])
				}
				au, changed := b.build(in)
				if au.KeyFrame != st.key || changed != st.changed {
					t.Fatalf("step %d: key %v changed %v, want %v %v", i, au.KeyFrame, changed, st.key, st.changed)
				}
				if len(au.NALUs) != len(st.want) {
					t.Fatalf("step %d: NALUs %x, want %x", i, au.NALUs, st.want)
				}
				for j := range st.want {
					if !bytes.Equal(au.NALUs[j], st.want[j]) {
						t.Fatalf("step %d: NALUs %x, want %x", i, au.NALUs, st.want)
					}
				}
				// The access unit owns its memory.
				for _, n := range in {
					for k := range n {
						n[k] = 0xff
					}
				}
				for j := range st.want {
					if !bytes.Equal(au.NALUs[j], st.want[j]) {
						t.Fatalf("step %d: access unit aliases the input", i)
					}
				}
			}
		})
	}
}

func TestParamSets(t *testing.T) {
	var nilp *ParamSets
	if nilp.Complete(CodecH264) {
		t.Error("nil params complete")
	}
	if _, _, ok := nilp.Resolution(CodecH264); ok {
		t.Error("nil params have a resolution")
	}
	p := &ParamSets{SPS: []byte{0x67, 0xff, 0xff, 0xff, 0xff}, PPS: []byte{0x68}}
	if !p.Complete(CodecH264) || p.Complete(CodecH265) {
		t.Error("Complete")
	}
	for _, sps := range [][]byte{{0x67}, {0x67, 0x64, 0, 0x1f, 0xff, 0xff, 0xff}, {0x42, 0x01, 0xff, 0xff}} {
		for _, codec := range []string{CodecH264, CodecH265} {
			_, _, _ = (&ParamSets{SPS: sps}).Resolution(codec) // must not panic
		}
	}
}
