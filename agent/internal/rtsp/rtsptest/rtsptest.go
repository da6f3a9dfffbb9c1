// Package rtsptest serves H.264 or H.265 video over real RTSP on loopback
// for tests, with the knobs cameras get wrong: refusing a transport,
// requiring credentials, TLS, or never sending a packet. It also makes test
// media with ffmpeg and reads access units from MPEG-TS files.
package rtsptest

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/auth"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"
	"github.com/pion/rtp"
)

// AU is one access unit of a test stream.
type AU struct {
	NALUs [][]byte
	PTS   time.Duration
	Key   bool
}

// Config configures a Server.
type Config struct {
	Codec         string // "h264" (default) or "h265"
	VPS, SPS, PPS []byte // parameter sets announced in the SDP; may be nil
	UDP           bool   // offer UDP as well as TCP
	RefuseTCP     bool   // answer SETUP over TCP with 461 Unsupported Transport
	RefuseUDP     bool   // answer SETUP over UDP with 461 Unsupported Transport
	User, Pass    string // require these credentials
	AuthMethods   []auth.VerifyMethod
	TLSConfig     *tls.Config // serve rtsps://
}

// Server is a one-stream RTSP server on 127.0.0.1; every path serves it.
type Server struct {
	cfg    Config
	srv    *gortsplib.Server
	stream *gortsplib.ServerStream
	media  *description.Media
	scheme string
	addr   string
	ready  chan struct{} // closed once stream and addr are set: handlers wait for it

	mu    sync.Mutex
	plays int
	setup map[string]int // transport → SETUP requests

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// Start starts a server; it is closed when the test ends.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// New starts a server on listen (host:port; port 0 picks one).
func New(cfg Config, listen string) (*Server, error) {
	if cfg.Codec == "" {
		cfg.Codec = "h264"
	}
	var forma format.Format
	switch cfg.Codec {
	case "h264":
		forma = &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: cfg.SPS, PPS: cfg.PPS}
	case "h265":
		forma = &format.H265{PayloadTyp: 96, VPS: cfg.VPS, SPS: cfg.SPS, PPS: cfg.PPS}
	default:
		return nil, fmt.Errorf("rtsptest: unknown codec %q", cfg.Codec)
	}
	s := &Server{cfg: cfg, scheme: "rtsp", setup: map[string]int{}, ready: make(chan struct{})}
	defer close(s.ready)
	if cfg.TLSConfig != nil {
		s.scheme = "rtsps"
	}
	s.srv = &gortsplib.Server{
		Handler:     (*handler)(s),
		RTSPAddress: listen,
		TLSConfig:   cfg.TLSConfig,
		AuthMethods: cfg.AuthMethods,
	}
	if cfg.UDP {
		rtpAddr, rtcpAddr, err := FreeUDPPair()
		if err != nil {
			return nil, err
		}
		s.srv.UDPRTPAddress, s.srv.UDPRTCPAddress = rtpAddr, rtcpAddr
	}
	if err := s.srv.Start(); err != nil {
		return nil, fmt.Errorf("rtsptest: start server: %w", err)
	}
	s.media = &description.Media{Type: description.MediaTypeVideo, Formats: []format.Format{forma}}
	s.stream = &gortsplib.ServerStream{Server: s.srv, Desc: &description.Session{Medias: []*description.Media{s.media}}}
	if err := s.stream.Initialize(); err != nil {
		s.srv.Close()
		return nil, fmt.Errorf("rtsptest: stream: %w", err)
	}
	s.addr = s.srv.NetListener().Addr().String()
	return s, nil
}

// URL returns the server's URL for path, with user:pass when given.
func (s *Server) URL(path string) string {
	return s.scheme + "://" + s.addr + "/" + strings.TrimPrefix(path, "/")
}

// Addr is the RTSP listen address.
func (s *Server) Addr() string { return s.addr }

// Plays returns how many PLAY requests were answered.
func (s *Server) Plays() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.plays
}

// Setups returns how many SETUP requests arrived over transport "tcp" or "udp".
func (s *Server) Setups(transport string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.setup[transport]
}

// Loop streams aus in a loop, paced in real time by their PTS (fps is used
// for the gap between the last and the first access unit), until Close.
func (s *Server) Loop(aus []AU, fps float64) {
	if len(aus) == 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	s.cancel = cancel
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.loop(ctx, aus, fps)
	}()
}

