package rtsp

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the RTSP client metrics, labelled by camera_id and stream
// ("detect" for the stream analysis decodes, "record" for the main stream
// kept for evidence clips). Create them once per registry and share them
// between the clients of an agent.
type Metrics struct {
	Reconnects  *prometheus.CounterVec // camera_id, stream
	BytesIn     *prometheus.CounterVec // camera_id, stream
	AccessUnits *prometheus.CounterVec // camera_id, stream
	Stalls      *prometheus.CounterVec // camera_id, stream
	Errors      *prometheus.CounterVec // camera_id, stream, kind
	PacketsLost *prometheus.CounterVec // camera_id, stream
	Up          *prometheus.GaugeVec   // camera_id, stream
}

// Stream names of the stream label.
const (
	StreamDetect = "detect"
	StreamRecord = "record"
)

// Error kinds of xl_agent_rtsp_errors_total.
const (
	errKindConnect = "connect"    // DESCRIBE failed: dial, TLS, auth, status, bad response
	errKindSDP     = "sdp"        // the SDP was invalid or had no H.264/H.265 video
	errKindSetup   = "setup"      // SETUP failed
	errKindPlay    = "play"       // PLAY failed
	errKindStream  = "stream"     // the session ended with an error while playing
	errKindStall   = "stall"      // no access unit for StallTimeout
	errKindRTP     = "rtp_decode" // an RTP packet could not be depacketized
	errKindPanic   = "panic"      // a panic while handling a packet (bug), recovered
)

// NewMetrics creates the metrics and registers them on reg; a nil reg
// leaves them unregistered.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xl_agent_rtsp_reconnects_total",
			Help: "RTSP connection attempts after the first one.",
		}, []string{"camera_id", "stream"}),
		BytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xl_agent_rtsp_bytes_received_total",
			Help: "RTP bytes (header and payload) received from the camera.",
		}, []string{"camera_id", "stream"}),
		AccessUnits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xl_agent_rtsp_access_units_total",
			Help: "Video access units (encoded pictures) received from the camera.",
		}, []string{"camera_id", "stream"}),
		Stalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xl_agent_rtsp_stalls_total",
			Help: "Sessions torn down because no access unit arrived within the stall timeout.",
		}, []string{"camera_id", "stream"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xl_agent_rtsp_errors_total",
			Help: "RTSP errors by kind (connect, sdp, setup, play, stream, stall, rtp_decode, panic).",
		}, []string{"camera_id", "stream", "kind"}),
		PacketsLost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xl_agent_rtsp_packets_lost_total",
			Help: "RTP packets reported lost by the receiver.",
		}, []string{"camera_id", "stream"}),
		Up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "xl_agent_rtsp_up",
			Help: "1 while a session delivers access units, 0 otherwise.",
		}, []string{"camera_id", "stream"}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.Reconnects, m.BytesIn, m.AccessUnits, m.Stalls, m.Errors, m.PacketsLost, m.Up} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("rtsp: register metrics: %w", err)
	}
	return m, nil
}

// cameraMetrics are the children of one camera, resolved once.
type cameraMetrics struct {
	reconnects  prometheus.Counter
	bytesIn     prometheus.Counter
	accessUnits prometheus.Counter
	stalls      prometheus.Counter
	packetsLost prometheus.Counter
	up          prometheus.Gauge
	errors      *prometheus.CounterVec
	cameraID    string
	stream      string
}

func (m *Metrics) forCamera(id, stream string) *cameraMetrics {
	return &cameraMetrics{
		reconnects:  m.Reconnects.WithLabelValues(id, stream),
		bytesIn:     m.BytesIn.WithLabelValues(id, stream),
		accessUnits: m.AccessUnits.WithLabelValues(id, stream),
		stalls:      m.Stalls.WithLabelValues(id, stream),
		packetsLost: m.PacketsLost.WithLabelValues(id, stream),
		up:          m.Up.WithLabelValues(id, stream),
		errors:      m.Errors,
		cameraID:    id,
		stream:      stream,
	}
}

func (c *cameraMetrics) error(kind string) {
	c.errors.WithLabelValues(c.cameraID, c.stream, kind).Inc()
}
