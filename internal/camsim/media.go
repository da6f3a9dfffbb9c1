package camsim

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"
)

// transcodeArgs are the ffmpeg output options for inputs that are not
// H.264; copyArgs for those that are (served as they are: their GOP, their
// bitrate, no second generation of compression). Both are part of the cache
// key: changing them invalidates previously prepared files.
var copyArgs = []string{"-an", "-c:v", "copy", "-f", "mpegts"}

var transcodeArgs = []string{
	"-an",
	"-c:v", "libx264",
	"-preset", "veryfast",
	"-g", "20",
	"-bf", "0",
	"-pix_fmt", "yuv420p",
	"-f", "mpegts",
}

// cacheKeyVersion is bumped whenever the layout/semantics of cached files change.
const cacheKeyVersion = "xl-camsim/transcode/v2"

// stderrTailBytes is how much of ffmpeg's stderr is kept for error messages.
const stderrTailBytes = 2048

// maxProbeAUs bounds how many access units are read looking for SPS/PPS.
const maxProbeAUs = 600

// mediaInfo describes a prepared (transcoded) file.
type mediaInfo struct {
	tsPath string
	sps    []byte
	pps    []byte
	width  int
	height int
	fps    float64
}

// cacheKey hashes the input content together with the ffmpeg arguments.
func cacheKey(inputPath string, args []string) (string, error) {
	f, err := os.Open(inputPath)
	if err != nil {
		return "", err
	}
	defer f.Close()

	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n", cacheKeyVersion, strings.Join(args, " "))
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// prepareMedia makes sure a transcoded MPEG-TS/H.264 copy of cam.Path exists
// in cacheDir and returns its description.
func prepareMedia(cam Camera, cacheDir, ffmpeg string, log *slog.Logger) (*mediaInfo, error) {
	args := transcodeArgs
	if codec, err := videoCodec(cam.Path, ffmpeg); err == nil && codec == "h264" {
		args = copyArgs
	}
	key, err := cacheKey(cam.Path, args)
	if err != nil {
		return nil, fmt.Errorf("camera %q: read input %q: %w", cam.ID, cam.Path, err)
	}
	out := filepath.Join(cacheDir, key+".ts")

	if st, err := os.Stat(out); err == nil && st.Mode().IsRegular() && st.Size() > 0 {
		info, perr := probeTS(out)
		if perr == nil {
			log.Info("using cached transcode", "input", cam.Path, "file", out, "cached", true)
			return info, nil
		}
		log.Warn("cached transcode unusable, transcoding again", "file", out, "error", perr)
		_ = os.Remove(out)
	}

	start := time.Now()
	log.Info("transcoding input", "input", cam.Path, "file", out, "cached", false, "copy", args[2] == "copy")
	if err := transcode(cam.Path, out, ffmpeg, args); err != nil {
		return nil, fmt.Errorf("camera %q: transcode %q: %w", cam.ID, cam.Path, err)
	}
	info, err := probeTS(out)
	if err != nil {
		_ = os.Remove(out)
		return nil, fmt.Errorf("camera %q: transcoded %q is unusable: %w", cam.ID, cam.Path, err)
	}
	log.Info("transcoded input", "input", cam.Path, "file", out, "took", time.Since(start).Round(time.Millisecond))
	return info, nil
}

// videoCodecRe finds the first video stream's codec in ffmpeg's description
// of an input ("Stream #0:0[0x1](und): Video: h264 (High) ...").
var videoCodecRe = regexp.MustCompile(`Stream #\d+:\d+\S*: Video: (\w+)`)

// videoCodec returns the codec of the input's first video stream as ffmpeg
// names it ("h264", "hevc", "mpeg4", …).
func videoCodec(in, ffmpeg string) (string, error) {
	bin, err := exec.LookPath(ffmpeg)
	if err != nil {
		return "", err
	}
	// Without an output ffmpeg describes the input and exits non-zero.
	out, _ := exec.Command(bin, "-hide_banner", "-nostdin", "-i", in).CombinedOutput()
	m := videoCodecRe.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("no video stream in %q", in)
	}
	return string(m[1]), nil
}

// transcode runs ffmpeg once with the output options args, writing to a
// temporary file in the cache directory which is renamed to out on success.
func transcode(in, out, ffmpeg string, outArgs []string) error {
	bin, err := exec.LookPath(ffmpeg)
	if err != nil {
		return fmt.Errorf("ffmpeg binary %q not found: %w", ffmpeg, err)
	}

	tmp, err := os.CreateTemp(filepath.Dir(out), filepath.Base(out)+".*.tmp")
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	tmpName := tmp.Name()
	_ = tmp.Close()
	ok := false
	defer func() {
		if !ok {
			_ = os.Remove(tmpName)
		}
	}()

	args := []string{"-nostdin", "-loglevel", "error", "-y", "-i", in}
	args = append(args, outArgs...)
	args = append(args, tmpName)

	stderr := &tailBuffer{max: stderrTailBytes}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = io.Discard
	cmd.Stderr = stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			return fmt.Errorf("ffmpeg: %w", err)
		}
		return fmt.Errorf("ffmpeg: %w: %s", err, msg)
	}
	if err := os.Rename(tmpName, out); err != nil {
		return fmt.Errorf("rename transcoded file: %w", err)
	}
	ok = true
	return nil
}

// errProbeDone stops the probe read loop once parameters are found.
var errProbeDone = errors.New("probe done")

// probeTS reads the beginning of an MPEG-TS file and extracts the H.264
// parameter sets (needed in the SDP so clients can decode immediately).
func probeTS(path string) (*mediaInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	r := &mpegts.Reader{R: bufio.NewReaderSize(f, 64*1024)}
	if err := r.Initialize(); err != nil {
		return nil, fmt.Errorf("read MPEG-TS: %w", err)
	}
	track := findH264Track(r)
	if track == nil {
		return nil, errors.New("no H.264 track in MPEG-TS")
	}

	info := &mediaInfo{tsPath: path}
	aus := 0
	r.OnDataH264(track, func(_, _ int64, au [][]byte) error {
		aus++
		for _, nalu := range au {
			if len(nalu) == 0 {
				continue
			}
			switch h264.NALUType(nalu[0] & 0x1f) {
			case h264.NALUTypeSPS:
				if info.sps == nil {
					info.sps = bytes.Clone(nalu)
				}
			case h264.NALUTypePPS:
				if info.pps == nil {
					info.pps = bytes.Clone(nalu)
				}
			}
		}
		if info.sps != nil && info.pps != nil {
			return errProbeDone
		}
		if aus >= maxProbeAUs {
			return fmt.Errorf("no SPS/PPS in the first %d access units", aus)
		}
		return nil
	})

	for {
		err := r.Read()
		if errors.Is(err, errProbeDone) {
			break
		}
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("no SPS/PPS found before end of file (%d access units)", aus)
		}
		if err != nil {
			return nil, err
		}
	}

	var sps h264.SPS
	if err := sps.Unmarshal(info.sps); err != nil {
		return nil, fmt.Errorf("invalid SPS: %w", err)
	}
	info.width, info.height, info.fps = sps.Width(), sps.Height(), sps.FPS()
	return info, nil
}

func findH264Track(r *mpegts.Reader) *mpegts.Track {
	for _, t := range r.Tracks() {
		if _, ok := t.Codec.(*tscodecs.H264); ok {
			return t
		}
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string { return string(b.buf) }
