// Command xl-camsim is a camera simulator: it serves video files as looping
// live RTSP/H.264 cameras for tests and demos, and misbehaves on demand.
//
//	xl-camsim --listen 127.0.0.1:8554 --camera cam-01=video.avi [--camera cam-02=other.mp4] [--control 127.0.0.1:8555]
//	curl -X POST '127.0.0.1:8555/cameras/cam-01/fault?kind=stall&for=30s'
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/xueliang/xl/internal/camsim"
	"github.com/xueliang/xl/internal/opshttp"
)

// version is set at build time: -ldflags "-X main.version=1.2.3".
var version = "dev"

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "xl-camsim:", err)
		os.Exit(1)
	}
}

type options struct {
	listen    string
	cameras   []string
	cacheDir  string
	ffmpeg    string
	udpRTP    string
	udpRTCP   string
	control   string
	logFormat string
	logLevel  string
}

func newRootCmd() *cobra.Command {
	var o options
	cmd := &cobra.Command{
		Use:   "xl-camsim --camera ID=FILE [--camera ID=FILE ...]",
		Short: "Serve video files as looping live RTSP cameras",
		Long: "xl-camsim transcodes each video file once to H.264 (cached) and serves it\n" +
			"as a looping live camera at rtsp://LISTEN/ID until interrupted.",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, o)
		},
	}
	cmd.CompletionOptions.DisableDefaultCmd = true
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return fmt.Errorf("%w (see --help)", err)
	})
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:8554", "RTSP listen address (host:port)")
	f.StringArrayVar(&o.cameras, "camera", nil, "camera as ID=FILE (repeatable)")
	f.StringVar(&o.cacheDir, "cache-dir", "", "directory for transcoded files (default: user cache dir/xl-camsim)")
	f.StringVar(&o.ffmpeg, "ffmpeg", "ffmpeg", "ffmpeg binary")
	f.StringVar(&o.udpRTP, "udp-rtp", "", "UDP RTP address (even port) to also offer UDP transport; needs --udp-rtcp")
	f.StringVar(&o.udpRTCP, "udp-rtcp", "", "UDP RTCP address (RTP port + 1)")
	f.StringVar(&o.control, "control", "", "HTTP address of the fault API (e.g. 127.0.0.1:8555): POST /cameras/ID/fault?kind=drop|stall|stop|garbage|bad_rtp|bad_sdp[&for=30s], DELETE /cameras/ID/fault, GET /faults")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")

	cmd.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "xl-camsim", version)
		},
	})
	return cmd
}

func run(cmd *cobra.Command, o options) error {
	log, err := newLogger(o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	if len(o.cameras) == 0 {
		return errors.New("at least one --camera ID=FILE is required")
	}
	cams := make([]camsim.Camera, 0, len(o.cameras))
	for _, spec := range o.cameras {
		id, path, ok := strings.Cut(spec, "=")
		if !ok || id == "" || path == "" {
			return fmt.Errorf("invalid --camera %q: want ID=FILE", spec)
		}
		cams = append(cams, camsim.Camera{ID: id, Path: path})
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	srv, err := camsim.New(camsim.Config{
		Listen:         o.listen,
		Cameras:        cams,
		CacheDir:       o.cacheDir,
		FFmpeg:         o.ffmpeg,
		UDPRTPAddress:  o.udpRTP,
		UDPRTCPAddress: o.udpRTCP,
	}, log)
	if err != nil {
		if ctx.Err() != nil {
			return errors.New("interrupted during startup")
		}
		return err
	}
	defer srv.Close()

	out := cmd.OutOrStdout()
	for _, c := range cams {
		fmt.Fprintf(out, "%s\t%s\n", c.ID, srv.URL(c.ID))
	}
	if o.control == "" {
		return srv.Run(ctx)
	}
	ln, err := net.Listen("tcp", o.control)
	if err != nil {
		return fmt.Errorf("--control: %w", err)
	}
	fmt.Fprintf(out, "control\thttp://%s/faults\n", ln.Addr())
	// The control API takes no request bodies: 4 KiB is plenty.
	hs := opshttp.NewServer(http.MaxBytesHandler(srv.ControlHandler(), 4<<10), opshttp.Limits{}, log)
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }() // joined below
	err = srv.Run(ctx)
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hs.Shutdown(shutdown)
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("control API: %w", serr))
	}
	return err
}

func newLogger(format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid --log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	default:
		return nil, fmt.Errorf("invalid --log-format %q: want text or json", format)
	}
}