func (s *Server) loop(ctx context.Context, aus []AU, fps float64) {
	var enc interface {
		Encode([][]byte) ([]*rtp.Packet, error)
	}
	switch f := s.media.Formats[0].(type) {
	case *format.H264:
		e, err := f.CreateEncoder()
		if err != nil {
			return
		}
		enc = e
	case *format.H265:
		e, err := f.CreateEncoder()
		if err != nil {
			return
		}
		enc = e
	}
	frame := time.Duration(float64(time.Second) / fps)
	start := time.Now()
	var offset time.Duration
	for {
		for _, au := range aus {
			pts := offset + au.PTS - aus[0].PTS
			if d := time.Until(start.Add(pts)); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			} else if ctx.Err() != nil {
				return
			}
			pkts, err := enc.Encode(au.NALUs)
			if err != nil {
				continue
			}
			ts := uint32(pts * 90000 / time.Second)
			for _, p := range pkts {
				p.Timestamp = ts
				_ = s.stream.WritePacketRTPWithNTP(s.media, p, start.Add(pts))
			}
		}
		offset += aus[len(aus)-1].PTS - aus[0].PTS + frame
	}
}

// Close stops streaming and the server. Safe to call more than once.
func (s *Server) Close() {
	s.once.Do(func() {
		s.mu.Lock()
		if s.cancel != nil {
			s.cancel()
		}
		s.mu.Unlock()
		s.wg.Wait()
		s.stream.Close()
		s.srv.Close()
	})
}

type handler Server

func (h *handler) authorized(conn *gortsplib.ServerConn, req *base.Request) bool {
	<-h.ready // a client may connect between Start and the creation of the stream
	return h.cfg.User == "" || conn.VerifyCredentials(req, h.cfg.User, h.cfg.Pass)
}

func (h *handler) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if !h.authorized(ctx.Conn, ctx.Request) {
		return &base.Response{StatusCode: base.StatusUnauthorized}, nil, liberrors.ErrServerAuth{}
	}
	return &base.Response{StatusCode: base.StatusOK}, h.stream, nil
}

func (h *handler) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if !h.authorized(ctx.Conn, ctx.Request) {
		return &base.Response{StatusCode: base.StatusUnauthorized}, nil, liberrors.ErrServerAuth{}
	}
	tr := "udp"
	if ctx.Transport.Protocol == gortsplib.ProtocolTCP {
		tr = "tcp"
	}
	h.mu.Lock()
	h.setup[tr]++
	h.mu.Unlock()
	if (tr == "tcp" && h.cfg.RefuseTCP) || (tr == "udp" && h.cfg.RefuseUDP) {
		return &base.Response{StatusCode: base.StatusUnsupportedTransport}, nil, nil
	}
	return &base.Response{StatusCode: base.StatusOK}, h.stream, nil
}

func (h *handler) OnPlay(_ *gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	h.mu.Lock()
	h.plays++
	h.mu.Unlock()
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// FreeUDPPair returns loopback addresses of a free even UDP port and the
// next one, for RTP and RTCP.
func FreeUDPPair() (rtpAddr, rtcpAddr string, err error) {
	for range 100 {
		a, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return "", "", err
		}
		port := a.LocalAddr().(*net.UDPAddr).Port
		if port%2 != 0 {
			a.Close()
			continue
		}
		b, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1)))
		a.Close()
		if err != nil {
			continue
		}
		b.Close()
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1)), nil
	}
	return "", "", errors.New("rtsptest: no free even UDP port pair")
}

// SelfSignedTLS returns a server TLS config with a fresh certificate for
// 127.0.0.1 and a pool that trusts it.
func SelfSignedTLS(t testing.TB) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "rtsptest"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true,

		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

var encodeMu sync.Mutex

