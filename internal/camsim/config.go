package camsim

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
)

// Camera is one simulated camera: the video file at Path is served, looping,
// at rtsp://<listen>/<ID>.
type Camera struct {
	ID   string
	Path string
}

// Config configures a Server.
type Config struct {
	// Listen is the RTSP (TCP) listen address, e.g. "127.0.0.1:8554". Required.
	// Port 0 picks a free port; URL reports the port actually bound.
	Listen string
	// Cameras to serve; at least one. IDs must be unique and match [A-Za-z0-9_.-]+.
	Cameras []Camera
	// CacheDir holds transcoded media. Default: os.UserCacheDir()/xl-camsim.
	CacheDir string
	// FFmpeg is the ffmpeg binary used for transcoding. Default: "ffmpeg".
	FFmpeg string
	// UDPRTPAddress and UDPRTCPAddress, when both set, enable the UDP
	// transport (the RTP port must be even and the RTCP port the next one).
	// Otherwise only TCP (interleaved) transport is offered.
	UDPRTPAddress  string
	UDPRTCPAddress string
}

const (
	defaultFFmpeg   = "ffmpeg"
	cacheSubdirName = "xl-camsim"
)

var cameraIDRe = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// withDefaults returns a copy of cfg with defaults applied.
func (cfg Config) withDefaults() (Config, error) {
	out := cfg
	out.Cameras = append([]Camera(nil), cfg.Cameras...)
	if out.FFmpeg == "" {
		out.FFmpeg = defaultFFmpeg
	}
	if out.CacheDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return out, fmt.Errorf("camsim: no cache dir configured and no user cache dir available (%v); set CacheDir", err)
		}
		out.CacheDir = filepath.Join(base, cacheSubdirName)
	}
	return out, nil
}

// validate checks cfg for problems that do not need the file system beyond
// a stat of each input.
func (cfg Config) validate() error {
	var errs []error

	if cfg.Listen == "" {
		errs = append(errs, errors.New("listen address is required"))
	} else if err := checkHostPort(cfg.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen address %q: %w", cfg.Listen, err))
	}

	switch {
	case cfg.UDPRTPAddress == "" && cfg.UDPRTCPAddress == "":
	case cfg.UDPRTPAddress == "" || cfg.UDPRTCPAddress == "":
		errs = append(errs, errors.New("UDP RTP and RTCP addresses must be set together"))
	default:
		rtpPort, err1 := portOf(cfg.UDPRTPAddress)
		rtcpPort, err2 := portOf(cfg.UDPRTCPAddress)
		switch {
		case err1 != nil:
			errs = append(errs, fmt.Errorf("UDP RTP address %q: %w", cfg.UDPRTPAddress, err1))
		case err2 != nil:
			errs = append(errs, fmt.Errorf("UDP RTCP address %q: %w", cfg.UDPRTCPAddress, err2))
		case rtpPort%2 != 0:
			errs = append(errs, fmt.Errorf("UDP RTP port %d must be even", rtpPort))
		case rtcpPort != rtpPort+1:
			errs = append(errs, fmt.Errorf("UDP RTCP port %d must be RTP port + 1 (%d)", rtcpPort, rtpPort+1))
		}
	}

	if len(cfg.Cameras) == 0 {
		errs = append(errs, errors.New("no cameras configured (need at least one)"))
	}
	seen := make(map[string]int, len(cfg.Cameras))
	for i, c := range cfg.Cameras {
		switch {
		case c.ID == "":
			errs = append(errs, fmt.Errorf("camera #%d: empty ID", i+1))
		case !cameraIDRe.MatchString(c.ID) || c.ID == "." || c.ID == "..":
			errs = append(errs, fmt.Errorf("camera %q: invalid ID (allowed: letters, digits, '_', '.', '-')", c.ID))
		default:
			if j, dup := seen[c.ID]; dup {
				errs = append(errs, fmt.Errorf("camera %q: duplicate ID (cameras #%d and #%d)", c.ID, j+1, i+1))
			} else {
				seen[c.ID] = i
			}
		}
		if c.Path == "" {
			errs = append(errs, fmt.Errorf("camera %q: empty file path", c.ID))
			continue
		}
		st, err := os.Stat(c.Path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			errs = append(errs, fmt.Errorf("camera %q: input file %q does not exist", c.ID, c.Path))
		case err != nil:
			errs = append(errs, fmt.Errorf("camera %q: input file %q: %w", c.ID, c.Path, err))
		case !st.Mode().IsRegular():
			errs = append(errs, fmt.Errorf("camera %q: input %q is not a regular file", c.ID, c.Path))
		}
	}

	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("camsim: invalid config: %w", errors.Join(errs...))
}

func checkHostPort(addr string) error {
	_, err := portOf(addr)
	return err
}

func portOf(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return 0, fmt.Errorf("invalid port %q", p)
	}
	return port, nil
}
