package clip

import (
	"bytes"
	"fmt"
	"time"

	"github.com/xueliang/xl/agent/internal/rtsp"
)

// EncodeMP4 returns the clip as an MP4 of at most limit bytes. When the
// whole clip is larger, it is shortened rather than split (one clip per
// alert is what the wire contract carries): whole GOPs are dropped from the
// start as long as the instant keep (the event) stays inside, then access
// units from the end. shortened reports that the MP4 covers less than the
// clip.
func (c *Clip) EncodeMP4(limit int, keep time.Time) (mp4 []byte, info MP4Info, shortened bool, err error) {
	aus := c.AUs
	var buf bytes.Buffer
	for {
		buf.Reset()
		info, err = (&Clip{AUs: aus}).WriteMP4(&buf)
		if err != nil {
			return nil, MP4Info{}, false, err
		}
		if buf.Len() <= limit {
			return buf.Bytes(), info, shortened, nil
		}
		shortened = true
		// Drop the first GOP when the next one still starts at or before keep.
		if next := nextKey(aus); next > 0 && !aus[next].Wall.After(keep) {
			aus = aus[next:]
			continue
		}
		// Cut the end: the longest prefix that fits (dropping access units
		// from the end in decoding order keeps every remaining one
		// decodable).
		lo, hi := 0, len(aus)-1 // aus[:lo] fits (lo 0: nothing known to), aus[:hi+1] does not
		for lo < hi {
			mid := (lo + hi + 1) / 2
			buf.Reset()
			if _, err := (&Clip{AUs: aus[:mid]}).WriteMP4(&buf); err != nil {
				return nil, MP4Info{}, false, err
			}
			if buf.Len() <= limit {
				lo = mid
			} else {
				hi = mid - 1
			}
		}
		if lo == 0 {
			return nil, MP4Info{}, false, fmt.Errorf("clip: the first key frame alone makes an MP4 over the limit of %d bytes", limit)
		}
		aus = aus[:lo]
	}
}

// nextKey returns the index of the first key frame after aus[0], or -1.
func nextKey(aus []rtsp.AccessUnit) int {
	for i := 1; i < len(aus); i++ {
		if aus[i].KeyFrame {
			return i
		}
	}
	return -1
}