// Encode runs ffmpeg to make an MPEG-TS test file from input: codec "h264"
// or "h265", seconds of video (0: all), scaled to size ("WxH", "" keeps
// it), a key frame every gop frames, no B-frames unless bframes. The file is
// cached in dir under a name built from the parameters.
func Encode(t testing.TB, dir, input, codec string, seconds float64, size string, gop int, bframes bool) string {
	t.Helper()
	lib := map[string]string{"h264": "libx264", "h265": "libx265"}[codec]
	if lib == "" {
		t.Fatalf("rtsptest: unknown codec %q", codec)
	}
	bf := "0"
	if bframes {
		bf = "2"
	}
	name := fmt.Sprintf("%s-%s-%gs-%s-g%d-bf%s.ts", strings.TrimSuffix(filepath.Base(input), filepath.Ext(input)),
		codec, seconds, strings.ReplaceAll(size, "x", "_"), gop, bf)
	out := filepath.Join(dir, name)
	encodeMu.Lock() // parallel tests wait for one encode instead of repeating it
	defer encodeMu.Unlock()
	if st, err := os.Stat(out); err == nil && st.Size() > 0 {
		return out
	}
	args := []string{"-nostdin", "-loglevel", "error", "-y", "-i", input}
	if seconds > 0 {
		args = append(args, "-t", strconv.FormatFloat(seconds, 'f', -1, 64))
	}
	if size != "" {
		args = append(args, "-s", size)
	}
	args = append(args, "-an", "-c:v", lib, "-preset", "veryfast", "-g", strconv.Itoa(gop), "-bf", bf, "-pix_fmt", "yuv420p")
	if codec == "h265" {
		args = append(args, "-x265-params", "log-level=error")
	}
	tmp, err := os.CreateTemp(dir, name+".*.tmp")
	if err != nil {
		t.Fatal(err)
	}
	_ = tmp.Close()
	defer os.Remove(tmp.Name())
	args = append(args, "-f", "mpegts", tmp.Name())
	if b, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		t.Fatal(err)
	}
	return out
}

// ReadTS reads the access units of the first H.264 or H.265 track of an
// MPEG-TS file. PTS starts at zero.
func ReadTS(path string) (codec string, aus []AU, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	r := &mpegts.Reader{R: bufio.NewReaderSize(f, 64*1024)}
	if err := r.Initialize(); err != nil {
		return "", nil, fmt.Errorf("read MPEG-TS: %w", err)
	}
	var dec mpegts.TimeDecoder
	dec.Initialize()
	first := true
	var base int64
	add := func(pts int64, au [][]byte, key bool) {
		p := dec.Decode(pts)
		if first {
			first, base = false, p
		}
		aus = append(aus, AU{NALUs: au, PTS: time.Duration(p-base) * time.Second / 90000, Key: key})
	}
	for _, tr := range r.Tracks() {
		switch tr.Codec.(type) {
		case *tscodecs.H264:
			codec = "h264"
			r.OnDataH264(tr, func(pts, _ int64, au [][]byte) error {
				add(pts, au, h264.IsRandomAccess(au))
				return nil
			})
		case *tscodecs.H265:
			codec = "h265"
			r.OnDataH265(tr, func(pts, _ int64, au [][]byte) error {
				add(pts, au, h265.IsRandomAccess(au))
				return nil
			})
		default:
			continue
		}
		break
	}
	if codec == "" {
		return "", nil, errors.New("no H.264 or H.265 track")
	}
	for {
		err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", nil, err
		}
	}
	// MPEG-TS delivers in decoding order; with B-frames PTS is not monotonic,
	// which is what a camera sends too.
	return codec, aus, nil
}

// Params returns the parameter sets found in aus (VPS only for H.265).
func Params(codec string, aus []AU) (vps, sps, pps []byte) {
	for _, au := range aus {
		for _, n := range au.NALUs {
			if len(n) == 0 {
				continue
			}
			if codec == "h265" {
				if len(n) < 2 {
					continue
				}
				switch h265.NALUType((n[0] >> 1) & 0x3f) {
				case h265.NALUType_VPS_NUT:
					vps = n
				case h265.NALUType_SPS_NUT:
					sps = n
				case h265.NALUType_PPS_NUT:
					pps = n
				}
				continue
			}
			switch h264.NALUType(n[0] & 0x1f) {
			case h264.NALUTypeSPS:
				sps = n
			case h264.NALUTypePPS:
				pps = n
			}
		}
		if sps != nil && pps != nil && (codec != "h265" || vps != nil) {
			return vps, sps, pps
		}
	}
	return vps, sps, pps
}
